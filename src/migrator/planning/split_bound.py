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
a valid bound; it is a linear program of a few thousand columns (tens of ms). Where the
fleet cannot serve every request, row (19) bounds each period's Goodput by what whole
instances could earn (:mod:`migrator.planning.fleet_bound`). Above
``POOL_ABOVE`` tenant-slots alike tenants are pooled into one (:func:`pool_tenants`), a
further relaxation that keeps it that small at 512 GPUs / 1024 tenants.
"""

from __future__ import annotations

import atexit
import dataclasses
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import highspy
import numpy as np

from .. import _core
from .deadline import Deadline
from .fleet_bound import fleet_period_bounds
from .highs import new_highs, run_within
from .planner_problem import (
    GpuProblem, Problem, alike_gpus, core_gpu, per_profile, retraining_now, retraining_rates,
)

__all__ = [
    "BACKGROUND_S", "BY_PERIOD_ABOVE", "POOL_ABOVE", "UNPOOLED_UP_TO", "BoundKeeper", "Completions", "LpBasis",
    "pool_tenants", "relaxed_tenant_slots", "split_bound", "whole_bound",
]

#: Tenant-slots above which the tenants' rows are relaxed to periods (docs/model.md, "At scale").
BY_PERIOD_ABOVE = 1000
#: How long a bound's solve that its decision could not wait for goes on in the background.
BACKGROUND_S = 20.0
#: Tenant-slots above which alike tenants are pooled (docs/model.md, "Pooling alike tenants"):
#: where the tenants' rows would otherwise be relaxed to periods, pooling is as tight or
#: tighter and fifty times faster to solve.
POOL_ABOVE = BY_PERIOD_ABOVE
#: Tenant-slots up to which a pooled bound has the relaxation tenant by tenant beside it,
#: solved in the background and kept warm from one decision to the next (BoundKeeper): it
#: keeps up at 32 and 64 GPUs, where the pooled bound drifts away from the plans as the
#: tenants' demands move apart, and not at 128 (docs/model.md, "Pooling alike tenants").
UNPOOLED_UP_TO = 4000


@dataclass(frozen=True)
class LpBasis:
    """A simplex basis of the bound's linear program (HiGHS basis statuses, int8 arrays), to
    start the next decision's from: from one decision to the next only bounds move, and
    starting there took a third of the iterations on 64 A100s / 128 tenants. With it, the
    row multipliers of the last solve that finished (``row_dual``): any multipliers bound
    any program (:func:`_dual_bound`), so the next decision has a bound before its own
    solve ends, or where it does not."""

    columns: np.ndarray
    rows: np.ndarray
    row_dual: np.ndarray | None = None

    @classmethod
    def of(cls, basis: highspy.HighsBasis, row_dual: np.ndarray | None = None) -> LpBasis:
        return cls(np.fromiter((v.value for v in basis.col_status), dtype=np.int8),
                   np.fromiter((v.value for v in basis.row_status), dtype=np.int8), row_dual)

    def highs(self) -> highspy.HighsBasis:
        status = {int(v): v for v in highspy.HighsBasisStatus.__members__.values()}
        basis = highspy.HighsBasis()
        basis.col_status = [status[v] for v in self.columns.tolist()]
        basis.row_status = [status[v] for v in self.rows.tolist()]
        basis.valid = True
        return basis


class _Lp:
    """Columns and rows of a maximisation, gathered as arrays before one passModel. Entries
    are (row, column, value) triplets, added in bulk where a block of rows shares a pattern;
    triplets naming the same (row, column) add up."""

    def __init__(self) -> None:
        self.n_cols = self.n_rows = 0
        self._cols: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # cost, lower, upper
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []  # lower, upper
        self._entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        # One column or row at a time, kept in lists until the next block (or the solve).
        self._col_list: tuple[list[float], list[float], list[float]] = ([], [], [])
        self._row_list: tuple[list[float], list[float]] = ([], [])
        self._entry_list: tuple[list[int], list[int], list[float]] = ([], [], [])

    def col(self, cost: float = 0.0, lower: float = 0.0, upper: float = np.inf) -> int:
        for values, value in zip(self._col_list, (cost, lower, upper)):
            values.append(value)
        self.n_cols += 1
        return self.n_cols - 1

    def cols(self, n: int, cost: Any = 0.0, lower: Any = 0.0, upper: Any = np.inf) -> np.ndarray:
        """``n`` columns at once (each figure a scalar or an array of ``n``); their indices."""
        self._flush_cols()
        cost_, lower_, upper_ = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for v in (cost, lower, upper))
        self._cols.append((cost_, lower_, upper_))
        self.n_cols += n
        return np.arange(self.n_cols - n, self.n_cols)

    def row(self, lower: float, upper: float, terms: dict[int, float]) -> int:
        self._row_list[0].append(lower)
        self._row_list[1].append(upper)
        rows, cols, vals = self._entry_list
        for c, v in terms.items():
            rows.append(self.n_rows)
            cols.append(c)
            vals.append(v)
        self.n_rows += 1
        return self.n_rows - 1

    def rows(self, n: int, lower: Any = -np.inf, upper: Any = np.inf) -> np.ndarray:
        """``n`` rows at once, without terms (:meth:`add` gives them); their indices."""
        self._flush_rows()
        lower_, upper_ = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for v in (lower, upper))
        self._rows.append((lower_, upper_))
        self.n_rows += n
        return np.arange(self.n_rows - n, self.n_rows)

    def add(self, rows: Any, cols: Any, vals: Any) -> None:
        """Terms ``vals`` of columns ``cols`` in rows ``rows`` (arrays, broadcast together)."""
        rows, cols, vals = np.broadcast_arrays(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                                               np.asarray(vals, dtype=np.float64))
        self._entries.append((rows.ravel(), cols.ravel(), vals.ravel()))

    def _flush_cols(self) -> None:
        if self._col_list[0]:
            cost, lower, upper = (np.asarray(v, dtype=np.float64) for v in self._col_list)
            self._cols.append((cost, lower, upper))
            self._col_list = ([], [], [])

    def _flush_rows(self) -> None:
        if self._row_list[0]:
            lower, upper = (np.asarray(v, dtype=np.float64) for v in self._row_list)
            self._rows.append((lower, upper))
            self._row_list = ([], [])

    def _matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row-wise (start, index, value), the terms of each (row, column) added up."""
        rows, cols, vals = self._entry_list
        parts = [*self._entries, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                                  np.asarray(vals, dtype=np.float64))]
        row, col, val = (np.concatenate([part[k] for part in parts]) for k in range(3))
        keys, where = np.unique(row * self.n_cols + col, return_inverse=True)
        summed = np.bincount(where.ravel(), weights=val, minlength=len(keys))
        row, col = np.divmod(keys, self.n_cols)
        start = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=self.n_rows))])
        return start.astype(np.int32), col.astype(np.int32), summed

    def solve(self, time_limit_s: float, start: LpBasis | None = None, deadline: Deadline | None = None,
              cancel: threading.Event | None = None,
              on_early: Callable[[float], None] | None = None) -> tuple[float, LpBasis | None]:
        self._flush_cols()
        self._flush_rows()
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = self.n_cols, self.n_rows
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.col_cost_, lp.col_lower_, lp.col_upper_ = (np.concatenate([c[k] for c in self._cols]) for k in range(3))
        lp.row_lower_, lp.row_upper_ = (np.concatenate([r[k] for r in self._rows]) for k in range(2))
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = self._matrix()
        h = new_highs()
        # Dual simplex: from one decision's basis to the next only bounds move, which leaves
        # the basis dual feasible. Tenant by tenant, cold / warm: 0.27 / 0.15-0.26 s against
        # primal's 0.46 / 0.20-0.32 s at 32 A100s / 64 tenants, 3.4 / 0.45 s against 3.9 /
        # 0.63-0.71 s at 128 / 256; 0.03-0.06 s either way at 8 / 16 (docs/model.md).
        h.setOptionValue("simplex_strategy", 1)
        h.passModel(lp)
        if start is not None and (len(start.columns), len(start.rows)) == (lp.num_col_, lp.num_row_):
            # A basis of another decision's program of the same shape; HiGHS refuses (and
            # starts afresh) where it does not fit.
            h.setBasis(start.highs())
        # The last decision's multipliers bound this program at once (valid whatever they
        # are; tight where only the bounds moved), whether or not its own solve finishes.
        earlier_dual = (start.row_dual if start is not None and start.row_dual is not None
                        and len(start.row_dual) == lp.num_row_ else None)
        earlier = _dual_bound(lp, earlier_dual) if earlier_dual is not None else float("inf")
        if on_early is not None:
            on_early(earlier)
        if deadline is not None:
            # Handing the rows to HiGHS takes a tenth of a second at 128 GPUs / 256 tenants:
            # what the deadline leaves is what it leaves now.
            time_limit_s = min(time_limit_s, deadline.left())
        solved = threading.Event()
        if cancel is not None:
            threading.Thread(target=_cancel_on, args=(cancel, solved, h), name="migrator-bound-cancel",
                             daemon=True).start()
        try:
            run_within(h, time_limit_s)
        finally:
            solved.set()
        solution = h.getSolution()
        finished = h.getModelStatus() == highspy.HighsModelStatus.kOptimal and solution.dual_valid
        row_dual = np.asarray(solution.row_dual) if finished else earlier_dual
        bound = min(earlier, _dual_bound(lp, row_dual) if finished and row_dual is not None else float("inf"))
        basis = h.getBasis()
        # Where the solve stopped early, the basis reached is where the next decision's solve
        # goes on from, so that from one decision to the next the simplex gets there; the
        # multipliers are the last finished solve's.
        if basis.valid:
            return bound, LpBasis.of(basis, row_dual)
        return bound, (LpBasis(np.zeros(0, np.int8), np.zeros(0, np.int8), row_dual) if row_dual is not None
                       else None)


def _dual_bound(lp: highspy.HighsLp, row_dual: np.ndarray) -> float:
    """The Lagrangian bound of the maximisation ``lp`` at multipliers ``row_dual``: for any
    ``y``, ``c.x = (c - A'y).x + y.Ax`` is at most the best of each term over the column and
    row bounds, so the bound holds whatever the solver's tolerances or whether it finished
    (every column has finite bounds, which the builders see to). HiGHS's sign convention
    does not matter: both signs give valid bounds and the lesser is kept; a multiplier
    that would meet an infinite row bound is set to 0, which keeps it valid."""
    start, index, value = (np.asarray(a) for a in (lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_))
    row_of = np.repeat(np.arange(lp.num_row_), np.diff(start))
    cost, lower, upper = (np.asarray(a, dtype=np.float64) for a in (lp.col_cost_, lp.col_lower_, lp.col_upper_))
    row_lower, row_upper = np.asarray(lp.row_lower_, dtype=np.float64), np.asarray(lp.row_upper_, dtype=np.float64)
    best = float("inf")
    for y in (row_dual, -row_dual):
        y = np.where(((y > 0) & np.isinf(row_upper)) | ((y < 0) & np.isinf(row_lower)), 0.0, y)
        reduced = cost - np.bincount(index, weights=value * y[row_of], minlength=lp.num_col_)
        rows = np.where(y > 0, y * np.where(y > 0, row_upper, 0.0), y * np.where(y < 0, row_lower, 0.0))
        cols = np.where(reduced > 0, reduced * np.where(reduced > 0, upper, 0.0),
                        reduced * np.where(reduced < 0, lower, 0.0))
        value_at = float(rows.sum() + cols.sum())
        if np.isfinite(value_at):
            # Rounding in the sums above, on the scale of the terms.
            best = min(best, value_at + 1e-9 * float(np.abs(rows).sum() + np.abs(cols).sum()) + 1e-9)
    return best


def _cancel_on(event: threading.Event, solved: threading.Event, h: highspy.Highs) -> None:
    """Cancel ``h``'s solve when ``event`` is set, until the solve ends (``solved``)."""
    while not solved.is_set():
        if event.wait(0.05):
            h.cancelSolve()
            return


def _classes(problem: Problem) -> list[list[int]]:
    """GPUs with the same model and planning placements."""
    groups: dict[tuple, list[int]] = {}
    for g, gpu in enumerate(problem.gpus):
        groups.setdefault((gpu.model, tuple(str(p) for p in gpu.placements)), []).append(g)
    return list(groups.values())


class _Supply:
    """What the classes' count columns give each tenant: terms (tenant, slot, column, value)
    of its serving capacity (kind 1) and retraining progress (kind 0), and which count
    columns serve or retrain it in each period (tenant, period, column)."""

    def __init__(self) -> None:
        self._terms: dict[int, list[tuple[np.ndarray, ...]]] = {0: [], 1: []}
        self._counts: dict[int, list[tuple[np.ndarray, ...]]] = {0: [], 1: []}

    def add(self, kind: int, tenant: Any, slot: Any, column: Any, value: Any) -> None:
        self._terms[kind].append(tuple(a.ravel() for a in np.broadcast_arrays(tenant, slot, column, value)))

    def count(self, kind: int, tenant: np.ndarray, period: int, column: np.ndarray) -> None:
        self._counts[kind].append((tenant, np.full(len(tenant), period), column))

    def terms(self, kind: int) -> tuple[np.ndarray, ...]:
        return _joined(self._terms[kind], 4)

    def counts(self, kind: int) -> tuple[np.ndarray, ...]:
        return _joined(self._counts[kind], 3)


def _joined(parts: list[tuple[np.ndarray, ...]], width: int) -> tuple[np.ndarray, ...]:
    if not parts:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(width))
    return tuple(np.concatenate([part[k] for part in parts]) for k in range(width))


def _add_class(lp: _Lp, problem: Problem, members: list[int], supply: _Supply, by_period: bool = False) -> None:
    """The class's counts per period; their supply terms per slot, or per period where
    ``by_period`` (each term summed over the period's slots)."""
    gpu = problem.gpus[members[0]]
    profiles = len(gpu.max_count)
    layouts = np.array([np.bincount(gpu.profile[list(lay)], minlength=profiles)
                        for lay in _core.maximal_layouts(core_gpu(gpu))]).reshape(-1, profiles)
    kept = np.zeros((problem.n_tasks, profiles))
    for g in members:
        current = problem.gpus[g].current
        serving = current > 0
        np.add.at(kept, (current[serving], problem.gpus[g].profile[serving]), 1)
    # Each (task, profile) an instance of the profile can do something for: its per-slot figure.
    rates = np.zeros((problem.n_tasks, profiles))
    rates[1::2] = per_profile(gpu, gpu.capacity_rps)
    rates[2::2] = per_profile(gpu, gpu.retrain_speed)
    task, profile = np.nonzero(rates > 0)
    tenant, kind, figure = (task - 1) // 2, task % 2, rates[task, profile] * problem.slot_s
    mixes, kinds = np.nonzero(layouts), [(k, kind == k) for k in (0, 1)]
    starts = problem.period_starts()
    previous = None
    # Finite column bounds every point of the relaxation keeps (for _dual_bound): the most
    # instances of a profile the class's layouts hold.
    most = (layouts.max(axis=0) if len(layouts) else np.zeros(profiles))[profile] * float(len(members))
    for j, length in enumerate(problem.periods):
        # Instances per (task, profile) within the hull of as many layouts as GPUs.
        mix = lp.cols(len(layouts), upper=float(len(members)))
        lp.add(lp.rows(1, upper=float(len(members))), mix, 1.0)
        count = lp.cols(len(task), upper=most)
        profile_rows = lp.rows(profiles, upper=0.0)
        lp.add(profile_rows[profile], count, 1.0)
        lp.add(profile_rows[mixes[1]], mix[mixes[0]], -layouts[mixes].astype(np.float64))
        # New instances: at least the increase of the count (from those now serving).
        new = lp.cols(len(task), cost=-problem.reconfig_penalty, upper=most)
        increase = lp.rows(len(task), lower=-kept[task, profile] if j == 0 else 0.0)
        lp.add(increase, new, 1.0)
        lp.add(increase, count, -1.0)
        if previous is not None:
            lp.add(increase, previous, 1.0)
        slots = np.arange(starts[j], starts[j] + length)
        lost = np.array([problem.downtime(d) for d in range(length)])
        setting_up = lost > 0
        for k, chosen in kinds:
            supply.count(k, tenant[chosen], j, count[chosen])
            who, col, value = tenant[chosen][:, None], count[chosen][:, None], figure[chosen][:, None]
            if by_period:
                supply.add(k, who, j, col, value * length)
                supply.add(k, who, j, new[chosen][:, None], -value * lost.sum())
                continue
            supply.add(k, who, slots[None, :], col, value)
            supply.add(k, who, slots[setting_up][None, :], new[chosen][:, None], -value * lost[setting_up][None, :])
        previous = count


def _pools(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Which pool each tenant joins, (N,), and each pool's first member, (P,): tenants alike in
    everything the relaxation reads of them but their arrivals (accuracies, retraining window,
    work and work left, whether retraining is done, figures on every GPU). A tenant whose
    retraining is under way is mostly a pool of its own: pooled with others, its little work
    left would let the pool's completion come early for all."""
    keys = [problem.acc_before, problem.acc_after, problem.window_slots, problem.window_offset, problem.work_full,
            problem.work_left, problem.done0]
    for members in alike_gpus(problem):
        gpu = problem.gpus[members[0]]
        keys += [gpu.capacity_rps, gpu.retrain_speed]
    rows = np.column_stack([np.asarray(k, dtype=np.float64).reshape(len(problem.tenants), -1) for k in keys])
    _, first, pool = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return pool.ravel(), first


@dataclass(frozen=True)
class Completions:
    """What a pool's finished retraining can count in each slot: with ``k`` of its members
    finished, at most the ``k`` busiest members' arrivals, a concave function of ``k`` held
    under lines ``intercept + slope k`` (``slopes``, ``intercepts``: (S, T)), each through a
    piece of it (from ``k`` = 0, 1, 3, 7, ... members). A tenant of its own has one line,
    its arrivals times ``k``."""

    slopes: np.ndarray
    intercepts: np.ndarray

    @classmethod
    def of(cls, arrivals: np.ndarray) -> Completions:
        """Of members' arrivals, (m, T)."""
        busiest = -np.sort(-np.asarray(arrivals, dtype=np.float64), axis=0)
        finished = np.vstack([np.zeros(busiest.shape[1]), np.cumsum(busiest, axis=0)])
        starts = 2 ** np.arange(int(np.log2(len(busiest))) + 1) - 1  # 0, 1, 3, 7, ... < m
        slopes = busiest[starts]
        return cls(slopes, finished[starts] - slopes * starts[:, None])


def pool_tenants(problem: Problem) -> tuple[Problem, np.ndarray, tuple[Completions, ...]]:
    """``problem`` with each pool of alike tenants (:func:`_pools`) made one tenant: its
    arrivals the members' sum, its instances those of any member; the pool's members, (P,);
    and what its completions count (:class:`Completions`).

    Every point of the relaxation maps to a point of the pooled one worth as much, so the
    pooled optimum bounds it (docs/model.md, "Pooling alike tenants"): served requests and
    instances add up (``Σ min(a_i, cap_i) <= min(Σ a_i, Σ cap_i)``, and ``Σ s_i <= Σ a_i x_i
    <= Σ a_i Σ x_i`` for the whole-instance rows); the pool retrains ``m`` jobs of its members'
    work ``W``, and its completion ``C = Σ c_i / m`` (the share of members finished) has
    ``m W C <= Σ P_i`` and counts at most ``Σ a_i c_i``, the busiest ``m C`` members'
    arrivals; a member's completion may come as early as one job's can; a terminal credit is
    ``m`` times the largest member's."""
    pool, first = _pools(problem)
    members = np.bincount(pool, minlength=len(first)).astype(np.float64)
    arrivals = np.asarray(problem.arrivals, dtype=np.float64)
    summed = np.zeros((len(first), arrivals.shape[1]))
    np.add.at(summed, pool, arrivals)
    terminal = None
    if problem.terminal_gain is not None:
        terminal = np.zeros(len(first))
        np.maximum.at(terminal, pool, np.asarray(problem.terminal_gain, dtype=np.float64))
        terminal *= members
    pooled = dataclasses.replace(
        problem, tenants=tuple(f"pool{k}" for k in range(len(first))), arrivals=summed,
        acc_before=problem.acc_before[first], acc_after=problem.acc_after[first], work_left=problem.work_left[first],
        done0=problem.done0[first], window_slots=problem.window_slots[first],
        window_offset=problem.window_offset[first], work_full=problem.work_full[first],
        terminal_gain=terminal, gpus=_pooled_gpus(problem, pool, first),
        min_attainment=None,  # floors only take from the objective: left out, still a bound
    )
    return pooled, members, tuple(Completions.of(arrivals[pool == k]) for k in range(len(first)))


def _pooled_gpus(problem: Problem, pool: np.ndarray, first: np.ndarray) -> tuple[GpuProblem, ...]:
    """The GPUs with one row of figures per pool (alike GPUs keep sharing theirs) and their
    instances' tasks renumbered to the pools'."""
    task_of = np.zeros(problem.n_tasks, dtype=np.int64)
    task_of[1::2], task_of[2::2] = 1 + 2 * pool, 2 + 2 * pool
    figures: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    gpus = []
    for gpu in problem.gpus:
        if id(gpu.capacity_rps) not in figures:
            figures[id(gpu.capacity_rps)] = (gpu.capacity_rps[first], gpu.retrain_speed[first])
        capacity, speed = figures[id(gpu.capacity_rps)]
        current = np.where(gpu.current > 0, task_of[np.maximum(gpu.current, 0)], gpu.current)
        gpus.append(dataclasses.replace(gpu, capacity_rps=capacity, retrain_speed=speed, current=current))
    return tuple(gpus)


def _window_start(problem: Problem, i: int, t: Any) -> Any:
    """Whether slot ``t`` (or each of an array of slots) starts one of tenant i's windows."""
    window = int(problem.window_slots[i])
    return window > 0 and (int(problem.window_offset[i]) + t) % window == 0


def _served_within_capacity(lp: _Lp, problem: Problem, supply: _Supply, arrivals: np.ndarray) -> np.ndarray:
    """Each tenant's served requests per slot or per period (as ``arrivals``, (N, slots or
    periods), and ``supply`` are kept), within its arrivals and within the capacity its
    counts give (8). The served columns, shaped as ``arrivals``."""
    n, width = arrivals.shape
    served = lp.cols(n * width, cost=np.repeat(np.asarray(problem.acc_before, dtype=np.float64), width),
                     upper=arrivals.ravel()).reshape(n, width)
    capacity = lp.rows(n * width, upper=0.0).reshape(n, width)
    lp.add(capacity, served, 1.0)
    tenant, when, column, value = supply.terms(1)
    lp.add(capacity[tenant, when], column, -value)
    return served


def _add_requests(lp: _Lp, problem: Problem, supply: _Supply) -> np.ndarray:
    """Every tenant's served requests per slot within the capacity its counts give (8), and
    within its arrivals times the count of its instances: serving anything takes a whole
    instance, so that a fraction of an instance no longer serves a small demand for a
    fraction of its set-up and penalty. The served columns, (N, T)."""
    n, horizon = len(problem.tenants), problem.horizon
    arrivals = np.asarray(problem.arrivals, dtype=np.float64)
    served = _served_within_capacity(lp, problem, supply, arrivals)
    who, period, column = supply.counts(1)
    has = np.zeros((n, len(problem.periods)), dtype=bool)
    has[who, period] = True
    period_of = np.repeat(np.arange(len(problem.periods)), problem.periods)
    whole = np.full((n, horizon), -1, dtype=np.int64)
    needed = (arrivals > 0) & has[:, period_of]
    whole[needed] = lp.rows(int(needed.sum()), upper=0.0)
    lp.add(whole[needed], served[needed], 1.0)
    starts = problem.period_starts()
    for j, length in enumerate(problem.periods):
        slots = np.arange(starts[j], starts[j] + length)
        here = period == j
        i, col = who[here][:, None], column[here][:, None]
        rows, ok = whole[i, slots[None, :]], needed[i, slots[None, :]]
        terms = np.broadcast_to(col, rows.shape)
        lp.add(rows[ok], terms[ok], -arrivals[i, slots[None, :]][ok])
    return served


@dataclass(frozen=True)
class _Retrainer:
    """What one tenant's rows (9)-(13) take beyond the problem's arrays. A pool of ``members``
    alike tenants (:func:`pool_tenants`) retrains ``members`` jobs, its completion (the share
    of its members finished) counting what ``counted`` says; ``reach_rate`` is the most rate
    one job could have (which slots a completion may take), ``most_rate`` the pool's (its
    progress columns' bound). A tenant of its own is a pool of one."""

    members: float
    counted: Completions
    reach_rate: float
    most_rate: float
    retraining_now: bool


@dataclass(frozen=True)
class _Slots:
    """Which of tenant i's slots (T,) hold which of rows (9)-(12): ``starts`` a window,
    ``opening`` counts the accuracy before (slot 0 and a window's first slot), ``completes``
    has a completion column (every other slot not ``done``), ``done`` is in the window
    holding slot 0 after that window's retraining finished; per slot its ``window`` (how many
    windows started after slot 0), the window's first slot (``window_first``), the window's
    ``work`` and whether it can be done by then (``reachable``: a completion is 0 before the
    window's work could be done at the most rate, one set-up first unless an instance
    retrains the tenant now; valid for every plan)."""

    starts: np.ndarray
    window: np.ndarray
    window_first: np.ndarray
    done: np.ndarray
    opening: np.ndarray
    completes: np.ndarray
    work: np.ndarray
    reachable: np.ndarray

    @classmethod
    def of(cls, problem: Problem, i: int, who: _Retrainer) -> _Slots:
        t = np.arange(problem.horizon)
        starts = _window_start(problem, i, t)
        window = np.cumsum(starts & (t > 0))
        window_first = np.maximum.accumulate(np.where(starts, t, 0))
        first_window = window == 0
        done = first_window & ~starts & bool(problem.done0[i])
        opening = ~done & ((t == 0) | starts)
        work = _work(problem, i, first_window)
        setup = 0.0 if who.retraining_now else problem.setup_s
        seconds = (t - window_first) * problem.slot_s - np.where(first_window, setup, 0.0)
        return cls(starts, window, window_first, done, opening, ~done & ~opening, work,
                   _reachable(work, who.reach_rate * seconds))


def _add_retraining(lp: _Lp, problem: Problem, i: int, served: np.ndarray, progress_rows: np.ndarray,
                    who: _Retrainer) -> np.ndarray | None:
    """Tenant i's retrained share, progress and completions, rows (9)-(13); the row of its
    progress in each slot is noted in ``progress_rows`` (the classes' terms join it later).
    Built slot-wise in whole arrays (:class:`_Slots` says which slot has which rows). The
    retrained requests' columns, (T,); None where the tenant does not retrain."""
    if not _retrains(problem, i):
        return None
    before, after = float(problem.acc_before[i]), float(problem.acc_after[i])
    slots = _Slots.of(problem, i, who)
    arrivals = np.asarray(problem.arrivals[i], dtype=np.float64)
    retrained = lp.cols(problem.horizon, cost=after - before, upper=arrivals)
    lp.add(lp.rows(problem.horizon, upper=0.0)[:, None], np.column_stack([retrained, served]),
           [1.0, -1.0])
    # Slot 0 and a window's first slot: the accuracy before.
    lp.add(lp.rows(int(slots.opening.sum()), upper=0.0), retrained[slots.opening], 1.0)
    at = np.flatnonzero(slots.completes)
    completion = np.full(problem.horizon, -1, dtype=np.int64)
    completion[at] = lp.cols(len(at), upper=slots.reachable[at].astype(np.float64))
    # The retrained requests of a slot within what its completion lets count.
    slopes, intercepts = who.counted.slopes[:, at], who.counted.intercepts[:, at]
    lines = lp.rows(slopes.size, upper=intercepts.ravel()).reshape(slopes.shape)
    lp.add(lines, retrained[at][None, :], 1.0)
    lp.add(lines, completion[at][None, :], -who.members * slopes)
    # Monotone within a window.
    later = at[slots.completes[at - 1]]
    lp.add(lp.rows(len(later), lower=0.0)[:, None], np.column_stack([completion[later], completion[later - 1]]),
           [1.0, -1.0])
    # Progress, a running sum within each window: P[t] = P[t-1] + the classes' terms (added later).
    active = np.flatnonzero(~slots.done)
    progress = np.full(problem.horizon, -1, dtype=np.int64)
    progress[active] = lp.cols(len(active), upper=_most_progress(who.most_rate, problem, active + 1 - slots.window_first[active]))
    progress_rows[i, active] = lp.rows(len(active), lower=0.0, upper=0.0)
    lp.add(progress_rows[i, active], progress[active], 1.0)
    lp.add(progress_rows[i, at], progress[at - 1], -1.0)
    for window in np.unique(slots.window[at]):
        ours = at[slots.window[at] == window]
        _add_completions(lp, list(zip(completion[ours], progress[ours - 1])), float(slots.work[ours[0]]), who,
                         problem.slot_s)
    last = problem.horizon - 1
    _add_terminal(lp, problem, i, int(progress[last]) if progress[last] >= 0 else None,
                  who.members * float(slots.work[last]))
    return retrained


def _add_completions(lp: _Lp, window: list[tuple[int, int]], work: float, who: _Retrainer, slot_s: float) -> None:
    """Rows (11) of one window, ``window`` its consecutive slots' (completion ``c[t]``,
    progress ``P[t-1]``) columns, ``work`` the work of one of the window's jobs. With the
    completion looked ahead: a job that finishes at ``u > t`` has done all but what ``u - t``
    slots at one job's most rate ``r`` can add by ``t - 1``, so
    ``P[t-1] >= work c[t] + sum_{u>t} max(0, work - r (u - t)) (c[u] - c[u-1])`` (valid for
    every plan; a pool's rows are its members' summed, every term times ``members``).
    Without it the relaxation credits part of a job's accuracy gain to part of its work
    done wherever the job could not have finished sooner (docs/model.md, "Bounding a split
    plan")."""
    completion, progress = (np.array([pair[k] for pair in window], dtype=np.int64) for k in (0, 1))
    rows = lp.rows(len(window), upper=0.0)
    lp.add(rows[:, None], np.column_stack([progress, completion]), [-1.0, who.members * work])
    at, ahead = np.triu_indices(len(window), 1)
    short = who.members * (work - who.reach_rate * slot_s * (ahead - at))
    kept = short > 0
    at, ahead, short = at[kept], ahead[kept], short[kept]
    lp.add(rows[at][:, None], np.column_stack([completion[ahead], completion[ahead - 1]]),
           np.column_stack([short, -short]))


def _retrains(problem: Problem, i: int) -> bool:
    """Whether tenant i has retraining rows: it retrains, and that lifts its accuracy."""
    return bool(problem.window_slots[i] > 0 and problem.acc_after[i] > problem.acc_before[i])


def _best_accuracy(problem: Problem, i: int, who: _Retrainer) -> np.ndarray:
    """(T,): the most a request of tenant i may earn in each slot: the accuracy after its
    retraining where the window's retraining is done or its completion may be 1, the accuracy
    before elsewhere (the same slots rows (9)-(12) let count as retrained)."""
    before = np.full(problem.horizon, float(problem.acc_before[i]))
    if not _retrains(problem, i):
        return before
    slots = _Slots.of(problem, i, who)
    return np.where(slots.done | (slots.completes & slots.reachable), float(problem.acc_after[i]), before)


def _add_fleet_rows(lp: _Lp, problem: Problem, classes: list[list[int]], served: np.ndarray,
                    retrained: dict[int, np.ndarray], accuracy: np.ndarray, by_period: bool) -> None:
    """(19): per period, the Goodput of all tenants (``served`` and ``retrained`` columns, per
    slot or per period) within what the fleet's ``classes`` could earn with whole instances
    (:func:`~migrator.planning.fleet_bound.fleet_period_bounds`); only where that is less than
    every request served at its best ``accuracy``. Valid for every plan, so the relaxation
    stays a bound."""
    most, everything = fleet_period_bounds(problem, accuracy, classes)
    before = np.asarray(problem.acc_before, dtype=np.float64)
    gain = np.asarray(problem.acc_after, dtype=np.float64) - before
    starts = problem.period_starts()
    for j in np.flatnonzero(most < everything * (1 - 1e-9)):
        # The slack guards against rounding in the sums, as for the per-GPU bounds (14).
        row = lp.rows(1, upper=float(most[j]) * (1 + 1e-9) + 1e-7)
        when = [int(j)] if by_period else np.arange(starts[j], starts[j] + problem.periods[j])
        lp.add(row, served[:, when], before[:, None])
        for i, columns in retrained.items():
            lp.add(row, columns[when], gain[i])


def _work(problem: Problem, i: int, first_window: Any) -> Any:
    """Tenant i's retraining work in a window: what is left of it in the window holding slot
    0, all of it in later ones (``first_window`` a flag, or an array of them per slot)."""
    work = np.where(first_window, float(problem.work_left[i]), float(problem.work_full[i]))
    return float(work) if work.ndim == 0 else work


def _reachable(work: Any, most_progress: Any) -> Any:
    """Whether ``work`` can be done with ``most_progress`` (so that a completion may be 1);
    figures or arrays of them."""
    return np.logical_or(np.less_equal(work, 0), np.maximum(0.0, most_progress) >= np.multiply(work, 1 - 1e-9))


def _add_terminal(lp: _Lp, problem: Problem, i: int, progress: int | None, work: float) -> None:
    """(13): tenant i's terminal credit, in proportion to ``work`` done by the horizon's end."""
    gain = 0.0 if problem.terminal_gain is None else float(problem.terminal_gain[i])
    if gain > 0 and progress is not None:
        share = lp.col(cost=gain, upper=1.0)
        lp.row(-np.inf, 0.0, {share: work, progress: -1.0})


def _add_progress_terms(lp: _Lp, supply: _Supply, progress_rows: np.ndarray) -> None:
    """The classes' retraining terms in the progress rows: (N, T) rows, one per slot where
    one exists, or (N, J, S) rows, one per window segment of a period (by period)."""
    tenant, slot, column, value = supply.terms(0)
    rows = progress_rows[tenant, slot]
    for k in range(1 if rows.ndim == 1 else rows.shape[1]):
        ours = rows if rows.ndim == 1 else rows[:, k]
        kept = ours >= 0
        lp.add(ours[kept], column[kept], -value[kept])


def _most_progress(max_rate: float, problem: Problem, slots: int) -> float:
    """The most retraining progress ``slots`` slots at the most rate give: a finite bound
    on a progress column that every point of the relaxation keeps."""
    return max_rate * problem.slot_s * slots * (1 + 1e-9) + 1e-9


def _period_start_of(starts: np.ndarray, t: int) -> int:
    """The first slot of the period holding slot ``t`` (``starts``: the periods' first slots)."""
    return int(starts[np.searchsorted(starts, t, side="right") - 1])


def _period_sums(problem: Problem, per_slot: np.ndarray) -> np.ndarray:
    """(N, J): a per-slot (N, T) figure summed over each period."""
    return np.add.reduceat(np.asarray(per_slot, dtype=np.float64), problem.period_starts(), axis=1)


def _add_requests_by_period(lp: _Lp, problem: Problem, supply: _Supply) -> np.ndarray:
    """:func:`_add_requests` with every row summed over the slots of a period: the requests
    served in a period within its arrivals and within the capacity its counts give, and
    within its arrivals times the count of its instances. The served columns, (N, J)."""
    n, periods = len(problem.tenants), len(problem.periods)
    arrivals = _period_sums(problem, problem.arrivals)
    served = _served_within_capacity(lp, problem, supply, arrivals)
    who, period, column = supply.counts(1)
    has = np.zeros((n, periods), dtype=bool)
    has[who, period] = True
    needed = (arrivals > 0) & has
    whole = np.full((n, periods), -1, dtype=np.int64)
    whole[needed] = lp.rows(int(needed.sum()), upper=0.0)
    lp.add(whole[needed], served[needed], 1.0)
    ok = needed[who, period]
    lp.add(whole[who[ok], period[ok]], column[ok], -arrivals[who[ok], period[ok]])
    return served


def _segments(problem: Problem, i: int, j: int, first: int) -> list[tuple[int, int]]:
    """Period ``j`` (from slot ``first``) cut where tenant ``i``'s retraining windows start:
    (first, last) slots."""
    last = first + int(problem.periods[j]) - 1
    cuts = [t for t in range(first + 1, last + 1) if _window_start(problem, i, t)]
    bounds = [first, *cuts, last + 1]
    return [(a, b - 1) for a, b in zip(bounds[:-1], bounds[1:])]


def _add_retraining_by_period(lp: _Lp, problem: Problem, i: int, served: np.ndarray, progress_rows: np.ndarray,
                              who: _Retrainer) -> np.ndarray | None:
    """Rows (9)-(13) of tenant ``i`` relaxed to periods (the retrained requests' columns,
    (J,), as returned; None where the tenant does not retrain). Per period, the retrained requests
    are at most those served and at most each window segment's arrivals times its completion
    ``C``, where ``work x C`` is at most the progress through the segment's end (the progress
    of the whole period: a period cut by a window start lends it to both of its segments).
    Every plan's completions ``c[t]`` (monotone in a window, each within the progress before
    ``t``) give ``C`` = the segment's last ``c``; rows it does not need (completions at a
    window's first slot, monotonicity) are left out, so it bounds the program from above."""
    if not _retrains(problem, i):
        return None
    before, after = float(problem.acc_before[i]), float(problem.acc_after[i])
    arrivals = np.asarray(problem.arrivals[i], dtype=np.float64)
    setup = 0.0 if who.retraining_now else problem.setup_s
    first_window, progress, window_first = True, None, 0
    period_first = problem.period_starts()
    columns = np.zeros(len(problem.periods), dtype=np.int64)
    for j in range(len(problem.periods)):
        first, end = int(period_first[j]), int(period_first[j]) + int(problem.periods[j])
        retrained = columns[j] = lp.col(cost=after - before, upper=float(arrivals[first:end].sum()))
        lp.row(-np.inf, 0.0, {retrained: 1.0, int(served[j]): -1.0})
        limit, free = {retrained: 1.0}, 0.0
        for k, (lo, hi) in enumerate(_segments(problem, i, j, first)):
            starts = _window_start(problem, i, lo)
            if starts and lo > 0:
                first_window = False
            if starts:
                progress, window_first = None, lo
            # The first line alone (through 0): one retrained column spans the segments.
            arrived = who.members * float(who.counted.slopes[0, lo:hi + 1].sum())
            # The whole period's progress counts here (and the periods before, in the window).
            periods_in = end - _period_start_of(period_first, window_first)
            now = lp.col(upper=_most_progress(who.most_rate, problem, periods_in))
            progress_rows[i, j, k] = lp.row(0.0, 0.0, {now: 1.0} if progress is None else {now: 1.0, progress: -1.0})
            progress = now
            if first_window and not starts and bool(problem.done0[i]):
                free += arrived
                continue
            work = _work(problem, i, first_window)
            seconds = (hi + 1 - window_first) * problem.slot_s - (setup if first_window else 0.0)
            completion = lp.col(upper=1.0 if _reachable(work, who.reach_rate * seconds) else 0.0)
            lp.row(-np.inf, 0.0, {completion: who.members * work, progress: -1.0})
            limit[completion] = -arrived
        lp.row(-np.inf, free, limit)
    _add_terminal(lp, problem, i, progress, who.members * _work(problem, i, first_window))
    return columns


def _add_one_job(lp: _Lp, problem: Problem, supply: _Supply, members: np.ndarray) -> None:
    """(16): at most ``retrain_instances`` instances retrain a tenant in a period (times its
    ``members`` where tenants are pooled)."""
    tenant, period, column = supply.counts(0)
    keys, group = np.unique(tenant * len(problem.periods) + period, return_inverse=True)
    rows = lp.rows(len(keys), upper=float(problem.retrain_instances) * members[keys // len(problem.periods)])
    lp.add(rows[group.ravel()], column, 1.0)


def split_bound(problem: Problem, time_limit_s: float = 1.0, by_period: bool | None = None,
                pool: bool | None = None) -> float:
    """An upper bound on the optimum of the whole program of ``problem`` (objective of
    docs/model.md), or inf where the relaxation is not solved within ``time_limit_s``.
    ``by_period`` relaxes the tenants' rows from slots to periods (smaller, looser); by
    default above ``BY_PERIOD_ABOVE`` tenant-slots. ``pool`` relaxes alike tenants into one
    (:func:`pool_tenants`); by default above ``POOL_ABOVE`` tenant-slots."""
    return whole_bound(problem, time_limit_s, by_period=by_period, pool=pool)[0]


def _tenant_slots(problem: Problem) -> int:
    """The problem's tenants times its slots: the size the relaxation's defaults go by."""
    return len(problem.tenants) * problem.horizon


def _pooled_by_default(problem: Problem) -> bool:
    """Whether :func:`whole_bound` pools alike tenants unless told (above ``POOL_ABOVE``)."""
    return _tenant_slots(problem) > POOL_ABOVE


def relaxed_tenant_slots(problem: Problem) -> int:
    """Tenant-slots of the relaxation :func:`whole_bound` builds by default (its size)."""
    return len(_pools(problem)[1]) * problem.horizon if _pooled_by_default(problem) else _tenant_slots(problem)


def whole_bound(
    problem: Problem, time_limit_s: float = 1.0, start: LpBasis | None = None, deadline: Deadline | None = None,
    cancel: threading.Event | None = None, by_period: bool | None = None,
    on_early: Callable[[float], None] | None = None, pool: bool | None = None,
) -> tuple[float, LpBasis | None]:
    """:func:`split_bound`, started from ``start`` (the basis an earlier decision's bound
    returned), and the basis to start the next one from (None when not solved). With a
    ``deadline``, the relaxation is given up (inf) where building it outlasts the deadline
    and solved within what the deadline leaves of ``time_limit_s``; setting ``cancel``
    stops the solve (as its time limit would). ``on_early`` is called, once the program is
    built and before it is solved, with the bound that ``start``'s multipliers give it (inf
    without them). ``by_period`` and ``pool`` as in :func:`split_bound`."""
    if pool is None:
        pool = _pooled_by_default(problem)
    problem, pooled, counted = pool_tenants(problem) if pool else (
        problem, np.ones(len(problem.tenants)), tuple(Completions.of(a[None, :]) for a in problem.arrivals))
    if by_period is None:
        by_period = _tenant_slots(problem) > BY_PERIOD_ABOVE
    lp, supply, classes = _Lp(), _Supply(), _classes(problem)
    for members in classes:
        if _late(deadline):
            return float("inf"), None
        _add_class(lp, problem, members, supply, by_period)
    n = len(problem.tenants)
    if by_period:
        served = _add_requests_by_period(lp, problem, supply)
        progress_rows = np.full((n, len(problem.periods), max(problem.periods, default=1)), -1, dtype=np.int64)
        add_retraining = _add_retraining_by_period
    else:
        served = _add_requests(lp, problem, supply)
        progress_rows = np.full((n, problem.horizon), -1, dtype=np.int64)
        add_retraining = _add_retraining
    (reach, most), now = retraining_rates(problem, pooled), retraining_now(problem)
    retrained, accuracy = {}, np.zeros((n, problem.horizon))
    for i in range(n):
        if _late(deadline):
            return float("inf"), None
        who = _Retrainer(float(pooled[i]), counted[i], float(reach[i]), float(most[i]), bool(now[i]))
        columns = add_retraining(lp, problem, i, served[i], progress_rows, who)
        if columns is not None:
            retrained[i] = columns
        accuracy[i] = _best_accuracy(problem, i, who)
    _add_progress_terms(lp, supply, progress_rows)
    _add_fleet_rows(lp, problem, classes, served, retrained, accuracy, by_period)
    if problem.retrain_instances > 0:
        _add_one_job(lp, problem, supply, pooled)
    return lp.solve(time_limit_s, start, deadline, cancel, on_early)


def _late(deadline: Deadline | None) -> bool:
    return deadline is not None and deadline.left() <= 0


class _Pending:
    """One bound's solve, as its decision sees it: the bound the earlier multipliers give
    once the program is built, then the solve's own when it ends."""

    def __init__(self) -> None:
        self._early = float("inf")
        self._value = float("inf")
        self._done = threading.Event()

    def early(self, value: float) -> None:
        self._early = value

    def finish(self, value: float) -> None:
        self._value = value
        self._done.set()

    def wait(self, wait_s: float) -> float:
        if self._done.wait(max(wait_s, 0.0)):
            return self._value
        return self._early


class _Channel:
    """One relaxation's solves in a receding loop: the basis and multipliers of its last
    finished solve, and the solve going on (one at a time), which may outlast its decision.
    ``pool`` and ``by_period`` as :func:`whole_bound` takes them (None: by size)."""

    def __init__(self, pool: bool | None = None, by_period: bool | None = None) -> None:
        self.lock = threading.Lock()
        self.start: LpBasis | None = None
        self.running: threading.Thread | None = None
        self.pool, self.by_period = pool, by_period

    def busy(self) -> bool:
        with self.lock:
            return self.running is not None and self.running.is_alive()

    def begin(self, problem: Problem, cancel: threading.Event, early: bool) -> _Pending:
        """Solve ``problem`` in a thread from the last basis; ``early``: have the pending
        bound take the last multipliers' value meanwhile."""
        with self.lock:
            start = self.start
        if start is not None and not early:
            start = dataclasses.replace(start, row_dual=None)  # spare the Lagrangian of stale multipliers
        pending = _Pending()
        thread = threading.Thread(target=self._solve, args=(problem, start, cancel, pending), name="migrator-bound",
                                  daemon=True)
        with self.lock:
            self.running = thread
        thread.start()
        return pending

    def _solve(self, problem: Problem, start: LpBasis | None, cancel: threading.Event, pending: _Pending) -> None:
        value = float("inf")
        try:
            value, basis = whole_bound(problem, time_limit_s=BACKGROUND_S, start=start, cancel=cancel,
                                       on_early=pending.early, pool=self.pool, by_period=self.by_period)
            if basis is not None:
                with self.lock:
                    self.start = basis
        finally:
            pending.finish(value)

    def join(self, timeout_s: float) -> bool:
        with self.lock:
            running = self.running
        if running is not None:
            running.join(timeout=max(timeout_s, 0.0))
        return running is None or not running.is_alive()


class BoundKeeper:
    """The split bounds of one receding loop. Each decision's relaxation starts from the last
    finished solve's basis and is bounded at once by its multipliers; a solve the decision
    cannot wait for goes on in a background thread (one at a time, for at most
    ``BACKGROUND_S``), so that the decisions after it start from its basis and multipliers.
    At 128 GPUs a cold solve takes longer than a decision while a warm one fits in it.

    Where the tenants are pooled but the relaxation tenant by tenant is at most
    ``UNPOOLED_UP_TO`` tenant-slots, that one is solved beside the pooled one, in a thread
    of its own and from its own last basis, and a decision gets the lesser of the bounds
    that are ready by its deadline (both are bounds). The earlier multipliers of the
    unpooled relaxation are not used: a slot later they bound it 13 % above a fresh solve."""

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._default = _Channel()
        self._unpooled = _Channel(pool=False, by_period=False)
        _KEEPERS.add(self)

    @property
    def start(self) -> LpBasis | None:
        """The basis and multipliers the next bound (of the relaxation its size gives) starts
        from (settable: a benchmark replays one decision from the same start)."""
        with self._default.lock:  # a background solve may be writing it
            return self._default.start

    @start.setter
    def start(self, basis: LpBasis | None) -> None:
        with self._default.lock:
            self._default.start = basis

    def bound(self, problem: Problem, deadline: Deadline) -> float:
        """The bound of ``problem`` by what ``deadline`` leaves: the solve's own where it
        ends in time, else the last multipliers' (inf where there are none); the lesser of
        it and the unpooled relaxation's where that is solved beside it."""
        beside = None
        if _unpooled_beside(problem) and not self._unpooled.busy():
            beside = self._unpooled.begin(problem, self._cancel, early=False)
        if self._default.busy():
            # The last solve goes on: this program gets what its multipliers give.
            value = whole_bound(problem, time_limit_s=0.0, start=self.start, deadline=deadline)[0]
        else:
            value = self._default.begin(problem, self._cancel, early=True).wait(deadline.left())
        if beside is not None:
            value = min(value, beside.wait(deadline.left()))
        return value

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the solves going on in the background; whether none is."""
        return all([channel.join(timeout_s) for channel in (self._default, self._unpooled)])  # both joined

    def close(self) -> None:
        """Stop the solves going on in the background (at exit, before the interpreter goes)."""
        self._cancel.set()
        self.join(5.0)


def _unpooled_beside(problem: Problem) -> bool:
    """Whether the keeper solves the relaxation tenant by tenant beside the pooled one."""
    return _pooled_by_default(problem) and _tenant_slots(problem) <= UNPOOLED_UP_TO


_KEEPERS: weakref.WeakSet[BoundKeeper] = weakref.WeakSet()


@atexit.register
def _close_keepers() -> None:
    for keeper in list(_KEEPERS):
        keeper.close()
