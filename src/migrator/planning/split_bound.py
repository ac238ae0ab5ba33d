"""An upper bound on the whole program's optimum, for plans the per-GPU split makes.

The split (:mod:`migrator.planning.decompose`) solves every GPU on its own with a share of the demand,
so no part's bound bounds the whole and, without this, a split plan has no gap. This is a relaxation of
the whole program of docs/model.md ("Bounding a split plan"), small whatever the number of
GPUs: GPUs with the same placements form a class, and per class and period the program
only counts instances per (task, profile), held within the convex hull of the class's
maximal layouts (as many layouts as GPUs). Capacities are per profile (the best placement's),
new instances pay their set-up share and penalty on the increase of a count, requests and
retraining follow the program's own rows (8)-(13), with completions continuous. Every plan
of the whole program maps to a point of it of at least the same value, so its LP optimum is
a valid bound; it is a linear program of a few thousand columns (tens of ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import highspy
import numpy as np

from .. import _core
from .deadline import Deadline
from .highs import new_highs, run_within
from .planner_problem import GpuProblem, Problem, alike_gpus, core_gpu

__all__ = ["LpBasis", "split_bound", "whole_bound"]


@dataclass(frozen=True)
class LpBasis:
    """A simplex basis of the bound's linear program (HiGHS basis statuses, int8 arrays), to
    start the next decision's from: from one decision to the next only bounds move, and
    starting there took a third of the iterations on 64 A100s / 128 tenants."""

    columns: np.ndarray
    rows: np.ndarray

    @classmethod
    def of(cls, basis: highspy.HighsBasis) -> LpBasis:
        return cls(np.fromiter((v.value for v in basis.col_status), dtype=np.int8),
                   np.fromiter((v.value for v in basis.row_status), dtype=np.int8))

    def highs(self) -> highspy.HighsBasis:
        status = {int(v): v for v in highspy.HighsBasisStatus.__members__.values()}
        basis = highspy.HighsBasis()
        basis.col_status = [status[v] for v in self.columns.tolist()]
        basis.row_status = [status[v] for v in self.rows.tolist()]
        basis.valid = True
        return basis


@dataclass
class _Lp:
    """Columns and rows of a maximisation, gathered before one passModel."""

    cost: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    rows: list[tuple[float, float, dict[int, float]]] = field(default_factory=list)

    def col(self, cost: float = 0.0, lower: float = 0.0, upper: float = np.inf) -> int:
        self.cost.append(cost)
        self.lower.append(lower)
        self.upper.append(upper)
        return len(self.cost) - 1

    def row(self, lower: float, upper: float, terms: dict[int, float]) -> None:
        self.rows.append((lower, upper, terms))

    def solve(self, time_limit_s: float, start: LpBasis | None = None,
              deadline: Deadline | None = None) -> tuple[float, LpBasis | None]:
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = len(self.cost), len(self.rows)
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.col_cost_ = np.asarray(self.cost)
        lp.col_lower_ = np.asarray(self.lower)
        lp.col_upper_ = np.asarray(self.upper)
        lp.row_lower_ = np.asarray([r[0] for r in self.rows], dtype=np.float64)
        lp.row_upper_ = np.asarray([r[1] for r in self.rows], dtype=np.float64)
        lengths = [len(r[2]) for r in self.rows]
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
        lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        lp.a_matrix_.index_ = np.fromiter((c for r in self.rows for c in r[2]), dtype=np.int32)
        lp.a_matrix_.value_ = np.fromiter((v for r in self.rows for v in r[2].values()), dtype=np.float64)
        h = new_highs()
        # Primal simplex: 39 ms against 58 ms for the default dual on 8 A100s / 16 tenants
        # (interior point 129 ms); the program starts feasible at zero.
        h.setOptionValue("simplex_strategy", 4)
        h.passModel(lp)
        if start is not None and (len(start.columns), len(start.rows)) == (lp.num_col_, lp.num_row_):
            # A basis of another decision's program of the same shape; HiGHS refuses (and
            # starts afresh) where it does not fit.
            h.setBasis(start.highs())
        if deadline is not None:
            # Handing the rows to HiGHS takes a tenth of a second at 128 GPUs / 256 tenants:
            # what the deadline leaves is what it leaves now.
            time_limit_s = min(time_limit_s, deadline.left())
        run_within(h, time_limit_s)
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            # No proven bound in time; the basis reached is where the next decision's solve
            # goes on from, so that from one decision to the next the simplex gets there.
            basis = h.getBasis()
            return float("inf"), LpBasis.of(basis) if basis.valid else None
        # A relative slack guards the bound against the solver's feasibility tolerances.
        return float(h.getInfo().objective_function_value) * (1 + 1e-7) + 1e-6, LpBasis.of(h.getBasis())


def _classes(problem: Problem) -> list[list[int]]:
    """GPUs with the same model and planning placements."""
    groups: dict[tuple, list[int]] = {}
    for g, gpu in enumerate(problem.gpus):
        groups.setdefault((gpu.model, tuple(str(p) for p in gpu.placements)), []).append(g)
    return list(groups.values())


def _per_profile(gpu: GpuProblem, figure: np.ndarray) -> np.ndarray:
    """(N, profiles): the best placement's figure per profile (an upper bound for all)."""
    out = np.zeros((figure.shape[0], len(gpu.max_count)))
    for q in range(len(gpu.placements)):
        out[:, gpu.profile[q]] = np.maximum(out[:, gpu.profile[q]], figure[:, q])
    return out


class _Supply:
    """Per tenant and slot, the terms of its serving capacity and retraining progress."""

    def __init__(self, n: int, horizon: int) -> None:
        self.infer = [[{} for _ in range(horizon)] for _ in range(n)]
        self.retrain = [[{} for _ in range(horizon)] for _ in range(n)]
        self.retraining: dict[tuple[int, int], list[int]] = {}  # (tenant, period): count columns
        self.serving: dict[tuple[int, int], list[int]] = {}  # (tenant, period): inference counts

    def add(self, task: int, t: int, column: int, value: float) -> None:
        i, kind = divmod(task - 1, 2)
        terms = (self.retrain if kind else self.infer)[i][t]
        terms[column] = terms.get(column, 0.0) + value


def _add_class(lp: _Lp, problem: Problem, members: list[int], supply: _Supply) -> None:
    gpu = problem.gpus[members[0]]
    rate = {1: _per_profile(gpu, gpu.capacity_rps), 0: _per_profile(gpu, gpu.retrain_speed)}
    profiles = len(gpu.max_count)
    layouts = [np.bincount(gpu.profile[list(lay)], minlength=profiles) for lay in _core.maximal_layouts(core_gpu(gpu))]
    kept = np.zeros((problem.n_tasks, profiles))
    for g in members:
        for q, k in enumerate(problem.gpus[g].current):
            if k > 0:
                kept[k, problem.gpus[g].profile[q]] += 1
    pairs = [(k, p) for k in range(1, problem.n_tasks) for p in range(profiles)
             if rate[k % 2][(k - 1) // 2, p] > 0]
    starts = problem.period_starts()
    previous: dict[tuple[int, int], int] = {}
    for j, length in enumerate(problem.periods):
        lost = [problem.downtime(d) for d in range(length)]
        # Instances per (task, profile) within the hull of as many layouts as GPUs.
        mix = [lp.col() for _ in layouts]
        lp.row(-np.inf, len(members), {c: 1.0 for c in mix})
        count = {pair: lp.col() for pair in pairs}
        for p in range(profiles):
            terms = {count[k, pp]: 1.0 for (k, pp) in pairs if pp == p}
            terms.update({mix[m]: -float(layout[p]) for m, layout in enumerate(layouts) if layout[p]})
            lp.row(-np.inf, 0.0, terms)
        for k, p in pairs:
            # New instances: at least the increase of the count (from those now serving).
            new = lp.col(cost=-problem.reconfig_penalty)
            terms = {new: 1.0, count[k, p]: -1.0}
            if j == 0:
                lp.row(-kept[k, p], np.inf, terms)
            else:
                terms[previous[k, p]] = 1.0
                lp.row(0.0, np.inf, terms)
            (supply.retraining if k % 2 == 0 else supply.serving).setdefault(((k - 1) // 2, j), []).append(count[k, p])
            figure = rate[k % 2][(k - 1) // 2, p] * problem.slot_s
            for t in range(starts[j], starts[j] + length):
                supply.add(k, t, count[k, p], figure)
                if lost[t - starts[j]] > 0:
                    supply.add(k, t, new, -figure * lost[t - starts[j]])
        previous = count


def _window_start(problem: Problem, i: int, t: int) -> bool:
    window = int(problem.window_slots[i])
    return window > 0 and (int(problem.window_offset[i]) + t) % window == 0


def _max_rates(problem: Problem) -> np.ndarray:
    """The most retraining each tenant could get per second (full-GPU seconds), shape (N,):
    every GPU flat out, and at most ``retrain_instances`` of the fastest instances where that
    is set. Alike GPUs (one template) are counted at once."""
    rate, fastest = np.zeros(len(problem.tenants)), np.zeros(len(problem.tenants))
    for members in alike_gpus(problem):
        gpu = problem.gpus[members[0]]
        if not gpu.placements:
            continue
        per_slice = (gpu.retrain_speed / np.maximum(gpu.compute, 1)[None, :]).max(axis=1)
        rate += len(members) * gpu.compute_slices * per_slice
        fastest = np.maximum(fastest, gpu.retrain_speed.max(axis=1))
    if problem.retrain_instances > 0:
        rate = np.minimum(rate, problem.retrain_instances * fastest)
    return rate


def _retraining_now(problem: Problem) -> np.ndarray:
    """Which tenants an instance retrains now (their next retraining needs no set-up)."""
    now = np.zeros(len(problem.tenants), dtype=bool)
    for gpu in problem.gpus:
        tasks = gpu.current[(gpu.current > 0) & (gpu.current % 2 == 0)]
        now[(tasks - 2) // 2] = True
    return now


def _add_tenant(lp: _Lp, problem: Problem, i: int, supply: _Supply, max_rate: float, retraining_now: bool) -> None:
    before, after = float(problem.acc_before[i]), float(problem.acc_after[i])
    retrains = problem.window_slots[i] > 0 and after > before
    first_window = True  # t is in the window holding slot 0
    progress = completed = None
    # A completion is 0 before the window's work could be done at the most rate (one set-up
    # first, unless an instance retrains the tenant now): valid for every plan.
    rate = max_rate if retrains else 0.0
    setup = 0.0 if retraining_now else problem.setup_s
    window_first = 0
    period = np.repeat(np.arange(len(problem.periods)), problem.periods)
    for t in range(problem.horizon):
        arrived = float(problem.arrivals[i, t])
        served = lp.col(cost=before, upper=arrived)
        lp.row(-np.inf, 0.0, {served: 1.0, **{c: -v for c, v in supply.infer[i][t].items()}})
        # Serving anything takes a whole instance: s <= a x (count of the tenant's instances),
        # so that a fraction of an instance no longer serves a small demand for a fraction
        # of its set-up and penalty.
        counts = supply.serving.get((i, int(period[t])), [])
        if arrived > 0 and counts:
            lp.row(-np.inf, 0.0, {served: 1.0, **{c: -arrived for c in counts}})
        if not retrains:
            continue
        starts = _window_start(problem, i, t)
        if starts and t > 0:
            first_window = False
        if starts:
            progress = completed = None
            window_first = t
        done = first_window and not starts and bool(problem.done0[i])
        retrained = lp.col(cost=after - before, upper=arrived)
        lp.row(-np.inf, 0.0, {retrained: 1.0, served: -1.0})
        if not done:
            if progress is None:  # slot 0 or a window's first slot: the accuracy before
                lp.row(-np.inf, 0.0, {retrained: 1.0})
            else:
                work = float(problem.work_left[i] if first_window else problem.work_full[i])
                seconds = (t - window_first) * problem.slot_s - (setup if first_window else 0.0)
                completion = lp.col(upper=1.0 if work <= 0 or rate * max(0.0, seconds) >= work * (1 - 1e-9) else 0.0)
                lp.row(-np.inf, 0.0, {completion: work, progress: -1.0})
                lp.row(-np.inf, 0.0, {retrained: 1.0, completion: -arrived})
                if completed is not None:
                    lp.row(0.0, np.inf, {completion: 1.0, completed: -1.0})
                completed = completion
            now = lp.col()
            terms = {now: 1.0, **{c: -v for c, v in supply.retrain[i][t].items()}}
            if progress is not None:
                terms[progress] = -1.0
            lp.row(0.0, 0.0, terms)
            progress = now
    gain = 0.0 if problem.terminal_gain is None else float(problem.terminal_gain[i])
    if retrains and gain > 0 and progress is not None:
        work = float(problem.work_left[i] if first_window else problem.work_full[i])
        share = lp.col(cost=gain, upper=1.0)
        lp.row(-np.inf, 0.0, {share: work, progress: -1.0})


def split_bound(problem: Problem, time_limit_s: float = 1.0) -> float:
    """An upper bound on the optimum of the whole program of ``problem`` (objective of
    docs/model.md), or inf where the relaxation is not solved within ``time_limit_s``."""
    return whole_bound(problem, time_limit_s)[0]


def whole_bound(
    problem: Problem, time_limit_s: float = 1.0, start: LpBasis | None = None, deadline: Deadline | None = None,
) -> tuple[float, LpBasis | None]:
    """:func:`split_bound`, started from ``start`` (the basis an earlier decision's bound
    returned), and the basis to start the next one from (None when not solved). With a
    ``deadline``, the relaxation is given up (inf) where building it outlasts the deadline
    (its build grows with tenants x slots and takes seconds from a few hundred tenants) and
    solved within what the deadline leaves of ``time_limit_s``."""
    lp = _Lp()
    supply = _Supply(len(problem.tenants), problem.horizon)
    for members in _classes(problem):
        if _late(deadline):
            return float("inf"), None
        _add_class(lp, problem, members, supply)
    rates, now = _max_rates(problem), _retraining_now(problem)
    for i in range(len(problem.tenants)):
        if _late(deadline):
            return float("inf"), None
        _add_tenant(lp, problem, i, supply, float(rates[i]), bool(now[i]))
    if problem.retrain_instances > 0:  # (16)
        for columns in supply.retraining.values():
            lp.row(-np.inf, float(problem.retrain_instances), {c: 1.0 for c in columns})
    return lp.solve(time_limit_s, start, deadline)


def _late(deadline: Deadline | None) -> bool:
    return deadline is not None and deadline.left() <= 0
