"""A node limit in place of the clock (``PlannerConfig.node_limit``): decisions that depend on
their inputs alone, so that a simulation graded on modelled latency repeats on any machine."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.errors import ConfigError
from migrator.planning import planner
from migrator.workload.settings import PlannerConfig
from scenarios import sized
from slow_machine import slow_down


def _split_scenario(**changes: object):  # type: ignore[no-untyped-def]
    return sized(4, 8, horizon=8).with_planner(decompose_above=1, time_limit_s=0.4, workers=1, **changes)


def _same(a: planner.Plan, b: planner.Plan) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.tasks, b.tasks))


def test_under_a_node_limit_a_slow_machine_plans_what_a_fast_one_does(monkeypatch) -> None:
    scenario = _split_scenario(node_limit=100)
    fast = planner.Planner(scenario).plan()
    slow_down(monkeypatch, 0.15)
    slow = planner.Planner(scenario).plan()
    assert _same(slow, fast)
    assert "time limit" not in slow.stats.status and not slow.stats.time_limited
    # The same slow machine cuts a time-limited decision short: the stages it skipped are named.
    timed = planner.Planner(_split_scenario()).plan()
    assert "time limit:" in timed.stats.status and timed.stats.time_limited


def test_a_run_under_a_node_limit_gets_the_safety_stop_not_its_share_of_the_time_left() -> None:
    by_nodes = planner.Planner(_split_scenario(node_limit=100))
    timed = planner.Planner(_split_scenario())
    assert by_nodes._solve_limit(0.08) == pytest.approx(planner.NODE_LIMIT_SAFETY * 0.4)
    assert timed._solve_limit(0.08) == pytest.approx(0.08)


def test_a_node_limit_stops_the_branch_and_bound_and_says_so() -> None:
    # One A100, six tenants, 30 slots: HiGHS needs more than its root node to prove the optimum.
    scenario = sized(1, 6, horizon=30).with_planner(time_limit_s=30.0, mip_gap=0.0, decompose_above=0)
    limited = planner.Planner(scenario.with_planner(node_limit=1)).plan()
    assert limited.stats.status.startswith("Node limit reached")
    assert 0 < limited.stats.mip_gap < 0.01
    assert np.isfinite(limited.stats.objective)
    proven = planner.Planner(scenario).plan()
    assert proven.stats.status == "Optimal"
    assert limited.stats.objective <= proven.stats.objective + 1e-6


@pytest.mark.parametrize("value", [-1, 1.5, True, "10", 10**10])
def test_node_limit_must_be_a_whole_number_in_range(value) -> None:
    with pytest.raises(ConfigError, match="planner.node_limit") as raised:
        PlannerConfig(node_limit=value)
    assert raised.value.field == "planner.node_limit"


def test_node_limit_is_off_by_default_and_zero_is_a_limit() -> None:
    assert PlannerConfig().node_limit is None
    assert PlannerConfig.from_dict({"node_limit": 0}).node_limit == 0
