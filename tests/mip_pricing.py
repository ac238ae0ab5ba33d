"""The configuration master's pricing as a single-GPU MIP (the per-GPU block of the program,
rows 1-7, built by the reference builder, under the duals' objective): what the master priced
with before the C++ dynamic programme, kept as an independent reference for it."""

from __future__ import annotations

import dataclasses

import highspy
import numpy as np

from migrator.planning._ilp_reference import (
    _compute,
    _downtime,
    _engines,
    _gpu_variables,
    _memory,
    _Model,
    _one_task_per_placement,
    _profile_counts,
    _transitions,
)
from migrator.planning.highs import new_highs
from migrator.planning.planner_problem import IDLE


class MipPricing:
    def __init__(self, problem, gpu) -> None:
        self.problem, self.gpu = problem, gpu
        self.h = new_highs()
        self.m = _Model(dataclasses.replace(problem, gpus=(gpu,)), self.h)
        _gpu_variables(self.m)
        for rows in (_one_task_per_placement, _memory, _compute, _profile_counts, _engines, _transitions, _downtime):
            rows(self.m)
        self.n_columns = self.h.getNumCol()

    def best(self, capacity, progress, limit):
        """The timeline of most reduced cost (before the convexity dual) and its value."""
        cost = np.zeros(self.n_columns)
        p, gpu, m = self.problem, self.gpu, self.m
        for (j, _q, k), z in m.z[0].items():
            if k > IDLE and (k - 1) % 2:
                cost[z.index] -= limit[(k - 1) // 2, j]
        for n in m.n[0].values():
            cost[n.index] -= p.reconfig_penalty
        for t in range(p.horizon):
            for q in range(len(gpu.placements)):
                for i in range(len(p.tenants)):
                    for k, value in ((1 + 2 * i, capacity[i, t] * gpu.capacity_rps[i, q]),
                                     (2 + 2 * i, progress[i, t] * gpu.retrain_speed[i, q])):
                        share = m.E(0, t, q, k)
                        if share is not None and value:
                            cost[share.index] += p.slot_s * value
        self.h.changeColsCost(self.n_columns, np.arange(self.n_columns, dtype=np.int32), cost)
        self.h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        self.h.setOptionValue("mip_rel_gap", 0.0)
        self.h.run()
        values = np.asarray(self.h.getSolution().col_value)
        tasks = np.full((len(p.periods), len(gpu.placements)), -1, dtype=np.int64)
        for (j, q, k), z in m.z[0].items():
            if values[z.index] > 0.5:
                tasks[j, q] = k
        return tasks, float(self.h.getInfo().objective_function_value)
