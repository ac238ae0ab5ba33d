"""Scenarios of the sizes the planner's latency goals name (issue: 1 A100 with 4 tenants;
8 GPUs with 16 tenants), built from the default scenario's tenants."""

from __future__ import annotations

import copy
from typing import Any

import migrator


def sized(n_gpus: int, n_tenants: int, horizon: int = 30) -> migrator.Scenario:
    """``n_gpus`` A100-40GB and ``n_tenants`` tenants cycling the default scenario's four,
    their rates scaled so that the load per GPU stays that of the default scenario."""
    base = migrator.Scenario.default().to_dict()
    tenants: list[dict[str, Any]] = []
    for i in range(n_tenants):
        t = copy.deepcopy(base["tenants"][i % len(base["tenants"])])
        t["name"] = f"{t['name']}-{i}"
        t["arrivals"]["mean_rps"] *= (n_gpus / 2) / (n_tenants / len(base["tenants"]))
        t["arrivals"]["seed"] = i
        tenants.append(t)
    base["tenants"] = tenants
    base["gpus"] = [{"model": "A100-40GB", "count": n_gpus, "layout": "3g.20gb@0,3g.20gb@4"}]
    base["planner"]["horizon"] = horizon
    return migrator.Scenario.from_dict(base)
