"""A quick, always valid plan to start the solver from (and to fall back on).

For each GPU in turn, every maximal set of its planning placements (and its current layout)
is given tasks greedily, largest instance first, each to the tenant whose remaining demand it
serves best, weighted by accuracy; one more candidate is the GPU's best pattern for the
remaining demand (``_core.best_pattern``: the best maximal layout and tenants, exactly). The
candidate worth most over the horizon, less what its new instances lose while they set up,
is kept and its service taken off the demand. Every period gets the same tasks.

Then retraining: for each tenant with work left, the instance whose inference is worth
least is moved to retraining from the start when the accuracy gain over the rest of the
window (within the horizon) outweighs the inference it gives up until the retraining is done
(:func:`_add_retraining`). Without it a solver stopped at its time limit would return a plan
that never retrains, however much retraining would earn.
"""

from __future__ import annotations

from typing import Any, Collection, Sequence

import numpy as np

from .. import _core
from .deadline import Deadline
from .decompose import sub_gpu, task_map
from .planner_problem import IDLE, GpuProblem, Problem, alike_gpus, core_gpu, inference_tenant, retraining_counts

__all__ = [
    "RetrainingTable",
    "fits_beside",
    "greedy_start",
    "greedy_tasks",
    "layout_sets",
    "maximal_sets",
    "packed_tasks",
    "pattern_candidates",
    "window_value",
]


def maximal_sets(gpu: GpuProblem) -> list[list[int]]:
    """Every valid set of the GPU's placements to which none of them can be added (the
    geometry core's enumeration, on the planning placements only; the ILP builder's layout
    bounds use the same sets)."""
    return [list(layout) for layout in _core.maximal_layouts(core_gpu(gpu))]


def layout_sets(gpu: GpuProblem) -> list[frozenset[int]]:
    """:func:`maximal_sets` as frozensets, as :func:`fits_beside` takes them."""
    return [frozenset(m) for m in maximal_sets(gpu)]


def fits_beside(gpu: GpuProblem, occupied: Sequence[int], q: int,
                layouts: Sequence[frozenset[int]] | None = None) -> bool:
    """Whether placement ``q`` can hold an instance beside those at ``occupied``: whether
    they all lie within one of the GPU's maximal layouts (``layouts``, :func:`maximal_sets`
    as frozensets, computed when not given)."""
    if layouts is None:
        layouts = layout_sets(gpu)
    wanted = {*occupied, q}
    return any(wanted <= layout for layout in layouts)


def _assign(
    gpu: GpuProblem, chosen: list[int], remaining: np.ndarray, accuracy: np.ndarray,
    given: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tasks for the chosen placements, what each serves (req/s) and the demand left.

    Each instance goes to the tenant it serves best, or, with ``given`` (a task per
    placement), to the tenant given there; one given no inference task stays idle."""
    tasks = np.full(len(gpu.placements), -1, dtype=np.int64)
    served = np.zeros(len(gpu.placements))
    left = remaining.copy()
    for q in sorted(chosen, key=lambda q: -int(gpu.compute[q])):
        take = np.minimum(left, gpu.capacity_rps[:, q])
        if given is not None:
            i = inference_tenant(int(given[q]))
        else:
            i = int(np.argmax(take * accuracy)) if len(take) else 0
        if len(take) and i >= 0 and take[i] * accuracy[i] > 0:
            tasks[q] = 1 + 2 * i
            served[q] = take[i] * accuracy[i]
            left[i] -= take[i]
        else:
            tasks[q] = IDLE
    return tasks, served, left


def _kept(gpu: GpuProblem, remaining: np.ndarray, accuracy: np.ndarray,
          tasks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_assign`'s figures for the GPU's current instances and tasks (or ``tasks``),
    kept as they are."""
    tasks = (gpu.current if tasks is None else tasks).copy()
    served = np.zeros(len(gpu.placements))
    left = remaining.copy()
    for q in np.flatnonzero((tasks > IDLE) & (tasks % 2 == 1)):
        i = (int(tasks[q]) - 1) // 2
        take = min(left[i], gpu.capacity_rps[i, q])
        served[q], left[i] = take * accuracy[i], left[i] - take
    return tasks, served, left


def _best_pattern(problem: Problem, gpu: GpuProblem, remaining: np.ndarray, accuracy: np.ndarray,
                  layouts: Sequence[Sequence[int]]) -> np.ndarray | None:
    """The placements and tenants of the GPU's best maximal layout for the remaining demand
    (the C++ search the builder bounds each period with); None where there is none.

    Only the tenants of :func:`pattern_candidates` take part: the search grows with the
    tenants, and the others cannot improve on what they find. ``layouts``: the GPU's
    :func:`maximal_sets`, which the caller has at hand."""
    active = pattern_candidates(gpu, remaining, accuracy, layouts)
    if not active:
        return None
    part = sub_gpu(gpu, active)
    # The search values one slot of the demand; the plan holds its tasks the whole horizon,
    # so an instance's reconfiguration penalty is spread over the horizon's slots.
    _, local = _core.best_pattern(core_gpu(part), len(active), np.asarray(accuracy, dtype=np.float64)[active],
                                  np.asarray(remaining, dtype=np.float64)[active] * problem.slot_s, problem.slot_s,
                                  penalty=problem.reconfig_penalty / max(1, problem.horizon))
    back = {v: k for k, v in task_map(active).items()}
    tasks = np.array([back.get(int(k), IDLE) if k >= 0 else -1 for k in local], dtype=np.int64)
    return tasks if (tasks > 0).any() else None


def pattern_candidates(gpu: GpuProblem, remaining: np.ndarray, accuracy: np.ndarray,
                       layouts: Sequence[Sequence[int]] | None = None) -> list[int]:
    """The tenants among which the GPU's best pattern for the ``remaining`` demand can be
    found: those it serves now, and for each profile the ``m`` that one instance of it
    earns most from, where ``m`` is the most instances a layout holds. Exact: a tenant
    outside gets an instance of some profile; one of that profile's ``m`` has no instance
    in the pattern (the others hold at most ``m - 1``), earns at least as much from it
    alone, and the tenant's own gain from its last instance is no more than from a first
    (service is concave in capacity); both are new instances, so the swap loses nothing.
    ``layouts``: the GPU's :func:`maximal_sets`, computed when not given."""
    remaining = np.asarray(remaining, dtype=np.float64)
    if not (remaining > 0).any():
        return []
    value = _service_values(gpu, remaining, accuracy)
    if layouts is None:
        layouts = maximal_sets(gpu)
    most = max((len(s) for s in layouts), default=0)
    chosen = {(int(k) - 1) // 2 for k in gpu.current if k > IDLE and (int(k) - 1) % 2 == 0}
    for p in np.unique(gpu.profile):
        best = value[:, gpu.profile == p].max(axis=1)
        top = np.argsort(-best, kind="stable")[:most]
        chosen.update(int(i) for i in top if best[i] > 0)
    return sorted(i for i in chosen if remaining[i] > 0)


def _worth(problem: Problem, gpu: GpuProblem, tasks: np.ndarray, served: np.ndarray) -> float:
    """Goodput per horizon, less what new instances lose while setting up and their
    reconfiguration penalty (the program's objective, on the mean demand)."""
    horizon_s = problem.horizon * problem.slot_s
    new = (tasks >= 0) & (tasks != gpu.current)
    setup = min(problem.setup_s, horizon_s)
    return float(served.sum() * horizon_s - served[new].sum() * setup - problem.reconfig_penalty * new.sum())


def _best_candidate(problem: Problem, gpu: GpuProblem, current: list[int], layouts: Sequence[Sequence[int]],
                    pattern: np.ndarray | None, remaining: np.ndarray, accuracy: np.ndarray) -> tuple[Any, ...]:
    """The GPU's candidate worth most (the first of them in the order current layout,
    maximal layouts, best pattern, where several are): its worth, tasks, the demand it
    leaves and what each placement serves.

    A maximal layout's greedy tasks serve at most what each of its placements would serve
    of the tenant it serves best, alone, and a candidate is worth at most its service over
    the horizon (set-up and penalty only take off); a layout whose ceiling is below the
    current layout's or the best pattern's worth cannot be the one kept, so its tasks are
    not worked out. The pick is the same as without the ceilings (tested); about half the
    layouts are cut so (docs/model.md, "The greedy start's layout ceilings")."""
    # The current layout is a candidate even where it holds no instance: a GPU with no demand
    # left stays empty (worth 0) rather than taking an idle instance at a penalty, and the
    # split can then hand it the demand no GPU covers (decompose.part_arrivals).
    candidates: list[tuple[int, list[int], Any]] = [(0, current, None)]
    first_layout = len(candidates)
    if pattern is not None:
        candidates.append((first_layout + len(layouts), [int(q) for q in np.flatnonzero(pattern > 0)], pattern))
    evaluated = [(order, *_valued(problem, gpu, chosen, remaining, accuracy, given))
                 for order, chosen, given in candidates]
    threshold = max((e[1] for e in evaluated), default=-np.inf)
    ceiling = problem.horizon * problem.slot_s * _placement_ceilings(gpu, remaining, accuracy)
    for k, chosen in enumerate(layouts):
        if float(ceiling[chosen].sum()) * (1 + 1e-9) + 1e-9 < threshold:
            continue
        evaluated.append((first_layout + k, *_valued(problem, gpu, chosen, remaining, accuracy, None)))
    best_worth = max(e[1] for e in evaluated)
    return min((e for e in evaluated if e[1] == best_worth), key=lambda e: e[0])[1:]


def _valued(problem: Problem, gpu: GpuProblem, chosen: Sequence[int], remaining: np.ndarray, accuracy: np.ndarray,
            given: np.ndarray | None) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    tasks, served, left = _assign(gpu, list(chosen), remaining, accuracy, given)
    return _worth(problem, gpu, tasks, served), tasks, left, served


def _service_values(gpu: GpuProblem, remaining: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """(N, Q) what one instance at each placement would serve of each tenant's ``remaining``
    demand alone (accuracy-weighted req/s; 0 for a tenant with none left)."""
    remaining = np.asarray(remaining, dtype=np.float64)
    value = np.asarray(accuracy, dtype=np.float64)[:, None] * np.minimum(remaining[:, None], gpu.capacity_rps)
    value[remaining <= 0] = 0.0
    return value


def _placement_ceilings(gpu: GpuProblem, remaining: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """(Q,) the most an instance at each placement can serve (accuracy-weighted req/s) of
    the ``remaining`` demand: of the one tenant it serves best."""
    if len(remaining) == 0:
        return np.zeros(len(gpu.placements))
    return _service_values(gpu, remaining, accuracy).max(axis=0)


def greedy_tasks(problem: Problem, deadline: Deadline | None = None) -> tuple[np.ndarray, ...]:
    """Tasks (periods x placements, -1 for no instance) for every GPU, as the solver takes them.

    With a ``deadline``, the GPUs it does not reach keep their current instances and tasks
    (always valid), and their service is taken off the demand as the others' is.
    """
    return greedy_start(problem, deadline)[0]


def greedy_start(problem: Problem, deadline: Deadline | None = None, sweep_from: int | None = None,
                 base: Sequence[np.ndarray] | None = None) -> tuple[tuple[np.ndarray, ...], int | None]:
    """:func:`greedy_tasks`, and the GPU the ``deadline`` stopped it at (None where it
    reached every GPU).

    With ``sweep_from``, a plan (``base``, else the current instances held over the horizon)
    is improved one GPU at a time instead, from that GPU round to the one before it: each GPU
    keeps its timeline unless one of :func:`greedy_tasks`'s candidates for it is worth more
    against the demand that every other GPU leaves (as the plan has it, or as the sweep
    re-planned it), so that a GPU the sweep does not reach neither loses its service nor has
    it counted twice. Where the start from scratch cannot reach every GPU in the time
    (hundreds of GPUs), it re-plans the same first GPUs at every decision and leaves the
    others as the first decisions left them; sweeps that go on from where the last stopped
    reach every GPU in turn."""
    if sweep_from is None:
        tasks, served, stopped = _from_scratch(problem, deadline)
    else:
        tasks, served, stopped = _sweep(problem, deadline, sweep_from, base)
    return _add_retraining(problem, tasks, served, deadline), stopped


def _reaches(deadline: Deadline | None) -> bool:
    return deadline is None or deadline.reaches("greedy start on some GPUs")


def _candidate(problem: Problem, gpu: GpuProblem, remaining: np.ndarray,
               accuracy: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The GPU's best greedy candidate for the ``remaining`` demand (:func:`_best_candidate`):
    its worth, tasks, the demand it leaves and what each placement serves."""
    current = [q for q in range(len(gpu.placements)) if gpu.current[q] >= 0]
    layouts = maximal_sets(gpu)
    pattern = _best_pattern(problem, gpu, remaining, accuracy, layouts)
    return _best_candidate(problem, gpu, current, layouts, pattern, remaining, accuracy)


def _from_scratch(problem: Problem, deadline: Deadline | None) -> tuple[list[np.ndarray], list[np.ndarray], int | None]:
    """Each GPU in turn takes its best candidate against the demand the GPUs before it
    leave; those the ``deadline`` does not reach keep their current instances, their service
    taken off after the others'. Tasks, service per placement, and where it stopped."""
    remaining, accuracy, periods = problem.demand_rps(), problem.acc_before, len(problem.periods)
    out: list[np.ndarray] = []
    served_by: list[np.ndarray] = []
    stopped: int | None = None
    for g, gpu in enumerate(problem.gpus):
        if stopped is None and not _reaches(deadline):
            stopped = g
        if stopped is None:
            _, tasks, remaining, served = _candidate(problem, gpu, remaining, accuracy)
        else:
            tasks, served, remaining = _kept(gpu, remaining, accuracy)
        out.append(np.tile(tasks, (periods, 1)))
        served_by.append(served)
    return out, served_by, stopped


def _sweep(problem: Problem, deadline: Deadline | None, first: int,
           base: Sequence[np.ndarray] | None) -> tuple[list[np.ndarray], list[np.ndarray], int | None]:
    """``base`` (else the current instances held over the horizon) improved one GPU at a
    time from GPU ``first`` round the fleet: a GPU takes its best candidate where that is
    worth more than its own timeline against the demand every other GPU leaves; the GPUs the
    ``deadline`` does not reach keep theirs. Tasks, service per placement, where it stopped."""
    remaining, accuracy, periods = problem.demand_rps(), problem.acc_before, len(problem.periods)
    out = [np.array(base[g]) if base is not None else np.tile(gpu.current, (periods, 1))
           for g, gpu in enumerate(problem.gpus)]
    served_by: list[np.ndarray] = []
    taken = np.zeros((len(problem.gpus), len(remaining)))
    for g, gpu in enumerate(problem.gpus):
        _, served, left = _kept(gpu, remaining, accuracy, out[g][0])
        served_by.append(served)
        taken[g], remaining = remaining - left, left
    for step in range(len(problem.gpus)):
        g = (first + step) % len(problem.gpus)
        if not _reaches(deadline):
            return out, served_by, g
        gpu = problem.gpus[g]
        remaining = remaining + taken[g]
        _, served, left = _kept(gpu, remaining, accuracy, out[g][0])
        worth, tasks, better_left, better_served = _candidate(problem, gpu, remaining, accuracy)
        if worth > _worth(problem, gpu, out[g][0], served):
            out[g], left, served = np.tile(tasks, (periods, 1)), better_left, better_served
        taken[g] = remaining - left
        remaining, served_by[g] = left, served
    return out, served_by, None


class RetrainingTable:
    """What retraining each tenant at each GPU's placement earns, for every GPU at once: the
    slots until a retraining started there now is done (set-up included, ``finish``) and
    :func:`window_value`, what it earns until ``end`` less the inference the instance gives
    up meanwhile (``served``: accuracy-weighted requests per second); -inf where it cannot
    finish in time, the placement is closed, or its instance retrains already (taking it for
    another tenant would throw that retraining away, which the value does not count).

    Kept factorised rather than as a (GPU, tenant, placement) array: ``finish`` and the gain
    depend on the tenant and the placement only (the same for alike GPUs), the inference
    given up on the GPU and the placement only. At the scenario limits (2048 GPUs, 4096
    tenants) the array took 1 GB and 3.5 s to fill; one tenant's values are made when asked.

    Parameters
    ----------
    first, served : sequences of arrays (Q,)
        Each GPU's first-period tasks (a placement is open where it holds an instance that
        does not retrain) and the service of each of its instances.
    skip : GPUs left out (every value -inf).
    """

    def __init__(self, problem: Problem, first: Sequence[np.ndarray], served: Sequence[np.ndarray],
                 gain: np.ndarray, end: np.ndarray, skip: Collection[int] = ()) -> None:
        n, gpus = len(problem.tenants), len(problem.gpus)
        self.width = width = max(len(g.placements) for g in problem.gpus)
        self.slot_s, self.gain, self.end = problem.slot_s, gain, end
        self.served = np.zeros((gpus, width))
        self.open = np.zeros((gpus, width), dtype=bool)
        # Per class of alike GPUs, and one last class of nothing for the GPUs skipped.
        self.kind = np.full(gpus, -1, dtype=np.int64)
        finishes = []
        for alike in alike_gpus(problem):
            members = [g for g in alike if g not in skip]
            if not members:
                continue
            gpu = problem.gpus[members[0]]
            finish = np.full((n, width), np.inf)
            finish[:, : len(gpu.placements)] = _finish(problem, gpu)
            finishes.append(finish)
            self.kind[members] = len(finishes) - 1
            for g in members:
                q = len(gpu.placements)
                retraining = (first[g] > IDLE) & (first[g] % 2 == 0)
                self.open[g, :q] = (first[g] >= 0) & ~retraining
                self.served[g, :q] = served[g]
        finishes.append(np.full((n, width), np.inf))
        self.kind[self.kind < 0] = len(finishes) - 1
        self.finish_by_kind = np.stack(finishes)
        with np.errstate(invalid="ignore"):
            self.fits = self.finish_by_kind < end[None, :, None]  # (kinds, N, width)
        self.fits_any = np.asarray(self.fits.any(axis=1))  # (kinds, width)

    def finish(self, i: int) -> np.ndarray:
        """(G, width): slots until tenant ``i``'s retraining at each placement is done."""
        return self.finish_by_kind[self.kind, i, :]

    def values(self, i: int) -> np.ndarray:
        """(G, width): what retraining tenant ``i`` at each placement earns (-inf: cannot)."""
        finish = self.finish(i)
        with np.errstate(invalid="ignore"):
            value = self.gain[i] * (self.end[i] - finish) - self.served * self.slot_s * finish
        value[~(self.open & self.fits[self.kind, i, :])] = -np.inf
        return value

    def value(self, g: int, i: int, q: int) -> float:
        if not (self.open[g, q] and self.fits[self.kind[g], i, q]):
            return -np.inf
        finish = self.finish_by_kind[self.kind[g], i, q]
        return float(self.gain[i] * (self.end[i] - finish) - self.served[g, q] * self.slot_s * finish)

    def close(self, g: int, q: int) -> None:
        """No tenant may retrain at placement q of GPU g any more."""
        self.open[g, q] = False

    def reprice(self, g: int, q: int, served: float) -> None:
        """The instance at placement q of GPU g now gives up ``served`` when it retrains."""
        self.served[g, q] = served

    def open_placements(self, g: int) -> np.ndarray:
        """The placements of GPU g where some tenant may still retrain."""
        return np.flatnonzero(self.open[g] & self.fits_any[self.kind[g]])


def _finish(problem: Problem, gpu: GpuProblem) -> np.ndarray:
    """(N, Q) slots until a retraining started now at each placement is done; inf where the
    instance cannot retrain the tenant."""
    speed = gpu.retrain_speed
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(speed > 0, (problem.setup_s + problem.work_left[:, None] / speed) / problem.slot_s, np.inf)


def window_value(problem: Problem, gain: np.ndarray, end: np.ndarray, finish: np.ndarray, served: np.ndarray) -> np.ndarray:
    """What a retraining done after ``finish`` slots earns until ``end`` (``gain`` per slot)
    less the inference its instance gives up until then (``served``: accuracy-weighted
    requests per second)."""
    return gain * (end - finish) - served * problem.slot_s * finish


def _add_retraining(problem: Problem, tasks: list[np.ndarray], served: list[np.ndarray],
                    deadline: Deadline | None = None) -> tuple[np.ndarray, ...]:
    """Move, tenant by tenant (largest gain first), the instance where retraining is worth
    most to retraining from now, where the accuracy gain until the window's (or horizon's)
    end outweighs the inference it gives up until the retraining is done; the tenants a
    ``deadline`` does not reach are left as they are."""
    n = len(problem.tenants)
    if n == 0 or not problem.gpus:
        return tuple(tasks)
    gain = problem.retraining_gain()
    end = np.minimum(problem.window_slots - problem.window_offset, problem.horizon).astype(np.float64)
    eligible = (problem.window_slots > 0) & ~problem.done0 & (gain > 0)
    # A tenant that retrains on a GPU kept as it was (or not reached) has its job already.
    eligible[retraining_counts(n, tasks) > 0] = False
    table = RetrainingTable(problem, [t[0] for t in tasks], served, gain, end)
    starts = problem.period_starts()
    for i in np.argsort(-gain):
        if deadline is not None and not deadline.reaches("greedy start's retraining"):
            break
        if not eligible[i]:
            continue
        value = table.values(int(i))
        g, q = (int(v) for v in np.unravel_index(int(np.argmax(value)), value.shape))
        if not value[g, q] > 0:
            continue
        tasks[g][starts < table.finish(int(i))[g, q], q] = 2 + 2 * int(i)
        table.close(g, q)  # one retraining per instance
    return tuple(tasks)



def packed_tasks(problem: Problem) -> tuple[np.ndarray, ...]:
    """One instance per tenant, sized to its demand, packed onto the GPUs; every period the
    same tasks, then retraining as :func:`greedy_tasks` adds it.

    Tenants go largest instance first (the compute of the smallest placement whose
    capacity covers their mean demand), each to the smallest such placement that still
    fits, on the GPU it leaves the least room on, or, where none covers it, to the free
    placement that serves it most. :func:`greedy_tasks` fills one GPU after another with
    what earns most there and deals tenants out in slices (24 instances on 8 A100s / 16
    tenants from a cold start, against the optimum's 16); the split started from this
    plan came within 0.08 % of the whole program's optimum there, against 0.7 %."""
    demand = problem.demand_rps()
    bins = _Bins(problem)
    for i in np.lexsort((-demand * problem.acc_before, -_right_size(problem, demand))):
        if demand[i] > 0:
            bins.place(int(i), demand[i])
    served = [_service(problem, gpu, tasks, demand) for gpu, tasks in zip(problem.gpus, bins.first)]
    return _add_retraining(problem, [np.tile(t, (len(problem.periods), 1)) for t in bins.first], served)


def _service(problem: Problem, gpu: GpuProblem, tasks: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """Accuracy-weighted req/s each placement's instance serves, its tenant having no other."""
    out = np.zeros(len(tasks))
    for q in np.flatnonzero(tasks > IDLE):
        i = (int(tasks[q]) - 1) // 2
        out[q] = min(demand[i], gpu.capacity_rps[i, q]) * problem.acc_before[i]
    return out


def _right_size(problem: Problem, demand: np.ndarray) -> np.ndarray:
    """(N,) compute slices of the smallest placement covering each tenant's demand (the
    largest over GPU models; the largest placement where none covers it)."""
    size = np.zeros(len(demand))
    for gpu in problem.gpus:
        covers = gpu.capacity_rps >= demand[:, None]
        smallest = np.where(covers, gpu.compute[None, :], np.inf).min(axis=1)
        size = np.maximum(size, np.where(np.isfinite(smallest), smallest, gpu.compute.max(initial=0)))
    return size


class _Bins:
    """The GPUs as :func:`packed_tasks` fills them. GPUs of one model and placements holding
    the same instances offer the same spots, so each such group is looked at once: on 128
    A100s the search would otherwise check every placement of every GPU for every tenant
    (``benchmarks/test_bench_starts.py`` holds it against that scan)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.first = [np.full(len(gpu.placements), -1, dtype=np.int64) for gpu in problem.gpus]
        self.kind = [(gpu.model, tuple(str(p) for p in gpu.placements)) for gpu in problem.gpus]
        self.layouts: dict[Any, list[frozenset[int]]] = {}
        self.free: dict[Any, np.ndarray] = {}  # (kind, occupied): placements that still fit
        for g, gpu in enumerate(problem.gpus):
            if self.kind[g] not in self.layouts:
                self.layouts[self.kind[g]] = layout_sets(gpu)

    def _state(self, g: int) -> tuple[Any, frozenset[int]]:
        return self.kind[g], frozenset(int(q) for q in np.flatnonzero(self.first[g] >= 0))

    def _fitting(self, g: int) -> np.ndarray:
        state = self._state(g)
        if state not in self.free:
            gpu, (kind, occupied) = self.problem.gpus[g], state
            layouts = self.layouts[kind]
            self.free[state] = np.array([q not in occupied and fits_beside(gpu, list(occupied), q, layouts)
                                         for q in range(len(gpu.placements))], dtype=bool)
        return self.free[state]

    def place(self, i: int, demand: float) -> None:
        """Tenant ``i``'s instance (see :func:`packed_tasks`); none where nothing fits."""
        covering, partial = [], []
        seen = set()
        for g, gpu in enumerate(self.problem.gpus):
            state = self._state(g)
            if state in seen:  # the same spots as a GPU already looked at, and the same room
                continue
            seen.add(state)
            room = gpu.compute_slices - int(gpu.compute[list(state[1])].sum())
            capacity = gpu.capacity_rps[i]
            for q in np.flatnonzero(self._fitting(g) & (capacity > 0)):
                left = room - int(gpu.compute[q])
                if capacity[q] >= demand:
                    covering.append((int(gpu.compute[q]), left, g, int(q)))
                else:
                    partial.append((-float(capacity[q]), left, g, int(q)))
        best = min(covering or partial, default=None)
        if best is not None:
            self.first[best[2]][best[3]] = 1 + 2 * i
