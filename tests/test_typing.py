"""migrator's public API as a type checker sees it (issue 19, item 2).

The README's Python examples, written to a user's script, pass ``mypy --strict``; a script with
typing mistakes a user could make is rejected, each mistake with the error mypy gives for it.
The second half is what makes the first mean something: were ``migrator.Planner`` or ``Plan``
``Any`` (as when they only came through the module's ``__getattr__``), mypy would pass both.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import migrator

pytest.importorskip("mypy.api", reason="mypy is not installed (pip install '.[test]')")

README = Path(__file__).resolve().parents[1] / "README.md"

# Set up as the README does, then one mistake a line: the mistake -> the mypy error code it must get.
SETUP = """\
import migrator

scenario = migrator.Scenario.default()
planner = migrator.Planner(scenario, config=migrator.PlannerConfig(horizon=8, time_limit_s=2))
plan = planner.plan()
"""
MISTAKES = {
    'gap = plan.stats.mip_gap + "x"': "operator",
    'planner.plan(horizon="x")': "call-arg",
    "layout: int = plan.first(0).layout": "assignment",
    'migrator.PlannerConfig(horizon="8")': "arg-type",
    "migrator.Geometry.for_gpu(40)": "arg-type",
    'migrator.Layout.parse("3g.20gb@0").no_such_method()': "attr-defined",
    'migrator.Plan.no_such_method(plan)': "attr-defined",
}


# A controller on either kind of backend, as deploy/ and `migrator run --backend` build them.
BACKENDS = """\
import migrator
from migrator.actuation.controller import Controller
from migrator.actuation.migmanager import MigManagerBackend
from migrator.actuation.nvml import NvmlBackend


def per_gpu(scenario: migrator.Scenario, backend: NvmlBackend) -> Controller:
    return Controller(scenario, backend)


def whole_node(scenario: migrator.Scenario, backend: MigManagerBackend) -> Controller:
    return Controller(scenario, backend)
"""


def _python_examples() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2, "the README's Python examples are gone"
    return "\n".join(blocks)


def _mypy(tmp_path: Path, *files: Path) -> list[str]:
    """``mypy --strict`` over the files, as a user would run it; the error lines."""
    env = dict(os.environ)
    package_root = Path(migrator.__file__).resolve().parent.parent
    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    if package_root not in installed:
        # An editable install: the sources are found through an import hook that mypy does
        # not run, so point it at them (it refuses MYPYPATH=site-packages, hence only here).
        env["MYPYPATH"] = str(package_root)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--show-error-codes",
         "--no-color-output", "--cache-dir", str(tmp_path / ".mypy_cache"), *map(str, files)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 2: mypy itself failed
    return [line for line in result.stdout.splitlines() if ": error:" in line]


def test_readme_examples_pass_mypy_strict_and_mistakes_do_not(tmp_path):
    examples = tmp_path / "readme_examples.py"
    examples.write_text(_python_examples(), encoding="utf-8")
    mistakes = tmp_path / "mistakes.py"
    mistakes.write_text(SETUP + "\n".join(MISTAKES) + "\n", encoding="utf-8")
    backends = tmp_path / "backends.py"
    backends.write_text(BACKENDS, encoding="utf-8")
    errors = _mypy(tmp_path, examples, mistakes, backends)

    assert [e for e in errors if e.startswith(("readme_examples.py", "backends.py"))] == []
    first = SETUP.count("\n") + 1
    found: dict[int, list[str]] = {}
    for error in errors:
        match = re.match(r"mistakes\.py:(\d+): error: .*\[([a-z-]+)\]$", error)
        assert match, error
        found.setdefault(int(match[1]), []).append(match[2])
    expected = {first + i: [code] for i, code in enumerate(MISTAKES.values())}
    assert found == expected, "\n".join(errors)


def test_the_package_passes_mypy(tmp_path):
    # The package's own annotations hold together (pyproject's [tool.mypy]), so that what a
    # user's type checker reads from them is what the code does.
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(root / "pyproject.toml"), "--show-error-codes",
         "--no-color-output", "--cache-dir", str(tmp_path / ".mypy_cache"), str(root / "src" / "migrator")],
        cwd=root, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
