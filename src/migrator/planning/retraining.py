"""Retraining over its whole window: a pass over a plan's first period.

The planner values a retraining only by what it earns within the horizon (a few tens of
seconds), and the per-GPU split only lets a GPU retrain the tenants it serves, so retraining
that needs minutes is never started even where an instance's inference is worth less than
the accuracy the retraining would add over the rest of its window. This pass applies the
greedy start's rule (``migrator.planning.greedy``) to the plan's first period with the whole window in
view: for each tenant with work left, most gain per unit of work first, the instance whose retraining is
worth most, ``gain x requests per slot x slots left in the window after it is done`` less the
inference the instance gives up until then (what its tenant would lose without it, not its
capacity; valued anew for the tenant's other instances once one of them is taken, so that a
tenant does not lose them all, each as if the others stayed) and the reconfiguration
penalty, is moved to retraining. Free room counts too: a
placement that fits beside the first period's instances (a GPU the plan leaves empty, say)
gives up no inference, so a new instance there retrains where that pays. So does a larger
placement over instances that serve little (:class:`_GiveWay`): the instances it overlaps
give way, valued at what their tenants lose without them all, so that a job can move to a
7g instance, done in half the time, where the plan's layout holds only 3g ones (replays
+0.2 % on 8 GPUs, +0.0-0.7 % on the built-in scenario over three seeds, docs/results.md).
An instance already retraining keeps its tenant while that still pays, so that decisions
do not undo each other, and an instance the plan itself retrains on is never taken for
another tenant. No tenant gets more retraining instances than the planner allows at once
(``retrain_instances``).
"""

from __future__ import annotations

from typing import Any, Callable, Collection, Sequence

import numpy as np

from .greedy import RetrainingTable, fits_beside, layout_sets
from .planner_problem import FLOOR_WEIGHT, IDLE, Problem, inference_tenant, retraining_counts

__all__ = ["eligible_tenants", "fits_beside", "marginal_service", "retrain_over_window"]


def eligible_tenants(problem: Problem) -> np.ndarray:
    """(N,) bool: tenants whose current window still has retraining to do that would pay."""
    gain = problem.retraining_gain()
    return (problem.window_slots > 0) & ~problem.done0 & (gain > 0) & (problem.work_left > 0)


def _serving(problem: Problem, first: Sequence[np.ndarray]) -> list[list[tuple[int, int]]]:
    """Per tenant, the (GPU, placement) of every first-period instance serving its inference."""
    out: list[list[tuple[int, int]]] = [[] for _ in problem.tenants]
    for g, tasks in enumerate(first):
        for q, task in enumerate(tasks):
            i = inference_tenant(int(task))
            if i >= 0:
                out[i].append((g, q))
    return out


def _served_value(problem: Problem, i: int, rate: Any, demand: float) -> Any:
    """What tenant ``i``'s inference at ``rate`` req/s is worth a second, as the program
    values it: accuracy-weighted requests served, and the floor weight on those under the
    tenant's floor (row 17), so that the pass gives way where the program would."""
    floor = 0.0 if problem.min_attainment is None else float(problem.min_attainment[i]) * demand
    return problem.acc_before[i] * np.minimum(demand, rate) + FLOOR_WEIGHT * np.minimum(floor, rate)


def _losses(problem: Problem, i: int, at: Sequence[tuple[int, int]], demand: float) -> np.ndarray:
    """What tenant ``i`` would lose (:func:`_served_value` a second) without each of its
    instances ``at``, the others still serving."""
    capacity = np.array([problem.gpus[g].capacity_rps[i, q] for g, q in at])
    total = capacity.sum()
    return _served_value(problem, i, total, demand) - _served_value(problem, i, total - capacity, demand)


def _joint_loss(problem: Problem, i: int, at: Sequence[tuple[int, int]], gone: Collection[tuple[int, int]],
                demand: float) -> float:
    """What tenant ``i`` would lose without those of its instances ``at`` that are in
    ``gone``, the rest still serving: :func:`_losses` for several at once."""
    capacity = {(g, q): float(problem.gpus[g].capacity_rps[i, q]) for g, q in at}
    total = sum(capacity.values())
    kept = total - sum(capacity.get(spot, 0.0) for spot in gone)
    return float(_served_value(problem, i, total, demand) - _served_value(problem, i, kept, demand))


def marginal_service(problem: Problem, first: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per GPU and placement: accuracy-weighted requests per second its tenant would lose
    if the instance stopped serving inference (0 for idle or retraining instances), against
    the forecast's mean rate."""
    demand = problem.demand_rps()
    out = [np.zeros(len(gpu.placements)) for gpu in problem.gpus]
    for i, at in enumerate(_serving(problem, first)):
        for (g, q), lost in zip(at, _losses(problem, i, at, demand[i])):
            out[g][q] = lost
    return out


def retrain_over_window(problem: Problem, tasks: Sequence[np.ndarray], keep: Collection[int] = (),
                        stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, ...]:
    """The plan with its first period's instances moved to retraining where that pays over
    the retraining's window (see the module docstring); the GPUs in ``keep`` are left as
    they are (the cluster's late parts, which keep their current layout and tasks). Tenants
    are taken in turn until ``stop()`` says the decision's time is up; those not reached
    keep the plan's tasks (each move stands on its own, so the plan stays valid)."""
    n = len(problem.tenants)
    out = [t.copy() for t in tasks]
    if n == 0 or not problem.gpus:
        return tuple(out)
    first = [t[0].copy() for t in out]
    served = marginal_service(problem, first)
    serving = _serving(problem, first)
    demand = problem.demand_rps()
    gain = problem.retraining_gain()  # per slot
    end = (problem.window_slots - problem.window_offset).astype(np.float64)
    eligible = eligible_tenants(problem)
    if problem.retrain_instances > 0:  # the plan may already retrain a tenant on as many as it may
        eligible &= retraining_counts(len(problem.tenants), first) < problem.retrain_instances
    # What retraining each tenant at each GPU's placement earns; -inf where it cannot or the
    # placement is taken. Free placements are valued as idle instances (no inference to give
    # up); whether one still fits is checked when it is picked.
    room = [np.where(f >= 0, f, IDLE) for f in first]
    table = RetrainingTable(problem, room, served, gain, end, skip=keep)
    width = table.width

    def reprice(i: int) -> None:
        """Tenant i gave up an instance: each one it keeps is now worth more to it."""
        for (g, q), lost in zip(serving[i], _losses(problem, i, serving[i], demand[i])):
            table.reprice(g, q, lost)

    give_way = _GiveWay(problem, out, keep, width, serving, demand)

    def give_up(g: int, r: int) -> None:
        """The instance at placement r of GPU g stops serving its tenant (if it serves one):
        the tenant's other instances are now worth more to it."""
        tenant = inference_tenant(int(out[g][0, r]))
        if tenant >= 0:
            serving[tenant].remove((g, r))
            reprice(tenant)
            give_way.forget(tenant)

    def take(g: int, q: int, task: int) -> None:
        """Give placement q of GPU g the task; free placements it leaves no room for go."""
        new = out[g][0, q] < 0
        give_up(g, q)
        out[g][0, q] = task
        table.close(g, q)
        if new:
            block_unfit(g)
        give_way.refresh(g)

    def displace(g: int, q: int, task: int, gone: Sequence[int]) -> None:
        """Retrain at placement q of GPU g after the instances at ``gone`` give way."""
        for r in gone:
            give_up(g, r)
            out[g][0, r] = -1
            table.close(g, r)
        take(g, q, task)

    def block_unfit(g: int) -> None:
        gpu, occupied = problem.gpus[g], [int(r) for r in np.flatnonzero(out[g][0] >= 0)]
        for q in table.open_placements(g):
            if out[g][0, q] >= 0:
                continue
            if not fits_beside(gpu, occupied, int(q), give_way.layouts_of(g)):
                table.close(g, int(q))

    for g in range(len(problem.gpus)):
        block_unfit(g)
    # Keep retraining under way where it still pays (where the plan dropped its instance,
    # as long as nothing planned took its place).
    for g, gpu in enumerate(problem.gpus):
        for q in map(int, np.flatnonzero(gpu.current > IDLE)):
            j = int(gpu.current[q])
            i = (j - 2) // 2
            if j % 2 == 0 and eligible[i] and table.value(g, i, q) > 0:
                take(g, q, j)
                eligible[i] = False

    # Weighted shortest job first (Smith's rule): the most gain per unit of work picks first, so
    # that the fastest instance goes to the job that lifts accuracy soonest per slot it takes.
    for i in np.argsort(-gain / np.maximum(problem.work_left, 1e-9), kind="stable"):
        if not eligible[i]:
            continue
        if stop is not None and stop():
            break
        flat = table.values(int(i)).ravel()
        at = int(np.argmax(flat[::-1]))  # the most valuable; among equals the last, as it always was
        at = len(flat) - 1 - at
        floor = max(float(flat[at]), problem.reconfig_penalty)
        worth, g, q, gone = give_way.best(gain[i], end[i], table.finish(int(i)), floor)
        if worth > floor:
            displace(g, q, 2 + 2 * int(i), gone)
        elif flat[at] > problem.reconfig_penalty:
            take(*divmod(at, width), 2 + 2 * int(i))
    return tuple(out)


class _GiveWay:
    """Placements over a plan's first-period instances that a retraining may take, those
    instances giving way: free placements that overlap instances (none of them retraining)
    and fit beside the rest. Kept per GPU and refreshed when a GPU's instances change, and
    what the instances' tenants lose kept until their instances change, so that each tenant's
    best placement is found with array arithmetic (128 A100s / 256 tenants: tens of ms a
    pass, where looking at every placement for every tenant took 1.7 s;
    ``benchmarks/test_bench_starts.py`` holds it against that scan)."""

    def __init__(self, problem: Problem, plan: Sequence[np.ndarray], keep: Collection[int], width: int,
                 serving: Sequence[Sequence[tuple[int, int]]], demand: np.ndarray) -> None:
        self.problem, self.plan, self.keep = problem, plan, keep
        self.layouts: dict[tuple[str, tuple[Any, ...]], list[frozenset[int]]] = {}  # made when first needed
        self.layouts_by_gpu: dict[int, list[frozenset[int]]] = {}
        self.serving, self.demand = serving, demand
        self.count = np.zeros((len(problem.gpus), width))  # instances that give way; 0: not an option
        self.gone: list[dict[int, list[int]]] = [{} for _ in problem.gpus]
        self.lost = np.full((len(problem.gpus), width), np.nan)  # nan: not known (now)
        self.by_tenant: dict[int, set[tuple[int, int]]] = {}  # tenant: entries of `lost` it is in
        for g in range(len(problem.gpus)):
            self.refresh(g)

    def refresh(self, g: int) -> None:
        """GPU g's instances changed."""
        self.count[g] = 0
        self.lost[g] = np.nan
        self.gone[g] = {}
        if g in self.keep:
            return
        gpu, row = self.problem.gpus[g], self.plan[g][0]
        occupied = [int(r) for r in np.flatnonzero(row >= 0)]
        for q in np.flatnonzero(row < 0):
            gone = [r for r in occupied if gpu.memory_mask[r] & gpu.memory_mask[q]]
            if not gone or any(row[r] > IDLE and row[r] % 2 == 0 for r in gone):
                continue
            if fits_beside(gpu, [r for r in occupied if r not in gone], int(q), self.layouts_of(g)):
                self.gone[g][int(q)] = gone
                self.count[g, q] = len(gone)

    def layouts_of(self, g: int) -> list[frozenset[int]]:
        """GPU g's maximal layouts (:func:`migrator.planning.greedy.layout_sets`), made once
        per GPU model and placements (alike GPUs share them: 2048 GPUs took 0.5 s one by one)."""
        if g not in self.layouts_by_gpu:
            gpu = self.problem.gpus[g]
            key = (gpu.model, gpu.placements)
            if key not in self.layouts:
                self.layouts[key] = layout_sets(gpu)
            self.layouts_by_gpu[g] = self.layouts[key]
        return self.layouts_by_gpu[g]

    def forget(self, tenant: int) -> None:
        """The tenant's instances changed: what giving any of them way loses changed too."""
        for g, q in self.by_tenant.pop(tenant, set()):
            self.lost[g, q] = np.nan

    def _learn(self, g: int, q: int) -> None:
        """What the tenants of the instances under placement q of GPU g lose without them all."""
        gone = self.gone[g][q]
        spots = {(g, r) for r in gone}
        tenants = {inference_tenant(int(self.plan[g][0, r])) for r in gone} - {-1}
        self.lost[g, q] = sum(_joint_loss(self.problem, t, self.serving[t], spots, self.demand[t]) for t in tenants)
        for t in tenants:
            self.by_tenant.setdefault(t, set()).add((g, q))

    def best(self, gain: float, end: float, finish: np.ndarray, floor: float) -> tuple[float, int, int, list[int]]:
        """The placement where the retraining (``gain`` per slot, window ending at ``end``,
        done after ``finish[g, q]`` slots) is worth most and more than ``floor``: (worth, GPU,
        placement, the placements that give way), worth ``-inf`` where none is. Worth as
        :func:`migrator.planning.greedy.window_value` values it, the inference given up being what the
        tenants of the instances that give way lose without them all (:func:`_joint_loss`),
        less a reconfiguration penalty for each of those instances."""
        with np.errstate(invalid="ignore"):
            upper = gain * (end - finish) - self.problem.reconfig_penalty * self.count
        upper[(self.count == 0) | ~(finish < end)] = -np.inf
        maybe = upper > floor  # no loss can make the others worth more
        for g, q in zip(*np.nonzero(maybe & np.isnan(self.lost))):
            self._learn(int(g), int(q))
        worth = np.where(maybe, upper - self.lost * self.problem.slot_s * np.where(maybe, finish, 0.0), -np.inf)
        g, q = (int(v) for v in np.unravel_index(int(np.argmax(worth)), worth.shape))
        if not worth[g, q] > floor:
            return -np.inf, -1, -1, []
        return float(worth[g, q]), g, q, self.gone[g][q]
