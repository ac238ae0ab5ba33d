"""What a fleet of alike GPUs could earn in a period with whole instances: a bound on Goodput.

The split's bound (:mod:`migrator.planning.split_bound`) counts instances per (task, profile)
continuously, so a tenant that needs two and a half 1g instances of capacity gets exactly
that, and the fleet's slices go round with nothing wasted. A real plan gives each tenant whole
instances; on a loaded fleet the waste is what keeps the relaxation percent above the optimum
(docs/model.md, "The fleet's period bounds"). Row (19) puts it back: in every period, the
Goodput of all tenants is at most what the fleet could earn with each tenant given a whole
number of instances, every instance serving the whole period at the best accuracy its
requests may have.

The bound relaxes the layouts to the fleet's compute slices: a class of ``m`` GPUs with ``s``
slices each offers ``m s`` slices, and each tenant takes any whole number of instances of any
profiles whose slices add up within what the tenants before it left. Every plan's instances fit
that (a layout uses at most its GPU's slices), so the maximum over it bounds the plan's value;
it is a knapsack over tenants on the slice count, solved exactly by dynamic programming.
Classes of different GPUs each face all of the demand (``min(a, x + y) <= min(a, x) + min(a,
y)``), as the per-GPU period bounds (14) do.
"""

from __future__ import annotations

import numpy as np

from .planner_problem import GpuProblem, Problem, per_profile

__all__ = ["MAX_SPLIT_WORK", "fleet_period_bounds", "most_capacity", "whole_instance_value"]

#: Steps (tenants x slices squared) beyond which a class's slices are not dealt out among its
#: tenants: 64 tenants on 32 A100s (3.2 million steps) took 47 ms here, and from there on up
#: the fleets measured could serve every request (where the row cannot bind anyway).
MAX_SPLIT_WORK = 4e6


def fleet_period_bounds(problem: Problem, accuracy: np.ndarray,
                        classes: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per period (J,), the most the fleet could earn with whole instances, and what every
    request served would earn. ``accuracy`` (N, T): the most a request of each tenant and
    slot may earn; ``classes``: lists of alike GPUs (same model and placements)."""
    arrivals = np.asarray(problem.arrivals, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    starts = problem.period_starts()
    everything = np.add.reduceat(accuracy * arrivals, starts, axis=1).sum(axis=0)
    most = np.zeros(len(problem.periods))
    # More capacity than a tenant's busiest slot earns nothing more.
    enough = arrivals.max(axis=1, initial=0.0) / problem.slot_s
    for members in classes:
        gpu = problem.gpus[members[0]]
        capacity = most_capacity(gpu, len(members), enough) * problem.slot_s
        for j, (first, length) in enumerate(zip(starts, problem.periods)):
            slots = slice(int(first), int(first) + int(length))
            value = whole_instance_value(capacity, arrivals[:, slots], accuracy[:, slots])
            most[j] += _best_split(value)
    return most, everything


def most_capacity(gpu: GpuProblem, gpus: int, enough: np.ndarray | None = None) -> np.ndarray:
    """(N, S + 1): the most requests per second each tenant could be served by whole
    instances using at most ``c`` of the class's ``S = gpus x compute slices`` slices, any
    number of instances of any profile (its best placement's capacity). Once every tenant
    has ``enough`` (N,), the figures beyond are left at that (the search stops: a pooled
    tenant at 512 GPUs has thousands of slices to go through, which it never needs)."""
    slices = gpus * int(gpu.compute_slices)
    rate = per_profile(gpu, gpu.capacity_rps)
    width = per_profile(gpu, np.asarray(gpu.compute, dtype=np.float64)[None, :])[0].astype(np.int64)
    used = [p for p in range(len(width)) if width[p] > 0 and (rate[:, p] > 0).any()]
    best = np.zeros((rate.shape[0], slices + 1))
    for c in range(1, slices + 1):
        best[:, c] = best[:, c - 1]
        for p in used:
            if width[p] <= c:
                best[:, c] = np.maximum(best[:, c], best[:, c - width[p]] + rate[:, p])
        if enough is not None and (best[:, c] >= enough).all():
            best[:, c + 1:] = best[:, c : c + 1]
            break
    return best


def whole_instance_value(capacity: np.ndarray, arrivals: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """(N, S + 1): what each tenant earns over the period's slots (``arrivals``, ``accuracy``:
    (N, L)) with ``capacity`` (N, S + 1) requests per slot from ``c`` slices."""
    served = np.minimum(arrivals[:, None, :], capacity[:, :, None])
    return (accuracy[:, None, :] * served).sum(axis=2)


def _best_split(value: np.ndarray) -> float:
    """The most the tenants earn together with their ``value`` (N, S + 1) for each slice
    count, the counts adding up to at most S (max-plus convolution over tenants). Where each
    tenant's full value fits within S together, that sum is the answer at once; the sum is
    also returned, a looser bound, where the convolution would take more than
    ``MAX_SPLIT_WORK`` steps."""
    slices = value.shape[1] - 1
    full = value[:, -1]
    needed = np.argmax(value >= full[:, None] * (1 - 1e-12), axis=1)
    if needed.sum() <= slices or len(value) * (slices + 1) ** 2 > MAX_SPLIT_WORK:
        return float(full.sum())
    best = value[0]
    for own in value[1:]:
        best = np.array([np.max(best[: c + 1] + own[c::-1]) for c in range(slices + 1)])
    return float(best[-1])
