"""Random planning problems shared by the planner's cross-checks (exact, pruning, strengthening,
terminal value, split bound): small enough for HiGHS to prove optimal, varied enough that every
rule of the program binds somewhere."""

from __future__ import annotations

import dataclasses

import numpy as np

from brute_force import Case
from migrator import Geometry
from migrator.planning.planner_problem import TenantState, default_periods
from migrator.workload.tenant import Tenant

MODELS = ("resnet50", "vit_b16", "bert_base", "distilbert", "minilm_l12", "mpnet_base")


def small_random_case(seed: int, placements_per_gpu: int | None = 4) -> Case:
    """1-2 GPUs (A100-40GB, H100-80GB), 2-4 tenants, horizon 4-8 in default periods, a random
    current layout and retraining state; each GPU keeps its current placements plus random
    others, ``placements_per_gpu`` in all (None: every planning placement)."""
    rng = np.random.default_rng(seed)
    n, horizon, n_gpus = int(rng.integers(2, 5)), int(rng.integers(4, 9)), int(rng.integers(1, 3))
    gpus = tuple(str(rng.choice(["A100-40GB", "H100-80GB"])) for _ in range(n_gpus))
    slot = int(rng.integers(0, 12))
    tenants, progress = [], {}
    for i in range(n):
        window = int(rng.integers(2, 7)) if rng.random() < 0.7 else None
        work = float(rng.uniform(0.1, 1.5)) if window else 0.0
        before = float(rng.uniform(0.5, 0.8))
        after = before + float(rng.uniform(0.05, 0.2)) if window else before
        tenants.append(Tenant(f"t{i}", str(rng.choice(MODELS)), float(rng.choice([50, 100, 200])),
                              window_s=window, work_gpu_s=work, accuracy_before=before, accuracy_after=after))
        if window and slot % window and rng.random() < 0.5:
            progress[f"t{i}"] = TenantState(float(rng.uniform(0, work)), bool(rng.random() < 0.3))
    names = [t.name for t in tenants]
    tasks = ["idle"] + [f"{x}:infer" for x in names] + [f"{t.name}:retrain" for t in tenants if t.retrains]
    layouts, assignments = [], []
    for gpu in gpus:
        geometry = Geometry.for_gpu(gpu)
        candidates = [lay for lay in geometry.layouts() if "+" not in lay and "1g.10gb" not in lay]
        layout = str(rng.choice(candidates)) if rng.random() < 0.7 else ""
        layouts.append(layout)
        assignments.append({str(p): str(rng.choice(tasks)) for p in geometry.validate(layout)})
    case = Case(
        f"small-random-{seed}", tuple(tenants),
        np.round(rng.uniform(0, 1500, size=(n, horizon)) * rng.uniform(0.2, 1.5, size=(n, 1))),
        gpus=gpus, layouts=tuple(layouts), assignments=tuple(assignments),
        setup_s=float(rng.choice([0.0, 0.5, 1.0, 1.5])), reconfig_penalty=float(rng.choice([0.0, 1.0, 10.0])),
        slot=slot, progress=progress, periods=default_periods(horizon),
    )
    if placements_per_gpu is None:
        return case
    full = case.problem()
    keep = []
    for gpu in full.gpus:
        current = [str(pl) for q, pl in enumerate(gpu.placements) if gpu.current[q] >= 0]
        others = [str(pl) for q, pl in enumerate(gpu.placements) if gpu.current[q] < 0]
        extra = rng.choice(others, size=max(0, min(len(others), placements_per_gpu - len(current))), replace=False)
        keep.append(tuple(current) + tuple(str(p) for p in extra))
    return dataclasses.replace(case, placements=tuple(keep))
