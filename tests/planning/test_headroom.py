"""PlannerConfig.load_headroom: the planner fills instances to a share of their SLO capacity."""

from __future__ import annotations

import numpy as np
import pytest

from migrator.errors import ConfigError
from migrator.planning import planner
from migrator.workload.settings import PlannerConfig
from scenarios import sized


def test_the_planner_sees_headroom_times_the_capacity_model() -> None:
    scenario = sized(2, 4, horizon=8)
    full = planner.Planner(scenario.with_planner(load_headroom=1.0)).problem()
    part = planner.Planner(scenario.with_planner(load_headroom=0.8)).problem()
    for a, b in zip(full.gpus, part.gpus):
        np.testing.assert_allclose(b.capacity_rps, 0.8 * a.capacity_rps)
        np.testing.assert_array_equal(b.retrain_speed, a.retrain_speed)  # retraining is not headroom's
    assert full.gpus[0].capacity_rps.max() > 0


def test_less_headroom_plans_more_capacity_for_the_same_demand() -> None:
    # The same forecast needs more instance capacity when each instance is filled to 70 %:
    # the plan's SLO capacity (by the model as it is) is at least the full plan's.
    scenario = sized(1, 4, horizon=8)
    capacity = {}
    for headroom in (1.0, 0.7):
        p = planner.Planner(scenario.with_planner(load_headroom=headroom))
        plan = p.plan()
        rates, _ = planner._rates(p.problem(), plan.tasks)
        capacity[headroom] = rates.sum() / headroom
    assert capacity[0.7] >= capacity[1.0] * 0.999


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), float("inf"), "high"])
def test_headroom_outside_0_1_is_an_error_naming_the_field(bad) -> None:
    with pytest.raises(ConfigError, match="load_headroom"):
        PlannerConfig(load_headroom=bad)
