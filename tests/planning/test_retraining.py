"""The retraining pass over a plan's first period: the whole window in view."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import migrator
from migrator.planning import planner
from migrator.planning.greedy import greedy_tasks
from migrator.planning.planner_problem import PlannerState, TenantState
from migrator.planning.retraining import fits_beside, marginal_service, retrain_over_window
from scans import give_way_by_scanning
from scenarios import sized

RETRAIN_A = 2  # tenant 0's retraining task


def scenario(rate_rps: float, work_gpu_s: float = 20.0, window_s: float = 200.0) -> migrator.Scenario:
    """One A100, one tenant whose retraining takes longer than the 30 s horizon."""
    return migrator.Scenario.from_dict({
        "name": "window", "slot_s": 1.0, "duration_s": 200, "seed": 0,
        "gpus": [{"model": "A100-40GB", "count": 1, "layout": "3g.20gb@0,3g.20gb@4"}],
        "tenants": [{"name": "a", "model": "resnet50", "slo_ms": 100,
                     "arrivals": {"synthetic": "poisson", "mean_rps": rate_rps},
                     "window_s": window_s, "work_gpu_s": work_gpu_s,
                     "accuracy_before": 0.5, "accuracy_after": 0.9}],
        "planner": {"horizon": 30},
    })


def test_marginal_service_is_what_the_tenant_would_lose():
    problem = planner.Planner(scenario(300.0)).problem()
    both = np.where(np.array([str(p) in ("3g.20gb@0", "3g.20gb@4") for p in problem.gpus[0].placements]), 1, -1)
    lost = marginal_service(problem, [both])[0]
    # 300 req/s need well under one 3g (1224 req/s): dropping either instance loses nothing.
    assert np.all(lost == 0)
    problem = planner.Planner(scenario(2000.0)).problem()
    lost = marginal_service(problem, [both])[0]
    capacity = problem.gpus[0].capacity_rps[0]
    q = int(np.flatnonzero(both > 0)[0])
    demand = problem.arrivals.mean() / problem.slot_s
    expected = 0.5 * min(capacity[q], demand - (capacity[both > 0].sum() - capacity[q]))
    assert lost[q] == np.float64(expected) and lost[q] > 0


def test_a_retraining_longer_than_the_horizon_starts_when_the_window_pays():
    problem = planner.Planner(scenario(300.0)).problem()
    tasks = greedy_tasks(problem)
    # 20 GPU-seconds need ~47 s on a 3g: beyond the 30-slot horizon, so the greedy start does not retrain...
    assert not any((t == RETRAIN_A).any() for t in tasks)
    moved = retrain_over_window(problem, tasks)
    # ...but the window (200 s) has room for it: a spare instance retrains from now.
    assert (moved[0][0] == RETRAIN_A).sum() == 1
    np.testing.assert_array_equal(moved[0][1:], tasks[0][1:])  # only the first period changes


def test_no_retraining_when_it_cannot_finish_in_the_window():
    problem = planner.Planner(scenario(300.0, work_gpu_s=300.0)).problem()
    tasks = greedy_tasks(problem)
    np.testing.assert_array_equal(retrain_over_window(problem, tasks)[0], tasks[0])


def test_a_retraining_under_way_is_kept():
    s = scenario(300.0)
    state = PlannerState(layouts=("3g.20gb@0,3g.20gb@4",),
                         assignments=({"3g.20gb@0": "a:infer", "3g.20gb@4": "a:retrain"},), slot=10)
    problem = planner.Planner(s).problem(forecast=np.full((1, 30), 300.0), state=state)
    q = [str(p) for p in problem.gpus[0].placements].index("3g.20gb@4")
    tasks = tuple(t.copy() for t in greedy_tasks(problem))
    tasks[0][:, q] = 1  # the solver gave the instance back to inference
    moved = retrain_over_window(problem, tasks)
    assert moved[0][0, q] == RETRAIN_A


def test_the_planner_option_keeps_the_plan_consistent():
    s = scenario(300.0).with_planner(retrain_over_window=True)
    plan = migrator.Planner(s).plan()
    assert "a:retrain" in plan.first(0).assignment.values()
    score = planner.expected_score(plan.problem, plan.tasks)
    assert plan.goodput == score.goodput_per_tenant()


def two_gpus(rate_rps: float = 300.0) -> migrator.Scenario:
    """The one-tenant scenario on two A100s: one GPU is enough to serve it."""
    table = scenario(rate_rps).to_dict()
    table["gpus"] = [{"model": "A100-40GB", "count": 2, "layout": ""}]
    return migrator.Scenario.from_dict(table)


def test_free_room_retrains_without_giving_up_inference():
    problem = planner.Planner(two_gpus()).problem()
    tasks = tuple(t.copy() for t in greedy_tasks(problem))
    names = [str(p) for p in problem.gpus[0].placements]
    # Only GPU 0 serves, from one 3g instance; GPU 1 is empty.
    for t in tasks:
        t[:] = -1
    tasks[0][:, names.index("3g.20gb@0")] = 1
    moved = retrain_over_window(problem, tasks)
    assert moved[0][0, names.index("3g.20gb@0")] == 1  # the serving instance keeps serving
    created = [(g, q) for g in range(2) for q in np.flatnonzero(moved[g][0] == RETRAIN_A)]
    assert len(created) == 1
    g, q = created[0]
    # The fastest retraining: the empty GPU's full 7g instance, or a free 4g beside the 3g.
    assert problem.gpus[g].retrain_speed[0, q] == max(
        problem.gpus[h].retrain_speed[0, r] for h in range(2) for r in range(len(names))
        if tasks[h][0, r] < 0 and fits_beside(problem.gpus[h], list(np.flatnonzero(tasks[h][0] >= 0)), r))
    for h in range(2):
        layout = ",".join(names[r] for r in np.flatnonzero(moved[h][0] >= 0))
        assert migrator.Geometry.for_gpu("A100-40GB").is_valid(layout)


def test_a_tenant_retraining_already_gets_no_second_instance():
    counts = {}
    for limit in (1, 0):
        problem = planner.Planner(two_gpus().with_planner(retrain_instances=limit)).problem()
        names = [str(p) for p in problem.gpus[0].placements]
        tasks = tuple(np.full_like(t, -1) for t in greedy_tasks(problem))
        tasks[0][:, names.index("3g.20gb@0")] = 1  # GPU 0 serves a from a 3g
        tasks[0][:, names.index("1g.5gb@6")] = RETRAIN_A  # and retrains it on a 1g; GPU 1 is empty
        moved = retrain_over_window(problem, tasks)
        counts[limit] = sum(int((t[0] == RETRAIN_A).sum()) for t in moved)
    # One instance at a time: the slow 1g keeps it. Without the limit the empty GPU's 7g,
    # ten times as fast, joins in.
    assert counts == {1: 1, 0: 2}


def test_no_new_instance_when_the_penalty_outweighs_the_gain():
    s = two_gpus().with_planner(reconfig_penalty=1e9)
    problem = planner.Planner(s).problem()
    tasks = greedy_tasks(problem)
    for before, after in zip(tasks, retrain_over_window(problem, tasks)):
        np.testing.assert_array_equal(after, before)


def test_fits_beside_agrees_with_the_geometry():
    geometry = migrator.Geometry.for_gpu("A100-40GB")
    problem = planner.Planner(scenario(300.0)).problem()
    gpu = problem.gpus[0]
    names = [str(p) for p in gpu.placements]
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        occupied = [int(q) for q in rng.choice(len(names), size=int(rng.integers(0, 4)), replace=False)]
        if not geometry.is_valid(",".join(names[q] for q in occupied)):
            continue
        for q in set(range(len(names))) - set(occupied):
            expected = geometry.is_valid(",".join(names[r] for r in occupied + [q]))
            assert fits_beside(gpu, occupied, q) == expected
            checked += 1
    assert checked > 100


def test_gpus_to_keep_are_left_as_they_are():
    problem = planner.Planner(two_gpus()).problem()
    names = [str(p) for p in problem.gpus[0].placements]
    tasks = tuple(np.full((len(problem.periods), len(names)), -1, dtype=np.int64) for _ in range(2))
    tasks[0][:, names.index("3g.20gb@0")] = 1
    assert (retrain_over_window(problem, tasks)[1][0] == RETRAIN_A).any()  # the empty GPU would retrain
    kept = retrain_over_window(problem, tasks, keep={1})
    np.testing.assert_array_equal(kept[1], tasks[1])
    assert (kept[0][0] == RETRAIN_A).sum() == 1  # the room beside the 3g on GPU 0 instead


def three_tenants() -> migrator.Scenario:
    """Tenant ``a`` (no retraining) needs one of two 3g instances; ``b`` and ``c`` could
    each retrain on the other, and the gain pays for one instance that ``a`` can spare,
    not for both."""
    def retrainer(name: str) -> dict:
        return {"name": name, "model": "resnet50", "slo_ms": 100,
                "arrivals": {"synthetic": "poisson", "mean_rps": 300.0},
                "window_s": 200.0, "work_gpu_s": 20.0, "accuracy_before": 0.5, "accuracy_after": 0.9}
    return migrator.Scenario.from_dict({
        "name": "three", "slot_s": 1.0, "duration_s": 200, "seed": 0,
        "gpus": [{"model": "A100-40GB", "count": 1, "layout": "3g.20gb@0,3g.20gb@4"}],
        "tenants": [{"name": "a", "model": "resnet50", "slo_ms": 100,
                     "arrivals": {"synthetic": "poisson", "mean_rps": 1100.0}},
                    retrainer("b"), retrainer("c")],
        "planner": {"horizon": 30},
    })


def test_a_tenant_giving_up_one_instance_values_the_others_more():
    problem = planner.Planner(three_tenants()).problem()
    names = [str(p) for p in problem.gpus[0].placements]
    tasks = np.full((len(problem.periods), len(names)), -1)
    serving = [names.index("3g.20gb@0"), names.index("3g.20gb@4")]
    tasks[:, serving] = 1  # both serve a
    capacity = problem.gpus[0].capacity_rps[0, serving]
    demand = problem.arrivals[0].mean() / problem.slot_s
    assert capacity.min() > demand  # either instance alone serves a
    # Each instance alone costs a nothing, so valued once, up front, both would retrain.
    assert np.all(marginal_service(problem, [tasks[0]])[0][serving] == 0)
    moved = retrain_over_window(problem, (tasks,))[0][0]
    assert (moved[serving] == 1).sum() == 1  # a keeps one instance
    # The other retrains b or c, or gives way to a larger instance that does.
    other = serving[int(np.flatnonzero(moved[serving] != 1)[0])]
    if moved[other] < 0:
        gpu = problem.gpus[0]
        assert any(moved[q] in (4, 6) and gpu.memory_mask[q] & gpu.memory_mask[other] for q in range(len(moved)))
    else:
        assert moved[other] in (4, 6)


@settings(max_examples=40)
@given(n_gpus=st.integers(1, 3), n_tenants=st.integers(1, 8), load=st.floats(0.1, 3.0),
       slot=st.integers(0, 399), seed=st.integers(0, 2**16), penalty=st.sampled_from([0.0, 200.0, 5000.0]))
def test_the_pass_changes_only_what_it_may(n_gpus, n_tenants, load, slot, seed, penalty) -> None:
    """On random problems: only the first period changes, kept GPUs not at all; every
    layout stays valid; what changes goes to an eligible tenant's retraining, one instance
    a tenant at most, and an instance is only removed where a retraining instance overlaps it
    (it gave way, never one that retrains)."""
    rng = np.random.default_rng(seed)
    scenario = sized(n_gpus, n_tenants, horizon=8).with_planner(reconfig_penalty=penalty)
    base = planner.Planner(scenario)
    names = [t.name for t in scenario.tenants]
    layouts = ("3g.20gb@0,3g.20gb@4", "7g.40gb@0", "", "4g.20gb@0,2g.10gb@4,1g.5gb@6")
    tasks_now = [f"{names[int(rng.integers(len(names)))]}:{rng.choice(['infer', 'retrain'])}" for _ in range(3)]
    chosen = [layouts[int(rng.integers(len(layouts)))] for _ in range(n_gpus)]
    state = PlannerState(
        layouts=tuple(chosen),
        assignments=tuple({p: tasks_now[k] for k, p in enumerate(filter(None, lay.split(",")))} for lay in chosen),
        tenants={n: TenantState(progress_gpu_s=float(rng.uniform(0, 60)), done=bool(rng.random() < 0.2)) for n in names},
        slot=slot,
    )
    problem = base.problem(forecast=base.default_forecast(state) * load, state=state)
    tasks = greedy_tasks(problem)
    keep = {g for g in range(n_gpus) if rng.random() < 0.3}
    moved = retrain_over_window(problem, tasks, keep)
    eligible = (problem.window_slots > 0) & ~problem.done0 & (problem.work_left > 0) & (problem.acc_after > problem.acc_before)
    started = np.zeros(n_tenants, dtype=int)
    for g, (before, after) in enumerate(zip(tasks, moved)):
        np.testing.assert_array_equal(after[1:], before[1:])
        if g in keep:
            np.testing.assert_array_equal(after, before)
        gpu = problem.gpus[g]
        layout = ",".join(str(gpu.placements[q]) for q in np.flatnonzero(after[0] >= 0))
        assert migrator.Geometry.for_gpu("A100-40GB").is_valid(layout)
        added = [int(q) for q in np.flatnonzero((after[0] != before[0]) & (after[0] >= 0))]
        for q in np.flatnonzero(after[0] != before[0]):
            task = int(after[0, q])
            if task < 0:  # gave way: not a retraining, and under a retraining added here
                assert not (before[0, q] > 0 and before[0, q] % 2 == 0)
                assert any(gpu.memory_mask[r] & gpu.memory_mask[q] for r in added)
                continue
            assert task > 0 and task % 2 == 0, "only retraining is added"
            assert eligible[(task - 2) // 2]
            started[(task - 2) // 2] += 1
    assert started.max(initial=0) <= 1

    def retraining(plan):
        first = np.concatenate([t[0] for t in plan])
        return np.bincount((first[(first > 0) & (first % 2 == 0)] - 2) // 2, minlength=n_tenants)

    # (16): no tenant retrains on more instances than it may, unless the input already had them.
    assert np.all(retraining(moved) <= np.maximum(retraining(tasks), problem.retrain_instances))


def test_an_instance_the_plan_retrains_on_is_not_taken_for_another_tenant():
    problem = planner.Planner(sized(2, 4, horizon=8)).problem()
    gain = (problem.acc_after - problem.acc_before) * problem.mean_arrivals()
    low = int(np.argmin(np.where(problem.window_slots > 0, gain, np.inf)))
    names = [str(p) for p in problem.gpus[1].placements]
    tasks = tuple(t.copy() for t in greedy_tasks(problem))
    tasks[1][:] = -1
    tasks[1][:, names.index("7g.40gb@0")] = 2 + 2 * low  # GPU 1 retrains the tenant of least gain
    moved = retrain_over_window(problem, tasks)
    # The tenants of more gain would each retrain fastest on that 7g, free of inference; it
    # is not free: taking it would throw the retraining away.
    assert moved[1][0, names.index("7g.40gb@0")] == 2 + 2 * low


def test_the_job_of_most_gain_per_unit_of_work_picks_first():
    # One empty A100: whoever picks first takes the 7g, the other finds no room beside it.
    # a gains a little more per slot, b needs a sixth of the work: b first (Smith's rule).
    table = scenario(300.0).to_dict()
    table["gpus"] = [{"model": "A100-40GB", "count": 1, "layout": ""}]
    b = dict(table["tenants"][0], name="b", work_gpu_s=10.0,
             arrivals={"synthetic": "poisson", "mean_rps": 250.0})
    table["tenants"][0]["work_gpu_s"] = 60.0
    table["tenants"].append(b)
    problem = planner.Planner(migrator.Scenario.from_dict(table)).problem()
    gain = (problem.acc_after - problem.acc_before) * problem.mean_arrivals()
    assert gain[0] > gain[1] and gain[0] / problem.work_left[0] < gain[1] / problem.work_left[1]
    empty = tuple(np.full_like(t, -1) for t in greedy_tasks(problem))
    moved = retrain_over_window(problem, empty)
    names = [str(p) for p in problem.gpus[0].placements]
    assert moved[0][0, names.index("7g.40gb@0")] == 4  # b's retraining


def _two_gpus(rate_rps: float) -> migrator.Scenario:
    """Two A100s, one tenant whose retraining (150 GPU-seconds) finishes within its 200 s
    window on a 7g instance only (a 4g needs 231 s, a 3g 282 s)."""
    table = scenario(rate_rps, work_gpu_s=150.0).to_dict()
    table["gpus"] = [{"model": "A100-40GB", "count": 2, "layout": ""}]
    return migrator.Scenario.from_dict(table)


def _plan(problem, first_by_gpu):
    """Every period with the given first-period tasks ({placement name: task} per GPU)."""
    out = []
    for gpu, wanted in zip(problem.gpus, first_by_gpu):
        row = np.full(len(gpu.placements), -1, dtype=np.int64)
        for name, task in wanted.items():
            row[[str(p) for p in gpu.placements].index(name)] = task
        out.append(np.tile(row, (len(problem.periods), 1)))
    return tuple(out)


def test_instances_that_serve_little_give_way_to_a_faster_retraining():
    problem = planner.Planner(_two_gpus(300.0)).problem()
    # GPU 0's two 3g serve all 300 req/s; GPU 1's 2g is spare capacity. No instance, nor any
    # placement that fits beside them, finishes the job within the window; a 7g does.
    tasks = _plan(problem, [{"3g.20gb@0": 1, "3g.20gb@4": 1}, {"2g.10gb@0": 1}])
    moved = retrain_over_window(problem, tasks)
    placements = [str(p) for p in problem.gpus[1].placements]
    # GPU 1's 2g gives way (one instance, nothing lost) rather than GPU 0's two 3g.
    assert moved[1][0, placements.index("7g.40gb@0")] == RETRAIN_A
    assert moved[1][0, placements.index("2g.10gb@0")] == -1
    np.testing.assert_array_equal(moved[0], tasks[0])
    np.testing.assert_array_equal(moved[1][1:], tasks[1][1:])  # only the first period changes
    geometry = migrator.Geometry.for_gpu(problem.gpus[1].model)
    geometry.validate(",".join(placements[q] for q in np.flatnonzero(moved[1][0] >= 0)))
    # The tenant keeps capacity for its demand, and the job is done within its window.
    serving = sum(problem.gpus[g].capacity_rps[0, q] for g in range(2) for q in np.flatnonzero(moved[g][0] == 1))
    assert serving >= problem.demand_rps()[0]
    speed = problem.gpus[1].retrain_speed[0, placements.index("7g.40gb@0")]
    assert problem.setup_s + problem.work_left[0] / speed < problem.window_slots[0] * problem.slot_s


def test_an_instance_the_tenant_needs_does_not_give_way():
    # At 2000 req/s GPU 0's 3g (1224 req/s) is not enough: GPU 1's 2g serves 616 req/s that
    # would be lost for the 152 slots the retraining takes, more than the gain over the 48
    # slots left after it.
    problem = planner.Planner(_two_gpus(2000.0)).problem()
    tasks = _plan(problem, [{"3g.20gb@0": 1}, {"2g.10gb@0": 1}])
    np.testing.assert_array_equal(retrain_over_window(problem, tasks)[1], tasks[1])


def test_a_tenant_does_not_lose_every_instance_to_its_own_retraining():
    # One GPU whose instances each look spare while the others serve, but not all at once:
    # a 7g over all of them would leave the tenant unserved while it retrains.
    table = _two_gpus(300.0).to_dict()
    table["gpus"] = [{"model": "A100-40GB", "count": 1, "layout": ""}]
    problem = planner.Planner(migrator.Scenario.from_dict(table)).problem()
    tasks = _plan(problem, [{"2g.10gb@0": 1, "2g.10gb@2": 1, "3g.20gb@4": 1}])
    assert (marginal_service(problem, [t[0] for t in tasks])[0] == 0).all()
    np.testing.assert_array_equal(retrain_over_window(problem, tasks)[0], tasks[0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), load=st.floats(0.2, 3.0))
def test_give_way_agrees_with_a_scan_as_the_plan_changes(seed, load):
    from migrator.planning.retraining import _GiveWay, _serving

    rng = np.random.default_rng(seed)
    base = planner.Planner(sized(4, 8, horizon=8))
    problem = base.problem(forecast=base.default_forecast(base.initial_state()) * load)
    plan = [t.copy() for t in greedy_tasks(problem)]
    serving = _serving(problem, [t[0] for t in plan])
    width = max(len(g.placements) for g in problem.gpus)
    give_way = _GiveWay(problem, plan, (), width, serving, problem.demand_rps())
    for _ in range(4):
        i = int(rng.integers(len(problem.tenants)))
        finish = np.full((len(problem.gpus), width), np.inf)
        for g, gpu in enumerate(problem.gpus):
            finish[g, : len(gpu.placements)] = 1.0 + problem.work_left[i] / np.maximum(gpu.retrain_speed[i], 1e-9)
        gain, end, floor = float(rng.uniform(1, 500)), float(rng.uniform(20, 300)), float(rng.uniform(0, 2000))
        worth, g, q, _ = give_way.best(gain, end, finish, floor)
        expected = give_way_by_scanning(problem, plan, serving, gain, end, finish, floor)
        assert worth == pytest.approx(expected[0], rel=1e-9) if np.isfinite(expected[0]) else worth == -np.inf
        if np.isfinite(expected[0]):
            assert (g, q) == expected[1:]
        # An instance goes (as a retraining would take it): the cached losses must follow.
        g = int(rng.integers(len(problem.gpus)))
        busy = np.flatnonzero(plan[g][0] > 0)
        if busy.size:
            r = int(rng.choice(busy))
            tenant = (int(plan[g][0, r]) - 1) // 2 if plan[g][0, r] % 2 == 1 else -1
            plan[g][0, r] = -1
            if tenant >= 0:
                serving[tenant].remove((g, r))
                give_way.forget(tenant)
            give_way.refresh(g)
