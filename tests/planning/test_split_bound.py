"""The bound reported for split plans (migrator.planning.split_bound) is never below the whole
program's proven optimum, and on the issue's 8-GPU case it is far tighter than the bound
that serves every request at its best accuracy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import migrator
from migrator.planning import planner
from migrator.planning import split_bound as bounds
from migrator.planning.deadline import Deadline
from migrator.planning.split_bound import BoundKeeper, Completions, LpBasis, pool_tenants, split_bound, whole_bound
from scenarios import sized, small
from random_cases import small_random_case


@pytest.mark.parametrize("seed", range(24))
def test_bound_is_never_below_the_optimum(seed: int) -> None:
    problem = small_random_case(seed).problem()
    if seed % 2:  # terminal value (13) on, with random gains
        rng = np.random.default_rng(seed)
        problem = dataclasses.replace(problem, terminal_gain=rng.uniform(0, 500, size=len(problem.tenants)))
    optimum = planner.solve_problem(problem, time_limit_s=60, mip_gap=0.0)
    assert optimum.status == "Optimal"
    by_slot, by_period = split_bound(problem, by_period=False), split_bound(problem, by_period=True)
    assert by_slot >= optimum.objective - 1e-6 * max(1.0, abs(optimum.objective))
    # Rows summed over periods relax the rows per slot: never tighter.
    assert by_period >= by_slot - 1e-6 * max(1.0, abs(by_slot))


def _completions_without_look_ahead(lp, window, work, who, slot_s) -> None:
    """Rows (11) as the program has them, ``members work c[t] <= P[t-1]``: the reference
    the look-ahead is held to."""
    for completion, progress in window:
        lp.row(-np.inf, 0.0, {progress: -1.0, completion: who.members * work})


def test_looking_ahead_at_completions_tightens_the_bound_and_keeps_it_valid(monkeypatch) -> None:
    # Random cases whose retraining (0.1-1.5 GPU-s) can finish within their 4-8 slots.
    looked, plain = [], []
    for seed in range(40):
        problem = small_random_case(seed).problem()
        looked.append(split_bound(problem, by_period=False))
        with monkeypatch.context() as m:
            m.setattr(bounds, "_add_completions", _completions_without_look_ahead)
            plain.append(split_bound(problem, by_period=False))
    looked_, plain_ = np.array(looked), np.array(plain)
    assert np.all(looked_ <= plain_ * (1 + 1e-9))
    tighter = np.flatnonzero(looked_ < plain_ * (1 - 1e-6))
    assert len(tighter) >= 3  # measured: 4 of 40 (seeds 11, 15, 26, 30)
    for seed in tighter:  # where the rows cut, they never cut below the optimum
        optimum = planner.solve_problem(small_random_case(int(seed)).problem(), time_limit_s=60, mip_gap=0.0)
        assert optimum.status == "Optimal"
        assert looked_[seed] >= optimum.objective - 1e-6 * max(1.0, abs(optimum.objective))


@pytest.mark.parametrize("n_gpus,n_tenants", [(8, 16), (32, 64)])
def test_rows_by_period_lose_little_at_scale(n_gpus: int, n_tenants: int) -> None:
    # Measured +0.023 % (8 A100s) and +0.015 % (32, and 128) above the rows per slot, with a
    # program a third the size (docs/model.md, "At scale").
    problem = planner.Planner(sized(n_gpus, n_tenants)).problem()
    by_slot = split_bound(problem, 60, by_period=False, pool=False)
    by_period = split_bound(problem, 60, by_period=True, pool=False)
    assert by_slot <= by_period <= by_slot * 1.001


def _with_multipliers(row_dual: np.ndarray) -> LpBasis:
    return LpBasis(np.zeros(0, np.int8), np.zeros(0, np.int8), row_dual)


@pytest.mark.parametrize("seed", range(6))
def test_any_multipliers_bound_the_program(seed: int) -> None:
    # The bound taken from multipliers (the last decision's) holds whatever they are: random
    # ones give a bound no lower than the relaxation's optimum; its own optimal ones, the optimum.
    problem = small_random_case(seed).problem()
    solved, basis = whole_bound(problem, time_limit_s=60)
    assert basis is not None and basis.row_dual is not None
    rng = np.random.default_rng(seed)
    for scale in (1e-3, 1.0, 1e3):
        noisy = basis.row_dual + scale * rng.standard_normal(len(basis.row_dual))
        unsolved, _ = whole_bound(problem, time_limit_s=0.0, start=_with_multipliers(noisy))
        assert unsolved >= solved * (1 - 1e-9) - 1e-6
    again, _ = whole_bound(problem, time_limit_s=0.0, start=_with_multipliers(basis.row_dual))
    assert again == pytest.approx(solved, rel=1e-7)


def test_a_solve_the_decision_cannot_wait_for_bounds_the_decisions_after_it() -> None:
    scenario = sized(8, 16)
    loop = planner.Planner(scenario)
    keeper = BoundKeeper()
    first = loop.problem()
    assert keeper.bound(first, Deadline(0.0)) == float("inf")  # no time, nothing earlier
    assert keeper.join(60.0)  # the solve went on in the background, and ended
    assert keeper.start is not None and keeper.start.row_dual is not None
    later = loop.problem(state=loop.advance(loop.plan()))
    fresh = split_bound(later, 60)
    at_once, _ = whole_bound(later, time_limit_s=0.0, start=keeper.start)  # the earlier multipliers alone
    assert fresh * (1 - 1e-9) <= at_once < float("inf")
    assert keeper.bound(later, Deadline(60.0)) == pytest.approx(fresh, rel=1e-7)  # from the earlier basis
    keeper.close()


def _advanced(scenario, decisions: int):
    """A receding loop's problem after ``decisions`` plans (demand moved on, jobs under way)."""
    loop = planner.Planner(scenario)
    state = None
    for _ in range(decisions):
        state = loop.advance(loop.plan(state=state))
    return loop.problem(state=state)


def test_a_pooled_bound_gets_the_tenant_by_tenant_one_beside_it(monkeypatch) -> None:
    # sized(8, 16) pooled (its 480 tenant-slots above a lowered POOL_ABOVE): four pools of four.
    monkeypatch.setattr(bounds, "POOL_ABOVE", 100)
    problem = _advanced(sized(8, 16), 3)
    pooled, unpooled = split_bound(problem, 60), split_bound(problem, 60, pool=False)
    assert unpooled < pooled * (1 - 1e-3)  # pooling loosens it here (0.73 % against 0.57 % above the plan)
    keeper = BoundKeeper()
    assert keeper.bound(problem, Deadline(60.0)) == pytest.approx(unpooled, rel=1e-7)
    assert keeper.join(60.0)
    assert keeper._unpooled.start is not None
    keeper.close()
    # Above UNPOOLED_UP_TO tenant-slots the pooled bound stands alone.
    monkeypatch.setattr(bounds, "UNPOOLED_UP_TO", 400)
    alone = BoundKeeper()
    assert alone.bound(problem, Deadline(60.0)) == pytest.approx(pooled, rel=1e-7)
    assert alone._unpooled.running is None
    alone.close()


def test_the_unpooled_bound_a_decision_cannot_wait_for_is_left_out(monkeypatch) -> None:
    monkeypatch.setattr(bounds, "POOL_ABOVE", 100)
    problem = _advanced(sized(8, 16), 1)
    keeper = BoundKeeper()
    # No time: the pooled solve's early bound is inf (no earlier solve) and the unpooled one
    # is not waited for; both go on in the background.
    assert keeper.bound(problem, Deadline(0.0)) == float("inf")
    assert keeper.join(60.0)
    later = _advanced(sized(8, 16), 2)
    assert keeper.bound(later, Deadline(60.0)) == pytest.approx(split_bound(later, 60, pool=False), rel=1e-7)
    keeper.close()


def test_closing_the_keeper_stops_its_background_solve(monkeypatch) -> None:
    # A cold solve at 128 GPUs takes seconds (tenants not pooled); closed at once, it ends
    # unfinished: no multipliers to start from (a solve left to finish would leave them).
    monkeypatch.setattr(bounds, "POOL_ABOVE", 10**9)
    keeper = BoundKeeper()
    problem = planner.Planner(sized(128, 256)).problem()
    keeper.bound(problem, Deadline(0.0))
    keeper.close()
    assert keeper.join(0.0)
    assert keeper.start is None or keeper.start.row_dual is None


@pytest.mark.parametrize("n_gpus,n_tenants", [(2, 4), (2, 8), (4, 8)])
def test_bound_holds_on_several_alike_gpus(n_gpus: int, n_tenants: int) -> None:
    # Alike GPUs form one class in the bound; the whole program proves its optimum here.
    problem = planner.Planner(sized(n_gpus, n_tenants, horizon=8)).problem()
    optimum = planner.solve_problem(problem, time_limit_s=120, mip_gap=0.0)
    assert optimum.status == "Optimal"
    bound = split_bound(problem)
    assert bound >= optimum.objective - 1e-6 * abs(optimum.objective)
    # Tight here: 3.6-7.7 % above the optimum before the rows "serving anything takes a whole
    # instance", 0.00 % with them (no retraining finishes within these 8 slots).
    assert bound <= optimum.objective * 1.001
    # Alike tenants pooled (two of each kind where there are eight): still above the optimum.
    pooled = split_bound(problem, pool=True)
    assert pooled >= bound - 1e-6 * abs(bound)


@pytest.mark.parametrize("seed", range(4))
def test_pooled_bound_holds_where_retraining_finishes_within_the_horizon(seed: int) -> None:
    # Two kinds of tenant, two of each at different rates, whose retraining (2 GPU-s) can
    # finish within the 6 slots: the pool's completion counts its busiest members first.
    rng = np.random.default_rng(seed)
    table = small(horizon=6).to_dict()
    table["gpus"][0]["count"] = 2
    twins = []
    for tenant in table["tenants"]:
        for k in range(2):
            rate = float(rng.uniform(100, 1500))
            arrivals = {"synthetic": "poisson", "mean_rps": rate, "seed": int(seed * 10 + k)}
            twins.append({**tenant, "name": f"{tenant['name']}{k}", "arrivals": arrivals})
    table["tenants"] = twins
    problem = planner.Planner(migrator.Scenario.from_dict(table)).problem()
    assert len(pool_tenants(problem)[0].tenants) == 2
    optimum = planner.solve_problem(problem, time_limit_s=120, mip_gap=0.0)
    assert optimum.status == "Optimal"
    pooled = split_bound(problem, pool=True)
    assert pooled >= optimum.objective - 1e-6 * abs(optimum.objective)
    assert pooled >= split_bound(problem, pool=False) * (1 - 1e-9)


def _receding_problems(scenario: migrator.Scenario, decisions: int) -> list:
    """The problems of ``decisions`` receding decisions from the scenario's start."""
    loop, problems = planner.Planner(scenario), []
    state = loop.initial_state()
    for _ in range(decisions):
        plan = loop.plan(state=state)
        problems.append(plan.problem)
        state = loop.advance(plan)
    return problems


def test_pooled_tenants_relax_the_bound_and_a_pool_of_one_changes_nothing() -> None:
    # A receding run on 8 A100s (four kinds of tenant, four of each; retraining starts, so
    # some pools split off): pooling only ever loosens the relaxation, by little here
    # (measured 0.57 % -> 0.73 % gap at the third decision).
    for problem in _receding_problems(sized(8, 16), 8):
        alone, pooled = split_bound(problem, pool=False), split_bound(problem, pool=True)
        assert alone - 1e-6 * alone <= pooled <= alone * 1.01
    # Four tenants of four kinds: four pools of one, the same program.
    for problem in _receding_problems(sized(2, 4), 4):
        assert len(pool_tenants(problem)[0].tenants) == 4
        assert split_bound(problem, pool=True) == pytest.approx(split_bound(problem, pool=False), rel=1e-9)


def test_pooling_is_tighter_than_rows_by_period_where_it_replaces_them() -> None:
    # Why POOL_ABOVE is BY_PERIOD_ABOVE: on 32 A100s / 64 tenants (1920 tenant-slots) a few
    # decisions in, rows per slot over pools bound the plan far closer than rows per period
    # tenant by tenant (measured 1.3-1.7 % against 3.2-3.3 % gap, docs/model.md).
    problem = _receding_problems(sized(32, 64), 3)[-1]
    assert len(problem.tenants) * problem.horizon > bounds.POOL_ABOVE
    assert split_bound(problem) == pytest.approx(split_bound(problem, pool=True), rel=1e-9)  # the default
    assert split_bound(problem, pool=True) < split_bound(problem, pool=False, by_period=True)


def test_tenants_pool_by_kind_and_work_left() -> None:
    problem = planner.Planner(sized(8, 16)).problem()
    pooled, members, _ = pool_tenants(problem)
    assert len(pooled.tenants) == 4 and members.tolist() == [4.0] * 4
    np.testing.assert_allclose(pooled.arrivals.sum(axis=0), problem.arrivals.sum(axis=0))
    # A tenant whose retraining is under way has less work left than the others of its kind.
    under_way = dataclasses.replace(problem, work_left=np.where(np.arange(16) == 5, 1.0, problem.work_left))
    assert sorted(pool_tenants(under_way)[1].tolist()) == [1.0, 3.0, 4.0, 4.0, 4.0]
    # An instance's task follows its tenant into the pool.
    gpu, pooled_gpu = problem.gpus[0], pooled.gpus[0]
    serving = gpu.current > 0
    assert (pooled_gpu.current[serving] % 2 == gpu.current[serving] % 2).all()
    assert (pooled_gpu.current[~serving] == gpu.current[~serving]).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1e4), min_size=3, max_size=3), min_size=1, max_size=40))
def test_completions_hold_the_busiest_members_arrivals_under_each_line(rows: list[list[float]]) -> None:
    arrivals = np.array(rows)  # (members, slots)
    counted = Completions.of(arrivals)
    top = np.vstack([np.zeros(3), np.cumsum(-np.sort(-arrivals, axis=0), axis=0)])  # the busiest k's sum
    k = np.arange(len(arrivals) + 1)[:, None]
    for slope, intercept in zip(counted.slopes, counted.intercepts):
        lines = intercept[None, :] + slope[None, :] * k
        assert (lines >= top - 1e-6 * (1 + top)).all()  # above every k: a valid bound
        touches = np.isclose(lines, top, rtol=1e-9, atol=1e-6).sum(axis=0)
        assert (touches >= 2).all()  # through a piece of it: as tight as a line can be
    np.testing.assert_allclose(counted.slopes[0], arrivals.max(axis=0))  # the first line, from k = 0
    np.testing.assert_allclose(counted.intercepts[0], 0.0, atol=1e-9)


def test_the_planner_bounds_a_fleet_too_large_to_relax_tenant_by_tenant(monkeypatch) -> None:
    # Above POOL_ABOVE tenant-slots the split's bound pools alike tenants (at 512 GPUs / 1024
    # tenants it was not attempted before, its relaxation unsolved in 120 s).
    monkeypatch.setattr(bounds, "POOL_ABOVE", 0)
    monkeypatch.setattr(bounds, "UNPOOLED_UP_TO", 0)  # the pooled bound alone (its own test above)
    plan = planner.Planner(sized(8, 16)).plan()
    assert plan.stats.status.startswith("split into 8 GPUs")
    assert plan.stats.bound == pytest.approx(split_bound(plan.problem, pool=True), rel=1e-9)
    assert plan.stats.objective <= plan.stats.bound


def test_split_plans_report_the_bound_and_their_gap() -> None:
    scenario = sized(8, 16)
    config = dataclasses.replace(scenario.planner, retrain_over_window=False)
    plan = migrator.Planner(scenario, config=config).plan()
    stats = plan.stats
    assert stats.status.startswith("split into 8 GPUs")
    assert stats.bound == pytest.approx(split_bound(plan.problem), rel=1e-9)
    assert stats.objective <= stats.bound
    assert stats.mip_gap == pytest.approx((stats.bound - stats.objective) / stats.bound, rel=1e-9)
    problem = plan.problem
    every_request = float((problem.arrivals * problem.acc_after[:, None]).sum())
    # Measured 4.1 % (every request at its best accuracy would say 20 %; the period bounds
    # of the whole program 13.8 %).
    assert stats.mip_gap < 0.05
    assert stats.bound < 0.9 * every_request


def test_the_next_decisions_bound_started_from_the_last_basis_is_the_same_bound() -> None:
    # A receding loop: each decision's bound, started from the previous decision's basis,
    # equals the bound solved afresh; a basis of another shape is not used.
    scenario = sized(4, 8)
    loop = planner.Planner(scenario)
    state, basis = loop.initial_state(), None
    for _ in range(3):
        problem = loop.problem(state=state)
        fresh, _ = whole_bound(problem, time_limit_s=60)
        started, next_basis = whole_bound(problem, time_limit_s=60, start=basis)
        assert started == pytest.approx(fresh, rel=1e-7)
        assert next_basis is not None and len(next_basis.columns) > 0
        basis = next_basis
        state = loop.advance(loop.plan(state=state))
    other = planner.Planner(sized(2, 4)).problem()
    assert whole_bound(other, time_limit_s=60, start=basis)[0] == pytest.approx(split_bound(other), rel=1e-7)


def test_a_basis_survives_the_round_trip_through_numpy() -> None:
    import highspy

    from migrator.planning.split_bound import LpBasis

    statuses = list(highspy.HighsBasisStatus.__members__.values())
    basis = highspy.HighsBasis()
    basis.col_status = [statuses[i % len(statuses)] for i in range(11)]
    basis.row_status = [statuses[(3 * i) % len(statuses)] for i in range(7)]
    kept = LpBasis.of(basis)
    assert kept.columns.dtype == np.int8 and len(kept.columns) == 11 and len(kept.rows) == 7
    back = kept.highs()
    assert list(back.col_status) == list(basis.col_status)
    assert list(back.row_status) == list(basis.row_status)
    assert back.valid


def _retraining_slot_by_slot(lp, problem, i, served, progress_rows, who):
    """Rows (9)-(13) of tenant i built one slot after another, as the program reads them:
    the reference the whole-array build (``split_bound._add_retraining``) is held to."""
    before, after = float(problem.acc_before[i]), float(problem.acc_after[i])
    if not (problem.window_slots[i] > 0 and after > before):
        return None
    first_window, progress, completed, window_first, window, columns = True, None, None, 0, [], []
    setup = 0.0 if who.retraining_now else problem.setup_s
    for t in range(problem.horizon):
        starts = (int(problem.window_offset[i]) + t) % int(problem.window_slots[i]) == 0
        if starts and window:
            bounds._add_completions(lp, window, bounds._work(problem, i, first_window), who, problem.slot_s)
            window = []
        first_window = first_window and not (starts and t > 0)
        if starts:
            progress = completed = None
            window_first = t
        retrained = lp.col(cost=after - before, upper=float(problem.arrivals[i, t]))
        columns.append(retrained)
        lp.row(-np.inf, 0.0, {retrained: 1.0, int(served[t]): -1.0})
        if first_window and not starts and bool(problem.done0[i]):
            continue
        if progress is None:
            lp.row(-np.inf, 0.0, {retrained: 1.0})
        else:
            work = bounds._work(problem, i, first_window)
            seconds = (t - window_first) * problem.slot_s - (setup if first_window else 0.0)
            completion = lp.col(upper=1.0 if bounds._reachable(work, who.reach_rate * seconds) else 0.0)
            window.append((completion, progress))
            for slope, intercept in zip(who.counted.slopes[:, t], who.counted.intercepts[:, t]):
                lp.row(-np.inf, float(intercept), {retrained: 1.0, completion: -who.members * float(slope)})
            if completed is not None:
                lp.row(0.0, np.inf, {completion: 1.0, completed: -1.0})
            completed = completion
        now = lp.col(upper=bounds._most_progress(who.most_rate, problem, t + 1 - window_first))
        progress_rows[i, t] = lp.row(0.0, 0.0, {now: 1.0} if progress is None else {now: 1.0, progress: -1.0})
        progress = now
    if window:
        bounds._add_completions(lp, window, bounds._work(problem, i, first_window), who, problem.slot_s)
    bounds._add_terminal(lp, problem, i, progress, who.members * bounds._work(problem, i, first_window))
    return np.array(columns)


def _windows_varied(problem, seed: int):
    """``problem`` with random window offsets (slot 0 starting a window among them), retraining
    finished or not, and windows as short as two slots."""
    rng = np.random.default_rng(seed)
    window = np.where(problem.window_slots > 0, rng.integers(2, 6, size=len(problem.tenants)), 0)
    return dataclasses.replace(problem, window_slots=window, window_offset=rng.integers(0, 6, size=len(window)) % np.maximum(window, 1),
                               done0=(rng.random(len(window)) < 0.4) & (window > 0))


@pytest.mark.parametrize("seed", range(30))
def test_retraining_rows_built_in_whole_arrays_match_the_slot_by_slot_build(seed: int, monkeypatch) -> None:
    problem = _windows_varied(small_random_case(seed).problem(), seed)
    shapes, values = [], []
    solve = bounds._Lp.solve

    def noted(lp, *args, **kwargs):
        # Order aside, the same columns (cost and bounds) and rows (bounds and entries).
        lp._flush_cols()
        lp._flush_rows()
        cols = np.column_stack([np.concatenate([c[k] for c in lp._cols]) for k in range(3)])
        rows = np.column_stack([np.concatenate([r[k] for r in lp._rows]) for k in range(2)])
        entries = np.sort(np.abs(lp._matrix()[2]))
        shapes.append((np.unique(cols, axis=0, return_counts=True), np.unique(rows, axis=0, return_counts=True),
                       entries))
        return solve(lp, *args, **kwargs)

    monkeypatch.setattr(bounds._Lp, "solve", noted)
    for pool in (False, True):
        values.append(split_bound(problem, 60, by_period=False, pool=pool))
        with monkeypatch.context() as m:
            m.setattr(bounds, "_add_retraining", _retraining_slot_by_slot)
            values.append(split_bound(problem, 60, by_period=False, pool=pool))
    for ours, reference in (shapes[0], shapes[1]), (shapes[2], shapes[3]):
        for a, b in zip(ours[:2], reference[:2]):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_allclose(ours[2], reference[2], rtol=1e-12)
    assert values[0] == pytest.approx(values[1], rel=1e-9, abs=1e-6)
    assert values[2] == pytest.approx(values[3], rel=1e-9, abs=1e-6)
