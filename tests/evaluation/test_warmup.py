"""Fair information (issue 17, item 2): every policy sizes on a warm-up stretch before the
scored window, never on the scored arrivals, and the seeds of a recorded trace replay
different windows of it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from scenarios import small

import migrator
from migrator.cli import main
from migrator.errors import ConfigError
from migrator.evaluation.policy import (
    Allocation,
    Environment,
    Observation,
    Policy,
    make_policy,
)
from migrator.evaluation.simulate import simulate
from migrator.evaluation.warmup import WARMUP_SEED_OFFSET, arrival_windows, window_start

WARMUP = 20  # slots of warm-up at the start of the recorded file
SCORED = 20  # slots scored after it (the scenario's duration)


def recorded(tmp_path: Path, warmup: tuple[float, float], scored: tuple[float, float], extra: int = 0,
             name: str = "s", duration_s: int = SCORED) -> migrator.Scenario:
    """One A100, two tenants read from one CSV: ``WARMUP`` slots at the ``warmup`` rates,
    then ``SCORED + extra`` at the ``scored`` rates."""
    rows = ["time_s,vision,text"]
    for t in range(WARMUP + SCORED + extra):
        a, b = warmup if t < WARMUP else scored
        rows.append(f"{t},{a:g},{b:g}")
    (tmp_path / f"{name}.csv").write_text("\n".join(rows) + "\n")
    retrain = {"window_s": 10, "work_gpu_s": 4, "accuracy_before": 0.7, "accuracy_after": 0.9}
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nduration_s: {duration_s}\ngpus: [{{model: A100-40GB, layout: ''}}]\n"
        "planner: {horizon: 4}\n"
        "tenants:\n"
        f"  - {{name: vision, model: resnet50, slo_ms: 100, arrivals: {{csv: {name}.csv, column: vision}}, "
        f"{', '.join(f'{k}: {v}' for k, v in retrain.items())}}}\n"
        f"  - {{name: text, model: bert_base, slo_ms: 100, arrivals: {{csv: {name}.csv, column: text}}, "
        f"{', '.join(f'{k}: {v}' for k, v in retrain.items())}}}\n"
    )
    return migrator.Scenario.load(path)


class _FirstDecision:
    """Wraps a policy's ``decide`` and keeps the first allocation it returns."""

    def __init__(self, policy: Policy) -> None:
        self.first: Allocation | None = None
        inner = policy.decide

        def decide(observation: Observation) -> Allocation | None:
            out = inner(observation)
            if self.first is None and out is not None:
                self.first = out
            return out

        policy.decide = decide  # type: ignore[method-assign]


def sizing(scenario: migrator.Scenario, name: str) -> Any:
    """What ``name`` sized on its first decision (PARIS: its partition, chosen before the run)."""
    policy = make_policy(name)
    spy = _FirstDecision(policy)
    simulate(scenario, policy, duration_s=2, decision_latency_s=0.0, grader="slot", warmup_s=WARMUP)
    if name == "paris":
        return policy.partition_allocation()
    return spy.first


LOW, HIGH = (60.0, 900.0), (900.0, 60.0)


@pytest.mark.parametrize("name", ["paris", "static", "ekya", "astraea", "migrator"])
def test_a_policy_sizes_on_the_warmup_not_on_the_scored_arrivals(tmp_path, name):
    base = sizing(recorded(tmp_path, warmup=LOW, scored=LOW, name="a"), name)
    scored_moved = sizing(recorded(tmp_path, warmup=LOW, scored=HIGH, name="b"), name)
    warmup_moved = sizing(recorded(tmp_path, warmup=HIGH, scored=LOW, name="c"), name)
    assert base is not None
    assert scored_moved == base
    assert warmup_moved != base


class _Seer(Policy):
    """Records what it is told beforehand; never changes anything."""

    name = "seer"

    def reset(self, env: Environment) -> None:
        super().reset(env)
        self.seen = env

    def decide(self, observation: Observation) -> None:
        return None


def test_the_average_rates_are_the_warmups_and_the_oracle_alone_gets_the_trace(tmp_path):
    s = recorded(tmp_path, warmup=(50.0, 70.0), scored=(500.0, 700.0))
    policy = _Seer()
    result = simulate(s, policy, decision_latency_s=0.0, grader="slot", warmup_s=WARMUP)
    np.testing.assert_allclose(policy.seen.mean_rps, [50.0, 70.0])
    np.testing.assert_allclose(policy.seen.warmup, np.array([[50.0] * WARMUP, [70.0] * WARMUP]))
    np.testing.assert_allclose(policy.seen.trace, np.array([[500.0] * SCORED, [700.0] * SCORED]))
    np.testing.assert_allclose(result.score.arrived.sum(axis=1), [500.0 * SCORED, 700.0 * SCORED])
    assert result.warmup_s == WARMUP and result.start_slot == WARMUP


def test_a_synthetic_warmup_is_an_earlier_draw_and_the_scored_window_is_unchanged():
    s = migrator.Scenario.default()
    windows = arrival_windows(s, 3, s.n_slots)
    np.testing.assert_array_equal(windows.scored, s.arrivals(3).counts)
    assert windows.warmup.shape == windows.scored.shape and windows.start_slot is None
    assert not np.array_equal(windows.warmup, windows.scored)
    # The same process: its average is near the scored one (diurnal, bursty, step, diurnal;
    # the bursty tenant's varies most).
    np.testing.assert_allclose(windows.mean_rps(), windows.scored.mean(axis=1), rtol=0.5)
    # A fixed seed in a tenant's arrivals gives the same scored draw for every seed, and
    # still a warm-up of its own.
    fixed = migrator.Scenario.from_dict({**s.to_dict(), "tenants": [
        {**t, "arrivals": {**t["arrivals"], "seed": 7}} for t in s.to_dict()["tenants"]]})
    a, b = arrival_windows(fixed, 0, 50), arrival_windows(fixed, 1, 50)
    np.testing.assert_array_equal(a.scored, b.scored)
    np.testing.assert_array_equal(a.warmup, b.warmup)
    assert not np.array_equal(a.warmup, a.scored[:, :50])
    assert WARMUP_SEED_OFFSET > migrator.workload.scenario.MAX_SEED


def test_different_seeds_replay_different_windows_of_a_recorded_trace(tmp_path):
    s = recorded(tmp_path, warmup=(50.0, 70.0), scored=(500.0, 700.0), extra=40)
    # A ramp in the scored part, so that every window's arrivals differ.
    path = tmp_path / "s.csv"
    lines = path.read_text().splitlines()
    lines[1 + WARMUP:] = [f"{t},{t},{2 * t}" for t in range(WARMUP, WARMUP + SCORED + 40)]
    path.write_text("\n".join(lines) + "\n")
    s = migrator.Scenario.load(tmp_path / "s.yaml")
    windows = [arrival_windows(s, seed, SCORED, WARMUP) for seed in range(5)]
    starts = [w.start_slot for w in windows]
    assert len(set(starts)) == 5 and starts[0] == WARMUP
    for w in windows:
        np.testing.assert_array_equal(w.scored[0], np.arange(w.start_slot, w.start_slot + SCORED))
        assert w.warmup.shape == (2, WARMUP)  # the slots just before the window
        before = [s.recorded_counts(i)[w.start_slot - WARMUP : w.start_slot] for i in (0, 1)]
        np.testing.assert_array_equal(w.warmup, np.vstack(before))
    again = arrival_windows(s, 3, SCORED, WARMUP)
    np.testing.assert_array_equal(again.scored, windows[3].scored)
    # Replays see the seed's window too.
    runs = [simulate(s, make_policy("static"), seed=seed, grader="slot", warmup_s=WARMUP) for seed in (0, 1)]
    assert runs[0].score.arrived.sum() != runs[1].score.arrived.sum()


@given(choices=st.integers(1, 5000), warmup=st.integers(0, 100), first=st.integers(0, 10**6))
def test_consecutive_seeds_get_distinct_window_starts(choices, warmup, first):
    seeds = range(first, first + min(choices, 50))
    starts = [window_start(seed, warmup, choices) for seed in seeds]
    assert len(set(starts)) == len(starts)
    assert all(warmup <= s < warmup + choices for s in starts)


def test_a_recorded_trace_without_room_for_a_warmup_is_an_error_naming_the_tenant(tmp_path):
    s = recorded(tmp_path, warmup=(50.0, 70.0), scored=(500.0, 700.0), duration_s=WARMUP + SCORED)
    with pytest.raises(ConfigError, match=r"tenants\[0\]\.arrivals.*warm-up"):
        arrival_windows(s, 0, SCORED, WARMUP + 1)
    whole = recorded(tmp_path, warmup=(50.0, 70.0), scored=(500.0, 700.0), name="w")
    # By default the warm-up takes at most half the spare slots: here 20 of 40 slots are spare.
    assert arrival_windows(whole, 0, SCORED).warmup_slots == SCORED // 2
    with pytest.raises(ConfigError, match=r"tenants\[0\]\.arrivals.*shorter duration"):
        arrival_windows(whole, 0, WARMUP + SCORED)


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "10", True, 10_000])
def test_a_bad_warmup_is_an_error_naming_it(bad):
    with pytest.raises(ConfigError, match="warmup_s"):
        arrival_windows(migrator.Scenario.default(), 0, 10, bad)


def test_the_command_takes_a_warmup_and_records_it(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small(duration_s=8).to_dict()))
    too_long = CliRunner().invoke(main, ["simulate", str(path), "--warmup", "9"])
    assert too_long.exit_code == 2 and "--warmup" in too_long.output and "Traceback" not in too_long.output
    out = CliRunner().invoke(main, ["simulate", str(path), "--policies", "paris", "--warmup", "4", "--json"])
    assert out.exit_code == 0, out.output
    arrivals = json.loads(out.output)["arrivals"]
    assert arrivals == {"warmup_s": 4.0, "windows": [{"seed": small().seed, "start_slot": None}]}
    assert "--warmup" in CliRunner().invoke(main, ["simulate", "--help"]).output
