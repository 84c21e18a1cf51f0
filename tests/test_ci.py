"""CI runs what README says it runs, and the markers it selects by exist."""

from __future__ import annotations

import shlex
import tomllib

from tests.conftest import ROOT


def _ci_test_command() -> str:
    (line,) = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
               if "python -m pytest" in line and not line.lstrip().startswith("#")]
    return line.strip()


def test_readme_test_command_is_the_one_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    at = next(k for k, line in enumerate(readme) if line.startswith("Tests (the exact command"))
    shown = next(line for line in readme[at + 1 :] if line.strip())
    assert shown.strip() == _ci_test_command()


def test_ci_selects_by_declared_markers_and_keeps_the_soundness_tests() -> None:
    words = shlex.split(_ci_test_command())
    selection = words[words.index("-m", words.index("pytest")) + 1]
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    declared = {marker.split(":")[0] for marker in config["markers"]}
    assert {"slow", "soundness"} <= declared
    assert selection == "not slow or soundness"
    assert shlex.split(config["addopts"])[-2:] == ["-m", "not slow"]
