"""Splitting a problem per GPU: every tenant lands on one GPU, tasks map back, and the merged
plan is worth, by the estimator, what the parts' objectives add up to."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from migrator.planning import planner
from migrator.planning.decompose import assign_tenants, merge, split
from scenarios import sized


@pytest.fixture(scope="module")
def problem():
    return planner.Planner(sized(3, 5, horizon=4)).problem()


def test_every_tenant_goes_to_exactly_one_gpu(problem):
    parts = assign_tenants(problem)
    assert len(parts) == len(problem.gpus)
    assert sorted(i for part in parts for i in part) == list(range(len(problem.tenants)))


def test_parts_keep_only_their_tenants(problem):
    parts = assign_tenants(problem)
    for part, sub in zip(parts, split(problem, parts)):
        assert sub.tenants == tuple(problem.tenants[i] for i in part)
        np.testing.assert_array_equal(sub.arrivals, problem.arrivals[part])
        assert sub.gpus[0].capacity_rps.shape == (len(part), len(sub.gpus[0].placements))


def test_merged_plan_is_worth_the_sum_of_its_parts(problem):
    parts = assign_tenants(problem)
    subs = split(problem, parts)
    solutions = [planner.solve_problem(sub, time_limit_s=20, mip_gap=0.0) for sub in subs]
    merged = merge(problem, parts, solutions)
    # Tasks point at the right tenants again: the estimator, on the whole problem, agrees.
    goodput = planner.expected_score(problem, merged.tasks).goodput
    changes = planner.reconfigurations(problem, merged.tasks)
    assert goodput - problem.reconfig_penalty * changes == pytest.approx(merged.objective, rel=1e-6)
    for tasks, part in zip(merged.tasks, parts):
        own = {1 + 2 * i for i in part} | {2 + 2 * i for i in part} | {-1, 0}
        assert set(np.unique(tasks)) <= own


def test_planner_splits_only_above_the_threshold():
    scenario = sized(2, 4, horizon=4)
    whole = planner.Planner(scenario, scenario.planner.__class__(horizon=4, decompose_above=0)).plan()
    parts = planner.Planner(scenario, scenario.planner.__class__(horizon=4, decompose_above=1)).plan()
    assert not whole.stats.status.startswith("split")
    assert parts.stats.status.startswith("split into 2 GPUs")
    # Splitting restricts the plan: it can never beat the whole problem solved to optimality.
    assert parts.stats.objective <= whole.stats.bound + 1e-6 * abs(whole.stats.bound)


def test_greedy_shares_split_each_tenants_demand(problem):
    from migrator.planning.decompose import parts_of, shares_from_plan

    shares = shares_from_plan(problem, planner.greedy_tasks(problem))
    np.testing.assert_allclose(shares.sum(axis=0), 1.0)
    parts = parts_of(shares)
    subs = split(problem, parts, shares)
    total = sum(sub.arrivals.sum() for sub in subs)
    assert total == pytest.approx(problem.arrivals.sum())


def test_merged_shares_serve_at_least_what_the_parts_do(problem):
    # A tenant split over GPUs pools its capacity in the merged plan, so the estimator's
    # value of the merge is at least the parts' objectives added up.
    from migrator.planning.decompose import parts_of, shares_from_plan

    shares = shares_from_plan(problem, planner.greedy_tasks(problem))
    parts = parts_of(shares)
    solutions = [planner.solve_problem(sub, time_limit_s=20, mip_gap=0.0) for sub in split(problem, parts, shares)]
    merged = merge(problem, parts, solutions)
    worth = planner.expected_score(problem, merged.tasks).goodput - problem.reconfig_penalty * planner.reconfigurations(problem, merged.tasks)
    assert worth >= merged.objective - 1e-6 * abs(merged.objective)


def test_parts_carry_their_tenants_terminal_gains():
    scenario = sized(2, 4, horizon=8).with_planner(terminal_value=True)
    whole = planner.Planner(scenario).problem()
    parts = [[0, 1], [1, 2, 3]]
    shares = np.array([[1.0, 0.5, 0.0, 0.0], [0.0, 0.5, 1.0, 1.0]])
    subs = split(whole, parts, shares)
    for tenants, sub, row in zip(parts, subs, shares):
        np.testing.assert_allclose(sub.terminal_gain, whole.terminal_gain[tenants] * row[tenants])


def _churn(planner_: planner.Planner, decisions: int, jitter: float) -> int:
    """GPU layout changes after the first decision, the forecast jittered each time (as an
    EWMA forecaster's updates move it), nothing else moving."""
    rng = np.random.default_rng(0)
    state = planner_.initial_state()
    base = planner_.default_forecast(state)
    changes = 0
    for step in range(decisions):
        forecast = base * rng.uniform(1 - jitter, 1 + jitter, size=(base.shape[0], 1))
        following = planner.Planner.advance(planner_.plan(forecast=forecast, state=state))
        if step > 0:
            changes += sum(a != b for a, b in zip(state.layouts, following.layouts))
        state = following
    return changes


def test_the_split_does_not_re_deal_tenants_among_alike_gpus():
    # A time limit the parts never reach, so that only the split's start can move layouts.
    scenario = sized(8, 16).with_planner(time_limit_s=8.0)
    stable = _churn(planner.Planner(scenario), decisions=6, jitter=0.05)
    # The greedy plan alone deals tenants afresh each time (what the split did before it
    # weighed the last plan and the current layouts against it): GPUs reconfigure for
    # nothing (measured 7 changes against 0; in the simulator 183 against 56 in 300 s).
    greedy_only = planner.Planner(scenario)

    def greedy_start(problem, deadline=None):
        tasks = planner.greedy_tasks(problem)
        return greedy_only._worth(problem, tasks), tasks

    greedy_only._scored_start = greedy_start  # type: ignore[method-assign]
    assert stable <= 1
    assert _churn(greedy_only, decisions=6, jitter=0.05) >= stable + 3


def test_parts_solved_side_by_side_give_the_plan_solved_one_after_another():
    # A time limit the parts never reach, so that only the order of solving could differ.
    scenario = sized(4, 8, horizon=8).with_planner(time_limit_s=30.0)
    one_by_one = planner.Planner(scenario.with_planner(workers=1))
    side_by_side = planner.Planner(scenario.with_planner(workers=3))
    assert side_by_side.workers(4) == 3 and one_by_one.workers(4) == 1
    state = None
    for _ in range(3):
        a, b = one_by_one.plan(state=state), side_by_side.plan(state=state)
        assert a.stats.status.startswith("split into 4 GPUs")
        assert [np.array_equal(x, y) for x, y in zip(a.tasks, b.tasks)] == [True] * 4
        assert a.stats.objective == pytest.approx(b.stats.objective, rel=1e-9)
        assert a.stats.bound == pytest.approx(b.stats.bound, rel=1e-6)
        state = planner.Planner.advance(a)


def test_parts_are_queued_longest_first_once_every_part_was_solved(monkeypatch):
    # After a decision that solved every part, the next queues them by that decision's
    # times, longest first; the plan is the same as in GPU order (each part's solution
    # goes back to its GPU), only the lanes' loads differ.
    scenario = sized(4, 8, horizon=8).with_planner(time_limit_s=30.0, workers=1)
    queued, in_gpu_order = planner.Planner(scenario), planner.Planner(scenario)
    first = queued.plan()
    seconds = queued._part_seconds
    assert seconds is not None and len(seconds) == 4 and (seconds > 0).all()
    state = planner.Planner.advance(first)
    in_gpu_order._previous = queued._previous
    solve, called = planner.solve_problem, []

    def recorded(sub, **kwargs):
        called.append(sub.gpus[0].name)
        return solve(sub, **kwargs)

    monkeypatch.setattr(planner, "solve_problem", recorded)
    a = queued.plan(state=state)
    assert called == [f"gpu{g}" for g in np.argsort(-seconds, kind="stable")]
    called.clear()
    b = in_gpu_order.plan(state=state)
    assert called == [f"gpu{g}" for g in range(4)]
    assert [np.array_equal(x, y) for x, y in zip(a.tasks, b.tasks)] == [True] * 4
    assert a.stats.objective == pytest.approx(b.stats.objective, rel=1e-9)


def test_parts_stay_in_gpu_order_after_a_decision_that_cut_some():
    p = planner.Planner(sized(4, 8, horizon=8))
    p._remember_part_seconds([planner.RawSolution((), 1.0, 1.0, "Optimal", 0.0, 0.1, 0.2),
                              planner.RawSolution((), float("nan"), float("inf"), planner.NOT_REACHED, float("inf"), 0.0, 0.0)])
    assert p._part_order(2) == [0, 1]
    p._remember_part_seconds([planner.RawSolution((), 1.0, 1.0, "Optimal", 0.0, 0.1, 0.2),
                              planner.RawSolution((), 1.0, 1.0, "Optimal", 0.0, 0.1, 0.5)])
    assert p._part_order(2) == [1, 0]
    assert p._part_order(3) == [0, 1, 2]  # another split: no times for it


def test_workers_default_to_the_cpu_count_and_never_exceed_the_parts(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    scenario = sized(2, 4, horizon=4)
    assert planner.Planner(scenario).workers(8) == 6
    assert planner.Planner(scenario).workers(2) == 2
    assert planner.Planner(scenario.with_planner(workers=1)).workers(8) == 1


def test_planning_in_threads_leaves_stdout_working(tmp_path):
    # HiGHS prints a banner when a process makes its first instance; the planner hides it
    # by pointing stdout at /dev/null meanwhile. Threads doing that at once could leave it
    # there: the script's own line would then be lost.
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "plan.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
        "from migrator import planner\n"
        "from scenarios import sized\n"
        "scenario = sized(8, 16, horizon=8).with_planner(workers=8)\n"
        "p = planner.Planner(scenario)\n"
        "for _ in range(10):\n"
        "    p.plan()\n"
        "print('still here')\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout == "still here\n"


def test_each_tenant_retrains_in_as_many_parts_as_it_may(problem):
    from migrator.planning.decompose import retraining_gpus

    parts = [[0, 1, 2], [0, 1], [0, 3, 4]]
    shares = np.zeros((3, 5))
    shares[0, [0, 1, 2]] = [0.2, 0.5, 1.0]
    shares[1, [0, 1]] = [0.3, 0.5]
    shares[2, [0, 3, 4]] = [0.5, 1.0, 1.0]
    # Largest share first (ties to the lower GPU); all parts where there is no limit.
    assert retraining_gpus(problem, parts, shares)[:2] == [{2}, {0}]
    assert retraining_gpus(dataclasses.replace(problem, retrain_instances=2), parts, shares)[0] == {1, 2}
    assert retraining_gpus(dataclasses.replace(problem, retrain_instances=0), parts, shares)[0] == {0, 1, 2}
    # A GPU retraining the tenant now keeps it, whatever its share.
    gpus = list(problem.gpus)
    current = gpus[0].current.copy()
    current[np.flatnonzero(current >= 0)[0] if (current >= 0).any() else 0] = 2  # tenant 0's retraining
    gpus[0] = dataclasses.replace(gpus[0], current=current)
    assert retraining_gpus(dataclasses.replace(problem, gpus=tuple(gpus)), parts, shares)[0] == {0}


def test_split_parts_retrain_a_tenant_in_one_part_only():
    whole = planner.Planner(sized(3, 4, horizon=4)).problem()
    parts = [[0, 1], [0, 2], [0, 3]]
    shares = np.array([[0.2, 1.0, 0, 0], [0.5, 0, 1.0, 0], [0.3, 0, 0, 1.0]])
    for limit, expected in ((1, [False, True, False]), (0, [True, True, True])):
        subs = split(dataclasses.replace(whole, retrain_instances=limit), parts, shares)
        # Tenant 0 is each part's first tenant; only the part with its largest share may retrain it.
        assert [bool(sub.gpus[0].retrain_speed[0].any()) for sub in subs] == expected
        assert all(sub.gpus[0].retrain_speed[1].any() for sub in subs)  # the others keep theirs


def _burst_case():
    """Two A100s: GPU 0 serves both tenants, GPU 1 is empty; tenant 0 bursts late in the horizon."""
    from migrator.planning.planner_problem import PlannerState

    scenario = sized(2, 2, horizon=16).with_planner(decompose_above=1, retrain_over_window=False)
    names = [t.name for t in scenario.tenants]
    state = PlannerState(layouts=("3g.20gb@0,3g.20gb@4", ""),
                         assignments=({"3g.20gb@0": f"{names[0]}:infer", "3g.20gb@4": f"{names[1]}:infer"}, {}))
    p = planner.Planner(scenario)
    forecast = np.repeat(p.problem(state=state).demand_rps()[:, None], 16, axis=1) * 0.5
    forecast[0, 8:] *= 8.0  # a burst no instance of the current layout can serve
    return p, forecast, state


def test_demand_no_gpu_covers_goes_to_an_empty_gpu():
    from migrator.planning.decompose import empty_gpu, part_arrivals, shares_from_plan

    p, forecast, state = _burst_case()
    problem = p.problem(forecast=forecast, state=state)
    start = planner.keep_current(problem)
    assert empty_gpu(problem, start) == 1
    shares = shares_from_plan(problem, start)
    arrivals = part_arrivals(problem, start, shares)
    np.testing.assert_allclose(arrivals.sum(axis=0), problem.arrivals)  # nothing lost or made up
    assert arrivals[1, 0, :8].sum() == 0 and arrivals[1, 0, 8:].sum() > 0  # only the burst moves
    served_now = problem.gpus[0].capacity_rps[0][start[0][0] == 1].sum() * problem.slot_s
    np.testing.assert_allclose(arrivals[0, 0, 8:], np.minimum(problem.arrivals[0, 8:], served_now))


def test_the_split_plans_the_burst_on_the_empty_gpu():
    from migrator.planning.decompose import shares_from_plan, split_by_plan

    p, forecast, state = _burst_case()
    problem = p.problem(forecast=forecast, state=state)
    start = planner.keep_current(problem)  # GPU 1 empty: its share of every tenant is 0
    parts, subs = split_by_plan(problem, start)
    solutions = [planner.solve_problem(sub, time_limit_s=20, mip_gap=0.0) for sub in subs]
    merged = merge(problem, parts, solutions)
    later = merged.tasks[1][problem.period_starts() >= 8]
    assert (later == 1).any(), later  # GPU 1 serves tenant 0's burst
    # Worth more, by the estimator, than the plan of the shares alone (GPU 1 left empty).
    alone = [planner.solve_problem(sub, time_limit_s=20, mip_gap=0.0)
             for sub in split(problem, parts, shares_from_plan(problem, start))]
    assert p._worth(problem, merged.tasks) > p._worth(problem, merge(problem, parts, alone).tasks)


def test_empty_gpus_are_left_to_the_retraining_pass_while_it_has_work():
    scenario = sized(2, 2, horizon=8)
    problem = planner.Planner(scenario).problem()
    assert planner.Planner(scenario.with_planner(retrain_over_window=True)).fills_empty_gpus(problem) is False
    assert planner.Planner(scenario.with_planner(retrain_over_window=False)).fills_empty_gpus(problem) is True
    done = dataclasses.replace(problem, done0=np.ones(len(problem.tenants), dtype=bool))  # nothing left to retrain
    assert planner.Planner(scenario.with_planner(retrain_over_window=True)).fills_empty_gpus(done) is True


@pytest.mark.parametrize("case", ["inference-only", "exact-model"])
def test_receding_split_plans_are_proven_within_the_goal(case):
    """Issue 5's figure on 8 A100s / 16 tenants / 30 slots: every split plan of a receding
    run is proven within 0.1 % of the whole program's bound, for tenants that only serve and
    for the issue's own model (retraining tenants, the program alone: no retraining pass);
    measured 0.01-0.08 %. Before the packed start (``greedy.packed_tasks``) the cold start
    was 0.72 % from the bound; since the capacity model became the greedy batching server's
    (f2c2d98, larger capacities on small profiles) it is 0.14-0.17 %, so the cold start is
    held to 0.2 % and the goal holds from the second decision on."""
    from scenarios import inference_only

    scenario = inference_only(sized(8, 16)) if case == "inference-only" else sized(8, 16).with_planner(retrain_over_window=False)
    # Issue 5's model: instances filled to their SLO capacity (with the default headroom of
    # 0.85 the same runs measured 0.18-0.34 %).
    p = planner.Planner(scenario.with_planner(time_limit_s=10.0, load_headroom=1.0))
    state, gaps = None, []
    for _ in range(6):
        plan = p.plan(state=state)
        assert plan.stats.objective <= plan.stats.bound
        gaps.append(plan.stats.mip_gap)
        state = planner.Planner.advance(plan)
    assert gaps[0] <= 2e-3 and max(gaps[1:]) <= 1e-3, gaps


def test_packed_start_is_offered_only_while_the_pass_has_no_work(monkeypatch):
    """A packed first plan, carried on, left the retraining pass less room: replays earned
    0.4 % (8 GPUs) and 1.9 % (built-in scenario) less with it (docs/results.md), so the
    planner offers it only where the pass has nothing to place."""
    offered = []

    def packed(problem):
        offered.append(problem)
        return planner.keep_current(problem)

    monkeypatch.setattr(planner, "packed_tasks", packed)
    scenario = sized(2, 4, horizon=8).with_planner(decompose_above=1)
    planner.Planner(scenario.with_planner(retrain_over_window=True)).plan()
    assert offered == []
    planner.Planner(scenario.with_planner(retrain_over_window=False)).plan()
    assert len(offered) == 1


def test_parts_are_settled_by_the_period_bounds_once_every_part_was_solved(monkeypatch):
    # The first decision (no times known) solves every part; the ones after it may settle
    # parts whose start reaches the period bounds; after a decision that cut parts, none.
    scenario = sized(8, 16, horizon=8).with_planner(time_limit_s=30.0, workers=1)
    p = planner.Planner(scenario)
    solve, asked = planner.solve_problem, []

    def recorded(sub, **kwargs):
        asked.append(kwargs["settle"])
        return solve(sub, **kwargs)

    monkeypatch.setattr(planner, "solve_problem", recorded)
    first = p.plan()
    assert asked and not any(asked)
    asked.clear()
    second = p.plan(state=planner.Planner.advance(first))
    assert asked and all(asked)
    assert planner.PERIOD_BOUNDS_STATUS in second.stats.status  # some part was settled
    p._part_seconds = None  # as after a decision the deadline cut short
    asked.clear()
    p.plan(state=planner.Planner.advance(second))
    assert asked and not any(asked)


def test_settled_parts_give_the_plans_solved_ones_do(monkeypatch):
    # Settling a part returns its start where HiGHS would prove the same start: over a
    # receding run, the same plans (tasks and values) as with every part solved.
    scenario = sized(8, 16, horizon=8).with_planner(time_limit_s=30.0, workers=1)
    settled, solved = planner.Planner(scenario), planner.Planner(scenario)
    solve = planner.solve_problem
    state, count = None, 0
    for _ in range(4):
        a = settled.plan(state=state)
        monkeypatch.setattr(planner, "solve_problem", lambda sub, **kw: solve(sub, **{**kw, "settle": False}))
        b = solved.plan(state=state)
        monkeypatch.setattr(planner, "solve_problem", solve)
        count += a.stats.status.count(planner.PERIOD_BOUNDS_STATUS)
        assert planner.PERIOD_BOUNDS_STATUS not in b.stats.status
        assert a.stats.objective == pytest.approx(b.stats.objective, rel=scenario.planner.mip_gap)
        state = planner.Planner.advance(a)
    assert count > 0
