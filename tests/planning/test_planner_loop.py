"""A receding-horizon loop: plan, apply the first slot (advance), plan again."""

from __future__ import annotations

import pytest

import migrator
from migrator.planning.planner import Planner
from migrator.workload.settings import PlannerConfig


@pytest.fixture(scope="module")
def loop():
    scenario = migrator.Scenario.default()
    planner = Planner(scenario, PlannerConfig(horizon=6, time_limit_s=5, setup_s=2.0))
    state = planner.initial_state()
    steps = []
    for _ in range(3):
        plan = planner.plan(state=state)
        following = planner.advance(plan)
        steps.append((state, plan, following))
        state = following
    return scenario, steps


def test_the_next_state_is_the_first_slot_applied(loop):
    _, steps = loop
    for state, plan, following in steps:
        assert following.slot == state.slot + 1
        assert following.layouts == tuple(g.slots[0].layout for g in plan.gpus)
        assert following.assignments == tuple(dict(g.slots[0].assignment) for g in plan.gpus)


def test_progress_never_goes_back_within_a_window(loop):
    scenario, steps = loop
    for state, _, following in steps:
        for t in scenario.tenants:
            before = state.tenants.get(t.name)
            after = following.tenants[t.name]
            assert after.progress_gpu_s >= (before.progress_gpu_s if before else 0.0)


def _first_slot_changes(state, plan) -> int:
    """Instances in the plan's first slot whose placement held nothing, or another task, in
    the state it started from (an idle instance has no entry in an assignment)."""
    changes = 0
    for layout, assignment, gpu in zip(state.layouts, state.assignments, plan.gpus):
        before = {p: assignment.get(p, "idle") for p in layout.split(",") if p}
        now = gpu.slots[0].assignment
        changes += sum(1 for p, task in now.items() if before.get(p) != task)
    return changes


def test_later_plans_start_from_the_applied_layouts(loop):
    scenario, steps = loop
    for state, plan, _ in steps:
        for gpu, spec in zip(plan.gpus, scenario.gpus):
            spec.geometry.validate(gpu.slots[0].layout)
        # The plan counts its changes from the state it was given, first slot included.
        assert plan.stats.reconfigurations >= _first_slot_changes(state, plan)
    # From the second decision on, the planner starts where the first one left the GPUs,
    # so repeating the same decision costs no change at all.
    state, plan, _ = steps[1]
    previous = steps[0][1]
    if [g.slots[0] for g in plan.gpus] == [g.slots[0] for g in previous.gpus]:
        assert _first_slot_changes(state, plan) == 0
