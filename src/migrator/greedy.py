"""A quick, always valid plan to start the solver from (and to fall back on).

For each GPU in turn, every maximal set of its planning placements (and its current layout)
is given tasks greedily, largest instance first, each to the tenant whose remaining demand it
serves best, weighted by accuracy; the candidate worth most over the horizon, less what its
new instances lose while they set up, is kept and its service taken off the demand. Every
period gets the same tasks. It knows nothing of retraining: the solver adds that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from .planner_problem import IDLE, GpuProblem, Problem

__all__ = ["greedy_tasks", "maximal_sets"]


def _core_geometry(gpu: GpuProblem) -> Any:
    """The C++ geometry of just the GPU's planning placements, and the placement index of
    each of its slots."""
    profiles = []
    for p in range(len(gpu.max_count)):
        members = [q for q in range(len(gpu.placements)) if int(gpu.profile[q]) == p]
        size = bin(int(gpu.memory_mask[members[0]])).count("1")
        profiles.append(
            _core.Profile(
                name=gpu.placements[members[0]].profile,
                compute_slices=int(gpu.compute[members[0]]),
                memory_slices=size,
                memory_mib=0,
                max_count=int(gpu.max_count[p]),
                placements=[(gpu.placements[q].start, size) for q in members],
                engines=tuple(int(e) for e in gpu.engines[members[0]]),
            )
        )
    memory_slices = max(int(m).bit_length() for m in gpu.memory_mask)
    geometry = _core.Geometry(
        name=gpu.model, memory_slices=memory_slices, compute_slices=int(gpu.compute_slices),
        profiles=profiles, engine_totals=tuple(int(e) for e in gpu.engine_totals),
    )
    index = {(int(gpu.profile[q]), gpu.placements[q].start): q for q in range(len(gpu.placements))}
    return geometry, [index[(p, start)] for p, start, _ in geometry.slots()]


def maximal_sets(gpu: GpuProblem) -> list[list[int]]:
    """Every valid set of the GPU's placements to which none of them can be added (the
    geometry core's enumeration, on the planning placements only)."""
    geometry, placement_of = _core_geometry(gpu)
    return [sorted(placement_of[s] for s in layout) for layout in geometry.enumerate(maximal=True)]


def _assign(gpu: GpuProblem, chosen: list[int], remaining: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tasks for the chosen placements, what each serves (req/s) and the demand left."""
    tasks = np.full(len(gpu.placements), -1, dtype=np.int64)
    served = np.zeros(len(gpu.placements))
    left = remaining.copy()
    for q in sorted(chosen, key=lambda q: -int(gpu.compute[q])):
        take = np.minimum(left, gpu.capacity_rps[:, q])
        i = int(np.argmax(take * accuracy)) if len(take) else 0
        if len(take) and take[i] * accuracy[i] > 0:
            tasks[q] = 1 + 2 * i
            served[q] = take[i] * accuracy[i]
            left[i] -= take[i]
        else:
            tasks[q] = IDLE
    return tasks, served, left


def _worth(problem: Problem, gpu: GpuProblem, tasks: np.ndarray, served: np.ndarray) -> float:
    """Goodput per horizon, less what new instances lose while setting up."""
    horizon_s = problem.horizon * problem.slot_s
    new = (tasks >= 0) & (tasks != gpu.current)
    setup = min(problem.setup_s, horizon_s)
    return float(served.sum() * horizon_s - served[new].sum() * setup)


def greedy_tasks(problem: Problem) -> tuple[np.ndarray, ...]:
    """Tasks (periods x placements, -1 for no instance) for every GPU, as the solver takes them."""
    remaining = problem.arrivals.mean(axis=1) / problem.slot_s
    accuracy = problem.acc_before
    out = []
    for gpu in problem.gpus:
        current = [q for q in range(len(gpu.placements)) if gpu.current[q] >= 0]
        candidates = ([current] if current else []) + maximal_sets(gpu)
        best: Any = None
        for chosen in candidates:
            tasks, served, left = _assign(gpu, chosen, remaining, accuracy)
            worth = _worth(problem, gpu, tasks, served)
            if best is None or worth > best[0]:
                best = (worth, tasks, left)
        _, tasks, remaining = best
        out.append(np.tile(tasks, (len(problem.periods), 1)))
    return tuple(out)
