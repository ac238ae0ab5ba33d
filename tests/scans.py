"""Plain scans of every placement of every GPU: the answers that the planning stage's faster
searches (grouping alike GPUs, caching losses) must reproduce. Tests hold the searches to them
and the benchmarks time the searches against them."""

from __future__ import annotations

import numpy as np

from migrator.planning.greedy import fits_beside


def packed_by_scanning(problem):
    """packed_tasks's first period by its rule, looking at every placement of every GPU
    for every tenant (the function groups alike GPUs instead)."""
    from migrator.planning.greedy import _right_size

    demand = problem.demand_rps()
    first = [np.full(len(gpu.placements), -1, dtype=np.int64) for gpu in problem.gpus]
    for i in np.lexsort((-demand * problem.acc_before, -_right_size(problem, demand))):
        options = []
        for g, gpu in enumerate(problem.gpus):
            occupied = [int(q) for q in np.flatnonzero(first[g] >= 0)]
            left = gpu.compute_slices - int(gpu.compute[occupied].sum())
            for q in range(len(gpu.placements)):
                cap = gpu.capacity_rps[i, q]
                if first[g][q] >= 0 or cap <= 0 or not fits_beside(gpu, occupied, q):
                    continue
                options.append((0, int(gpu.compute[q]), left - int(gpu.compute[q]), g, q) if cap >= demand[i]
                               else (1, -float(cap), left - int(gpu.compute[q]), g, q))
        if demand[i] > 0 and options:
            *_, g, q = min(options)
            first[g][q] = 1 + 2 * int(i)
    return first


def give_way_by_scanning(problem, plan, serving, gain, end, finish, floor):
    """_GiveWay.best's answer, looking at every free placement of every GPU afresh."""
    from migrator.planning.planner_problem import inference_tenant
    from migrator.planning.retraining import _joint_loss

    demand = problem.demand_rps()
    best = (-np.inf, -1, -1)
    for g, gpu in enumerate(problem.gpus):
        row = plan[g][0]
        occupied = [int(r) for r in np.flatnonzero(row >= 0)]
        for q in np.flatnonzero(row < 0):
            gone = [r for r in occupied if gpu.memory_mask[r] & gpu.memory_mask[q]]
            if not gone or any(row[r] > 0 and row[r] % 2 == 0 for r in gone) or not finish[g, q] < end:
                continue
            if not fits_beside(gpu, [r for r in occupied if r not in gone], int(q)):
                continue
            tenants = {inference_tenant(int(row[r])) for r in gone} - {-1}
            lost = sum(_joint_loss(problem, t, serving[t], {(g, r) for r in gone}, demand[t]) for t in tenants)
            worth = gain * (end - finish[g, q]) - lost * problem.slot_s * finish[g, q] - problem.reconfig_penalty * len(gone)
            if worth > max(floor, best[0]):
                best = (worth, g, int(q))
    return best


def best_candidate_by_scanning(problem, gpu, current, layouts, pattern, remaining, accuracy):
    """greedy._best_candidate's pick by working out every candidate's tasks (the current
    layout, every maximal layout, the best pattern) and keeping the first worth most (the
    function cuts the layouts whose ceiling is below the best so far instead)."""
    from migrator.planning import greedy

    every = [(current, None)]
    every += [(chosen, None) for chosen in layouts]
    if pattern is not None:
        every.append(([int(q) for q in np.flatnonzero(pattern > 0)], pattern))
    best = None
    for chosen, given in every:
        tasks, served, left = greedy._assign(gpu, list(chosen), remaining, accuracy, given)
        worth = greedy._worth(problem, gpu, tasks, served)
        if best is None or worth > best[0]:
            best = (worth, tasks, left, served)
    return best
