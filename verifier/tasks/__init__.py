"""Tasks. Each built-in task is a package here (`verifier/tasks/<task>/`) that registers itself
with `@register`; plug-ins register the same way (see `registry` and docs/new-task.md)."""

from __future__ import annotations

from verifier.tasks.base import Task
from verifier.tasks.registry import TASKS, get_task, load_task_module, register

__all__ = ["TASKS", "Task", "get_task", "load_task_module", "register"]
