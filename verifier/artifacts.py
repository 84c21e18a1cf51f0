"""The shipped artifacts of every task: traces, models and proofs, listed by each task package.

A task package lists its shipped files in `artifacts.toml` (docs/new-task.md, section 11):

    [[traces]]   file = "<name>.jsonl", args = [...]   # npi-verify dataset --task T ARGS -o traces/FILE
    [[models]]   file = "<name>.pt",    args = [...]   # npi-verify train   --task T ARGS -o models/FILE
                 dataset = "<name>.jsonl"              # with --until-certified in ARGS: the loop's
                                                       # training set, written to traces/DATASET
    [[proofs]]   file = "<name>.json",  model = "..."  # npi-verify certify models/MODEL --no-cache -o proofs/FILE

`python -m verifier.artifacts {traces,models,proofs} [--task NAME] [--dry-run]` regenerates
them from the repository root, in task order; traces/, models/ and proofs/regenerate.sh call it.
Models are trained on one CPU thread, so every file is byte-reproducible. A model trained by
the counterexample-guided loop (`train --until-certified`) writes its training set to traces/
as well (it is listed by its [[models]] entry, not by [[traces]]: only training reproduces it)
and its last certificate to a scratch folder that is removed afterwards (proofs/ holds the
shipped certificates).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier.errors import BadFile, VerifierError
from verifier.tasks import TASKS, Task

KINDS = ("traces", "models", "proofs")
FILE_NAME = "artifacts.toml"
LOOP = "--until-certified"


@dataclass(frozen=True)
class Artifact:
    """One shipped file and the command that writes it."""

    task: str
    kind: str  # one of KINDS
    file: str  # the file's path from the repository root
    command: tuple[str, ...]  # npi-verify's arguments
    writes: tuple[str, ...] = ()  # other shipped files the command writes (the loop's dataset)

    def invocation(self, scratch: Path) -> tuple[str, ...]:
        """The arguments to run: the loop's certificate goes to the folder `scratch`."""
        if LOOP not in self.command:
            return self.command
        name = Path(self.file).stem + ".cert.json"
        return (*self.command[:-2], "--certificate", str(scratch / name), *self.command[-2:])


def listed(task: Task) -> list[Artifact]:
    """The artifacts a task's package lists (none where it has no artifacts.toml)."""
    module = sys.modules[type(task).__module__]
    path = Path(module.__file__ or ".").parent / FILE_NAME
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise BadFile(f"{path}: {error}") from None
    found = []
    for kind in KINDS:
        for entry in data.get(kind, []):
            found.append(_artifact(path, task, kind, entry))
    return found


def _artifact(path: Path, task: Task, kind: str, entry: Any) -> Artifact:
    if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)):
        raise BadFile(f"{path}: every [[{kind}]] entry needs a file name")
    if entry.get("task", task.name) != task.name:  # a package may hold several tasks
        return Artifact(entry["task"], kind, f"{kind}/{entry['file']}", ())
    out = f"{kind}/{entry['file']}"
    if kind == "proofs":
        if not isinstance(entry.get("model"), str):
            raise BadFile(f"{path}: [[proofs]] {entry['file']} needs a model")
        return Artifact(task.name, kind, out,
                        ("certify", f"models/{entry['model']}", "--no-cache", "-o", out))
    args = entry.get("args", [])
    if not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise BadFile(f"{path}: [[{kind}]] {entry['file']}: args must be a list of strings")
    verb = "dataset" if kind == "traces" else "train"
    writes = _loop_dataset(path, kind, entry, args)
    extra = ("--dataset", writes[0]) if writes else ()
    return Artifact(task.name, kind, out, (verb, "--task", task.name, *args, *extra, "-o", out),
                    writes)


def _loop_dataset(path: Path, kind: str, entry: dict[str, Any], args: list[str]) -> tuple[str, ...]:
    """The traces/ file a [[models]] entry's loop writes: () for a model trained on a given
    dataset; BadFile where `dataset` and --until-certified do not come together."""
    dataset = entry.get("dataset")
    if dataset is None and (kind != "models" or LOOP not in args):
        return ()
    if not (kind == "models" and LOOP in args and isinstance(dataset, str)
            and dataset.endswith(".jsonl") and "/" not in dataset):
        raise BadFile(f"{path}: [[{kind}]] {entry['file']}: a model trained {LOOP} needs "
                      "dataset = \"NAME.jsonl\" (its training set in traces/), and only such "
                      "a model has one")
    if any(a in ("--dataset", "--certificate") for a in args):
        raise BadFile(f"{path}: [[models]] {entry['file']}: --dataset and --certificate are "
                      "set by the recipe, not in args")
    return (f"traces/{dataset}",)


def every_artifact(kind: str, task_name: str | None = None) -> list[Artifact]:
    """Every task's artifacts of one kind, each listed once (a package with several tasks
    names the task of each entry)."""
    seen: dict[str, Artifact] = {}
    for task in TASKS.values():
        for artifact in listed(task):
            if artifact.kind == kind and artifact.command and artifact.task == task.name:
                seen.setdefault(artifact.file, artifact)
    return [a for a in seen.values() if task_name in (None, a.task)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifier.artifacts", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--task", help="only this task's files")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    options = parser.parse_args(argv)
    try:
        artifacts = every_artifact(options.kind, options.task)
    except VerifierError as error:  # a malformed artifacts.toml, a broken task definition
        print(f"python -m verifier.artifacts: error: {error}", file=sys.stderr)
        return error.exit_code
    if not artifacts:
        print(f"no {options.kind} listed" + (f" for task {options.task}" if options.task else ""),
              file=sys.stderr)
        return 2
    env = dict(os.environ, NPI_VERIFY_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="npi-verify-artifacts-") as scratch:
        for artifact in artifacts:
            command = artifact.invocation(Path(scratch))
            line = " ".join(["npi-verify", *command])
            print(line, flush=True)
            if options.dry_run:
                continue
            done = subprocess.run([sys.executable, "-m", "verifier", *command], env=env)
            if done.returncode != 0:
                print(f"failed ({done.returncode}): {line}", file=sys.stderr)
                return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
