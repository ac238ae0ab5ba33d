"""Hostile input at the command line (issue 18): float options refuse nan and inf, sizes are
bounded, and a scenario the planner must never see is refused before the planner runs,
with click's usage error (exit code 2) naming the option or the field."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main

DEFAULT = (resources.files("migrator") / "data" / "scenarios" / "default.yaml").read_text(encoding="utf-8")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("plan", "--time-limit", "nan"), "--time-limit"),
        (("plan", "--time-limit", "inf"), "--time-limit"),
        (("plan", "--time-limit", "-inf"), "--time-limit"),
        (("plan", "--horizon", "100000"), "--horizon"),
        (("run", "--time-limit", "nan"), "--time-limit"),
        (("simulate", "--duration", "nan"), "--duration"),
        (("simulate", "--duration", "inf"), "--duration"),
        (("cluster", "--deadline", "nan"), "--deadline"),
        (("cluster", "--time-limit", "inf"), "--time-limit"),
        (("mig-parted", "export", "--time-limit", "nan"), "--time-limit"),
        (("simulate", "--seeds", "1000000000"), "--seeds"),
        (("cluster", "--nodes", "100000"), "--nodes"),
        (("cluster", "--gpus-per-node", "100000"), "--gpus-per-node"),
        (("cluster", "--num-cpus", "100000000"), "--num-cpus"),
        (("agent", "--address", "x:1", "--node", "n", "--num-cpus", "100000000"), "--num-cpus"),
        (("mig-parted", "export", "--slot", "100000"), "--slot"),
        (("mig-parted", "import", "f.yaml", "x", "--gpu", "A100-40GB", "--count", "100000"), "--count"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_float_and_size_options_are_usage_errors(args: tuple[str, ...], option: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_plan_refuses_a_nan_penalty_before_planning(tmp_path: Path) -> None:
    # This file made `migrator plan` run forever: the planner must never be reached.
    path = tmp_path / "p.yaml"
    path.write_text(DEFAULT.replace("reconfig_penalty: 200.0", "reconfig_penalty: .nan"), encoding="utf-8")
    result = invoke("plan", str(path), "--time-limit", "2")
    assert result.exit_code in (1, 2), result.output
    assert "planner.reconfig_penalty" in result.output
    assert isinstance(result.exception, SystemExit)


def test_plan_refuses_a_forecaster_that_run_refuses(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(DEFAULT.replace("alpha: 0.3", "alpha: 5"), encoding="utf-8")
    result = invoke("plan", str(path))
    assert result.exit_code == 2, result.output
    assert "planner.forecaster.alpha" in result.output


def test_a_scenario_that_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(DEFAULT.replace("name: default", "name: d\xe9faut").encode("latin-1"))
    result = invoke("plan", str(path))
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("run", "--metrics-file", "/nonexistent/m.prom", "--steps", "1"), "--metrics-file"),
        (("simulate", "--out", "/proc/x", "--duration", "2"), "--out"),
        (("mig-parted", "export", "-o", "/proc/x"), "--output"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_output_paths_are_checked_before_the_work(args: tuple[str, ...], option: str) -> None:
    """The issue saw `simulate --out /proc/x` fail after the whole simulation and
    `run --metrics-file /nonexistent/m.prom` end in a traceback."""
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert option in result.output
    assert "simulating" not in result.output and "decided" not in result.output


def test_the_emulator_state_cannot_live_where_nothing_can_be_written() -> None:
    result = invoke("status", "--emulator-state", "/proc/st.json")
    assert result.exit_code == 1 and "cannot load the emulator state" in result.output
    assert isinstance(result.exception, SystemExit)


# -- journals, as `migrator recover` reads them ----------------------------------------------

_BEGIN = {"v": 1, "txn": "t1", "event": "begin", "time": 1.0, "gpu": 0, "kind": "apply", "model": "A100-40GB",
          "current": "", "target": "7g.40gb@0", "fallback": "", "recovers": None, "actions": []}


def _without(key):
    return {k: v for k, v in _BEGIN.items() if k != key}


CORRUPTED = {
    "not-json": "{not json\n{}\n",
    "a-list": "[1, 2]\n",
    "no-version": json.dumps(_without("v")),
    "version-2": json.dumps({**_BEGIN, "v": 2}),
    "no-txn": json.dumps(_without("txn")),
    "no-event": json.dumps(_without("event")),
    "no-gpu": json.dumps(_without("gpu")),
    "gpu-text": json.dumps({**_BEGIN, "gpu": "zero"}),
    "gpu-negative": json.dumps({**_BEGIN, "gpu": -1}),
    "unknown-event": json.dumps({**_BEGIN, "event": "explode"}),
    "begin-without-model": json.dumps(_without("model")),
    "begin-without-target": json.dumps(_without("target")),
    "begin-target-number": json.dumps({**_BEGIN, "target": 7}),
    "begin-actions-text": json.dumps({**_BEGIN, "actions": "all"}),
    "start-without-seq": json.dumps(_BEGIN) + "\n" + json.dumps({"v": 1, "txn": "t1", "event": "start", "gpu": 0}),
    "commit-without-layout": json.dumps(_BEGIN) + "\n" + json.dumps({"v": 1, "txn": "t1", "event": "commit", "gpu": 0}),
    "record-before-begin": json.dumps({"v": 1, "txn": "t9", "event": "done", "gpu": 0, "seq": 0}),
}


@pytest.mark.parametrize("text", list(CORRUPTED.values()), ids=list(CORRUPTED))
def test_a_corrupted_journal_is_a_named_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text(text + "\n", encoding="utf-8")
    result = invoke("recover", str(path), "--emulator-state", str(tmp_path / "s.json"))
    assert result.exit_code in (1, 2), result.output
    assert "journal" in result.output
    assert isinstance(result.exception, SystemExit), result.exception


def test_recover_says_when_a_journal_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text("", encoding="utf-8")
    result = invoke("recover", str(path), "--emulator-state", str(tmp_path / "s.json"))
    assert result.exit_code == 0 and "nothing to recover" in result.output


def test_run_refuses_an_arrivals_file_that_is_not_there(tmp_path: Path) -> None:
    result = invoke("run", "--arrivals", str(tmp_path / "typo.csv"), "--steps", "1")
    assert result.exit_code == 2 and "--arrivals" in result.output and "no such file" in result.output


@pytest.mark.parametrize("address", ["127.0.0.1:1", "no-port"])  # loopback only: no traffic leaves the machine
def test_cluster_refuses_an_address_nothing_answers_at(address: str) -> None:
    """Ray retried `--address nohost:1` for minutes; the head is now asked first."""
    pytest.importorskip("ray")
    result = invoke("cluster", "--address", address)
    assert result.exit_code == 1, result.output
    assert "address" in result.output or "Ray head" in result.output
    assert isinstance(result.exception, SystemExit)
