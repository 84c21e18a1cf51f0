"""The task registry: built-in task packages, installed plug-ins and single-file task modules.

A task registers itself with the `register` class decorator next to its definition. Three kinds
of definition are found, all the same way:

- built-in: every package under `verifier/tasks/` is imported on the first lookup;
- plug-in: every entry point of the group `npi_verify.tasks` (an installed package's module,
  or a Task class, imported on the first lookup);
- task module: a single Python file loaded with `load_task_module` (`--task-module PATH`, or
  the os.pathsep-separated paths in $NPI_VERIFY_TASK_MODULES).

Each task's *definition* is the source of the package (or file) that holds its class and its
symbolic semantics; `definition_of` digests it, so a certificate notices when it changed.
Anything wrong with a definition raises PluginError, one line naming where it came from.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

from verifier.errors import PluginError, UnknownName, VerifierError
from verifier.tasks.base import FORMULATIONS, NOP, Program, Task

ENTRY_POINT_GROUP = "npi_verify.tasks"
MODULES_ENV = "NPI_VERIFY_TASK_MODULES"
FILE_MODULE_PREFIX = "npi_verify_task_module_"

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class Definition:
    """Where a task is defined: its class's module, how it was found, and the sha256 of the
    source files that define it (the task's package, or its single file)."""

    module: str
    origin: str  # "built-in", "plug-in NAME" (an entry point) or "task module PATH"
    sha256: str
    files: tuple[str, ...]

    def to_json(self) -> dict[str, str]:
        return {"module": self.module, "origin": self.origin, "sha256": self.sha256}


class _Registry(Mapping[str, Task]):
    """Name -> task, loading built-ins, plug-ins and $NPI_VERIFY_TASK_MODULES on first use."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._origin: dict[str, str] = {}
        self._rank: dict[str, tuple[int, str, int]] = {}
        self._loading: str | None = None  # the origin of the definitions being imported
        self._loaded = False
        self.module_paths: list[str] = []  # task modules loaded from files, in order

    # -- Mapping --------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Task:
        self._ensure_loaded()
        return self._tasks[name]

    def __iter__(self) -> Iterator[str]:
        """Built-in tasks by package name (in each package, in definition order), then the
        others in the order they loaded: the same order however the modules were imported."""
        self._ensure_loaded()
        return iter(sorted(self._tasks, key=lambda name: self._rank[name]))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._tasks)

    def __setitem__(self, name: str, task: Task) -> None:  # tests swap a task for a variant
        self._ensure_loaded()
        self._tasks[name] = task
        self._rank.setdefault(name, (1, "", len(self._rank)))

    def __delitem__(self, name: str) -> None:
        del self._tasks[name]
        self._rank.pop(name, None)

    # -- registration ---------------------------------------------------------------------
    def add(self, task: Task) -> None:
        origin = self._loading or f"module {type(task).__module__}"
        validate(task, origin)
        if task.name in self._tasks and type(self._tasks[task.name]) is not type(task):
            raise PluginError(
                f"{origin}: task {task.name!r} is already defined by "
                f"{self._origin[task.name]} ({type(self._tasks[task.name]).__module__})"
            )
        self._tasks[task.name] = task
        self._origin[task.name] = origin
        module = type(task).__module__
        built_in = module.startswith("verifier.tasks.")
        self._rank.setdefault(task.name, (0 if built_in else 1,
                                          module.split(".")[2] if built_in else "", len(self._rank)))

    def origin(self, task: Task) -> str:
        return self._origin.get(task.name, f"module {type(task).__module__}")

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        import verifier.tasks as package

        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.ispkg:
                self._import(f"{package.__name__}.{info.name}", "built-in")
        for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
            self._load_entry_point(point)
        for path in filter(None, os.environ.get(MODULES_ENV, "").split(os.pathsep)):
            load_task_module(path)

    def _import(self, module: str, origin: str) -> Any:
        self._loading = origin
        try:
            return importlib.import_module(module)
        except PluginError:
            raise
        except VerifierError:  # ours (a --timeout budget running out, a named bug): pass it on
            raise
        except Exception as error:  # a plug-in's own bug: name it, never a traceback
            raise PluginError(f"{origin}: cannot import {module}: {describe_error(error)}") from None
        finally:
            self._loading = None

    def _load_entry_point(self, point: Any) -> None:
        origin = f"plug-in {point.name}"
        self._loading = origin
        try:
            loaded = point.load()
        except VerifierError:  # ours (a --timeout budget running out, a named bug): pass it on
            raise
        except Exception as error:
            raise PluginError(f"{origin}: cannot import {point.value}: {describe_error(error)}") from None
        finally:
            self._loading = None
        if inspect.isclass(loaded) and issubclass(loaded, Task):
            if not any(type(t) is loaded for t in self._tasks.values()):
                self._loading = origin
                try:
                    register(loaded)
                finally:
                    self._loading = None
        elif not inspect.ismodule(loaded):
            raise PluginError(f"{origin}: entry point {point.value} is neither a module nor a "
                              "Task class")

    def load_file(self, path: str) -> list[Task]:
        file = Path(path).expanduser()
        origin = f"task module {path}"
        if not file.is_file():
            raise PluginError(f"{origin}: no such file")
        resolved = str(file.resolve())
        if resolved in self.module_paths:
            return [t for t in self._tasks.values() if _file_of(t) == resolved]
        digest = hashlib.sha256(resolved.encode()).hexdigest()[:12]
        name = f"{FILE_MODULE_PREFIX}{_identifier(file.stem)}_{digest}"
        spec = importlib.util.spec_from_file_location(name, resolved)
        if spec is None or spec.loader is None:
            raise PluginError(f"{origin}: not a Python source file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        before = set(self._tasks)
        self._loading = origin
        try:
            spec.loader.exec_module(module)
        except PluginError:
            del sys.modules[name]
            raise
        except VerifierError:  # ours (a --timeout budget running out, a named bug): pass it on
            raise
        except Exception as error:
            del sys.modules[name]
            raise PluginError(f"{origin}: cannot import it: {describe_error(error)}") from None
        finally:
            self._loading = None
        added = [self._tasks[n] for n in self._tasks if n not in before]
        if not added:
            raise PluginError(f"{origin}: it registers no task (decorate the task class with "
                              "@register from verifier.tasks)")
        self.module_paths.append(resolved)
        return added


TASKS = _Registry()


def register(cls: T) -> T:
    """Class decorator: register one instance of a Task subclass under its `name`.

    Raises PluginError when the class does not define a task (see `validate`)."""
    if not (inspect.isclass(cls) and issubclass(cls, Task)):
        raise PluginError(f"@register decorates Task subclasses, not {cls!r}")
    where = TASKS._loading or f"module {cls.__module__}"
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise PluginError(f"{where}: task class {cls.__name__} does not define "
                          f"{', '.join(missing)}")
    try:
        task = cls()
    except VerifierError:  # ours (a --timeout budget running out, a named bug): pass it on
        raise
    except Exception as error:
        raise PluginError(f"{where}: cannot create task {cls.__name__}: {describe_error(error)}") from None
    TASKS.add(task)
    return cls


def get_task(name: str) -> Task:
    """The registered task called `name`; UnknownName lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownName(
            f"unknown task {name!r} (known: {', '.join(TASKS)}; a plug-in task needs "
            "--task-module PATH or its package installed)"
        ) from None


def load_task_module(path: str) -> list[Task]:
    """Load a single-file task definition; returns the tasks it registered."""
    TASKS._ensure_loaded()
    return TASKS.load_file(path)


def origin_of(task: Task) -> str:
    return TASKS.origin(task)


def task_label(task: Task, formulation: str | None = None) -> str:
    """How an error about a task's definition names it: where it came from, its name, and the
    formulation concerned (`task module t.py: task 'reverse', recursive`)."""
    label = f"{origin_of(task)}: task {task.name!r}"
    return f"{label}, {formulation}" if formulation else label


def definition_of(task: Task) -> Definition:
    """The task's module and the digest of the source that defines it: every .py and .json
    file of the package holding its class (or the single file of a task module), plus the
    package of its symbolic semantics where that lies elsewhere."""
    modules = [type(task).__module__]
    if task.symbolic:
        from verifier.smt import semantics_for

        semantics = semantics_for(task)
        modules += [type(semantics).__module__,
                    *(type(part).__module__ for part in getattr(semantics, "parts", ()))]
    files: set[Path] = set()
    for name in modules:
        module = sys.modules.get(name) or importlib.import_module(name)
        files |= _source_files(module)
    digest = hashlib.sha256()
    root = os.path.commonpath([str(f.parent) for f in files])
    for file in sorted(files):
        digest.update(os.path.relpath(file, root).encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    module = type(task).__module__
    if module.startswith(FILE_MODULE_PREFIX):  # a task module: its file's name says more
        module = Path(sys.modules[module].__file__ or module).name
    return Definition(module, origin_of(task), digest.hexdigest(),
                      tuple(str(f) for f in sorted(files)))


def _source_files(module: Any) -> set[Path]:
    file = Path(getattr(module, "__file__", None) or "")
    if not file.is_file():
        return set()
    if not module.__package__ or module.__name__.startswith(FILE_MODULE_PREFIX):
        return {file.resolve()}
    folder = file.resolve().parent
    return {p for p in folder.iterdir() if p.suffix in (".py", ".json") and p.is_file()}


def _file_of(task: Task) -> str | None:
    module = sys.modules.get(type(task).__module__)
    file = getattr(module, "__file__", None)
    return str(Path(file).resolve()) if file else None


def validate(task: Task, origin: str) -> None:
    """What every task must declare, checked when it registers (PluginError otherwise)."""

    def fail(message: str) -> None:
        raise PluginError(f"{origin}: task {getattr(task, 'name', type(task).__name__)!r}: {message}")

    for attribute, kind in (("name", str), ("summary", str), ("entry", str),
                            ("input_example", str), ("programs", tuple),
                            ("observation_names", tuple), ("observation_values", tuple),
                            ("formulations", tuple)):
        if not isinstance(getattr(task, attribute, None), kind):
            fail(f"class attribute {attribute} must be a {kind.__name__}")
    if not task.name or task.name != task.name.strip() or any(c.isspace() for c in task.name):
        fail("name must be a non-empty word")
    if not all(isinstance(p, Program) for p in task.programs):
        fail("programs must be Program values")
    names = [p.name for p in task.programs]
    if len(set(names)) != len(names):
        fail("program names must be distinct")
    if NOP not in names:
        fail("programs must include NOP_PROGRAM (the action that only returns)")
    if task.entry not in names or task.program(task.entry).primitive:
        fail(f"entry {task.entry!r} must name one of its non-primitive programs")
    if len(task.observation_names) != len(task.observation_values):
        fail("observation_names and observation_values must have the same length")
    if not all(isinstance(v, tuple) and v for v in task.observation_values):
        fail("each observation_values entry must be a non-empty tuple of names")
    unknown = [f for f in task.formulations if f not in FORMULATIONS]
    if unknown or not task.formulations:
        fail(f"formulations must be among {', '.join(FORMULATIONS)}, got {unknown or 'none'}")
    callable_ = [p.name for p in task.programs if not p.primitive]
    for formulation in task.formulations:
        try:
            routines = task._routines(formulation)
        except VerifierError:  # ours (a --timeout budget running out, a named bug): pass it on
            raise
        except Exception as error:
            fail(f"_routines({formulation!r}) raised {describe_error(error)}")
        if not isinstance(routines, Mapping):
            fail(f"_routines({formulation!r}) must return a mapping program -> routine")
        absent = [p for p in callable_ if p not in routines]
        if absent:
            fail(f"the {formulation} reference program has no routine for {', '.join(absent)}")
        odd = [p for p in routines if p not in callable_]
        if odd:
            fail(f"the {formulation} reference program has routines for {', '.join(odd)}, "
                 "which are not non-primitive programs")
        not_generators = [p for p, r in routines.items() if not inspect.isgeneratorfunction(r)]
        if not_generators:
            fail(f"routines must be generator functions (routine(args, obs) yielding actions): "
                 f"{', '.join(not_generators)}")
    if task.symbolic and type(task).semantics is Task.semantics:
        fail("it declares symbolic semantics (symbolic = True, the default) but defines no "
             "semantics() method; define one, or set symbolic = False (then never certified)")


def describe_error(error: BaseException) -> str:
    """One line for a plug-in's exception: its type, message and where it was raised."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<")]
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message}{where}" if message else f"{type(error).__name__}{where}"


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text) or "task"
