"""The planner's starting state is checked where a scheduler hands it in."""

from __future__ import annotations

import math

import pytest

import migrator
from migrator.errors import ConfigError
from migrator.planning.planner_problem import PlannerState, TenantState

EMPTY = dict(layouts=("", ""), assignments=({}, {}))


@pytest.fixture(scope="module")
def planner():
    return migrator.Planner(migrator.Scenario.default())


@pytest.mark.parametrize("slot", [-1, 1.5, True, "3"])
def test_the_slot_is_a_non_negative_integer(slot) -> None:
    with pytest.raises(ConfigError, match="state.slot must be an integer >= 0") as caught:
        PlannerState(**EMPTY, slot=slot)
    assert caught.value.field == "state.slot"


@pytest.mark.parametrize("progress", [-1.0, math.nan, math.inf, "10", None])
def test_progress_is_finite_and_non_negative(progress) -> None:
    with pytest.raises(ConfigError, match="progress_gpu_s") as caught:
        TenantState(progress_gpu_s=progress)
    assert caught.value.field == "progress_gpu_s"


def test_done_is_a_truth_value() -> None:
    with pytest.raises(ConfigError, match="done must be true or false"):
        TenantState(progress_gpu_s=1.0, done="yes")
    assert TenantState(progress_gpu_s=0, done=True).done


def test_tenant_states_are_tenant_states() -> None:
    with pytest.raises(ConfigError, match=r"state.tenants\['vit'\] must be a TenantState"):
        PlannerState(**EMPTY, tenants={"vit": 3.0})


def test_a_misspelt_tenant_is_named_not_ignored(planner) -> None:
    state = PlannerState(**EMPTY, slot=5, tenants={"vitt": TenantState(progress_gpu_s=30.0)})
    with pytest.raises(ConfigError, match="no tenant 'vitt'; tenants are resnet50, vit, bert, distilbert") as caught:
        planner.plan(state=state)
    assert caught.value.field == "state.tenants"


def test_a_known_tenants_progress_is_used(planner) -> None:
    # The same state spelt right plans, and the progress shortens the work left.
    problem = planner.problem(state=PlannerState(**EMPTY, slot=5, tenants={"vit": TenantState(progress_gpu_s=30.0)}))
    vit = problem.tenants.index("vit")
    assert problem.work_left[vit] == pytest.approx(problem.work_full[vit] - 30.0)
