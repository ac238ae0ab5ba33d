"""Scenarios for tests: the sizes the planner's latency goals name (issue: 1 A100 with 4
tenants; 8 GPUs with 16 tenants), built from the default scenario's tenants, and a small
one-GPU, two-tenant scenario for the simulator."""

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


def small(duration_s: float = 16, *, rates=(900.0, 300.0), shift_at: float | None = None, retrain: bool = True,
          layout: str = "3g.20gb@0,3g.20gb@4", horizon: int = 4) -> migrator.Scenario:
    """One A100, two tenants; with ``shift_at`` their loads swap at that time."""

    def arrivals(rate: float, other: float) -> dict:
        if shift_at is None:
            return {"synthetic": "poisson", "mean_rps": rate}
        return {"synthetic": "step", "mean_rps": rate, "steps": [[shift_at, other / rate]]}

    tenant = {"window_s": 8, "work_gpu_s": 2, "accuracy_before": 0.7, "accuracy_after": 0.9} if retrain else {}
    return migrator.Scenario.from_dict({
        "name": "small", "slot_s": 1.0, "duration_s": duration_s, "seed": 3,
        "gpus": [{"model": "A100-40GB", "count": 1, "layout": layout}],
        "tenants": [
            {"name": "a", "model": "resnet50", "slo_ms": 100, "arrivals": arrivals(rates[0], rates[1]), **tenant},
            {"name": "b", "model": "bert_base", "slo_ms": 100, "arrivals": arrivals(rates[1], rates[0]), **tenant},
        ],
        "planner": {"horizon": horizon, "setup_s": 2.0, "time_limit_s": 5.0, "mip_gap": 0.0},
    })


def inference_only(scenario: migrator.Scenario) -> migrator.Scenario:
    """The scenario with no tenant retraining (no window, no accuracy gain)."""
    table = scenario.to_dict()
    for tenant in table["tenants"]:
        tenant.pop("window_s", None)
        tenant.pop("work_gpu_s", None)
        tenant["accuracy_after"] = tenant["accuracy_before"]
    return migrator.Scenario.from_dict(table)
