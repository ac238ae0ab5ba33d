"""Hostile input at the command line (issue 18): float options refuse nan and inf, sizes are
bounded, and a scenario the planner must never see is refused before the planner runs,
with click's usage error (exit code 2) naming the option or the field."""

from __future__ import annotations

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
