"""The README's promises: its Python example runs and its GPU table lists every built-in GPU."""

from __future__ import annotations

import re
from pathlib import Path

import migrator

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_python_examples_run(capsys, tmp_path, monkeypatch):
    geometry, planning, comparing = _blocks("python")
    exec(compile(geometry, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "memory_overlap" in out and "3g.20gb@0,3g.20gb@4" in out
    namespace: dict = {}
    exec(compile(planning, str(README), "exec"), namespace)
    assert set(namespace["plan"].goodput) == {t.name for t in namespace["scenario"].tenants}
    assert '"gpus"' in namespace["document"]
    monkeypatch.chdir(tmp_path)  # the comparison example writes its files to out/
    namespace = {}
    exec(compile(comparing, str(README), "exec"), namespace)
    assert set(namespace["result"].runs) == {"migrator", "paris", "static"}
    assert (tmp_path / "out" / "results.json").exists()


def test_gpu_table_lists_every_built_in_gpu():
    text = README.read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([^`]+)` \|", text, re.M))
    assert listed == set(migrator.known_gpus())


def test_quick_start_commands_are_the_ones_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    commands = [b.strip() for b in _blocks("bash")[:2]]
    assert commands == ["pip install . && migrator demo", "pip install '.[test]' && pytest"]
    for command in commands:
        assert command in ci
