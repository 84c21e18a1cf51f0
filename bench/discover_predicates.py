"""Regenerate (or check) the discovered hidden predicates of tasks: `predicates.json`.

    python bench/discover_predicates.py --task bubblesort --task addition --write
    python bench/discover_predicates.py            # every task with Z3 semantics; check only

For each task it runs the counterexample-guided search of `verifier.smt.discover` (a fresh
semantics instance, the task's hints, templates over its vocabulary) and prints what it found.
`--write` stores the result in the predicates.json of the task's semantics package; without it
the script exits 1 when a stored list differs from what the search finds now.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from verifier.smt import semantics_for  # noqa: E402
from verifier.smt.discover import discover, read_stored, stored_path, write_stored  # noqa: E402
from verifier.tasks import TASKS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", help="a task (default: every symbolic task)")
    parser.add_argument("--write", action="store_true", help="store the result in predicates.json")
    options = parser.parse_args()
    names = options.task or [t.name for t in TASKS.values() if t.symbolic and semantics_for(t) is not None]
    differ = 0
    for name in names:
        task = TASKS[name]
        started = time.perf_counter()
        found = discover(task, progress=lambda text, name=name: print(f"  {name}: {text}", flush=True))
        seconds = time.perf_counter() - started
        print(f"{name}: {len(found.hints)} declared, {len(found.discovered)} discovered "
              f"{list(found.discovered)}; abstract {found.abstract_states}, concrete "
              f"{found.concrete_states} call-local states; {found.fixed_points} fixed points "
              f"in {seconds:.1f} s", flush=True)
        semantics = semantics_for(task)
        if options.write:
            print(f"  wrote {write_stored(semantics, found)}")
            continue
        stored = read_stored(stored_path(semantics))["tasks"].get(name, {}).get("discovered")
        if stored != list(found.discovered):
            print(f"  differs from the stored list {stored}")
            differ += 1
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
