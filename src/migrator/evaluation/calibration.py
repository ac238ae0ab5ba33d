"""The planner's analytic SLO capacity beside the request-level grader's, per model, profile and SLO.

``python -m migrator.evaluation.calibration [--gpu A100-40GB] [--slos 25,50,100,200]`` prints the
Markdown table of docs/goodput.md ("Calibration"). The request-level capacity of one instance is
the highest Poisson arrival rate at which the grader's server (greedy batching up to the
grader's batch cap, ``requests.batch_cap``, no queue timeout) keeps ``percentile`` per cent of
``n_requests`` requests within the SLO, and, beside it, the same with the best of the profiled
batch sizes as the cap (the best greedy server); it is found by bisection on the rate, every rate replaying the same
unit-rate arrivals rescaled (common random numbers, so that the estimate moves smoothly with
the rate). This module only reports: the planner's capacity model lives in ``workload/`` and
``planning/`` and is calibrated there.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..geometry.geometry import Geometry
from ..workload.goodput import slo_capacity
from ..workload.models import builtin_models
from ._request_kernels import replay_tenant
from .requests import batch_cap

__all__ = ["CalibrationRow", "calibration_table", "main", "request_capacity", "to_markdown"]


@dataclass(frozen=True)
class CalibrationRow:
    model: str
    gpu: str
    profile: str
    slo_ms: float
    batch1_ms: float
    analytic_rps: float
    request_rps: float
    cap: int
    best_rps: float
    best_cap: int

    @property
    def ratio(self) -> float:
        """Analytic over request-level capacity (NaN where the request level serves nothing)."""
        return self.analytic_rps / self.request_rps if self.request_rps > 0 else math.nan


def request_capacity(
    batch_sizes: Sequence[int], service_ms: Sequence[float], slo_ms: float, *, percentile: float = 99.0,
    max_batch: int | None = None, n_requests: int = 40_000, seed: int = 0, steps: int = 18,
) -> float:
    """Highest Poisson rate (req/s) at which one instance of the request-level grader keeps
    ``percentile`` per cent of requests within ``slo_ms`` (0 when even a trickle misses it).

    ``n_requests`` requests per rate; ``steps`` bisections on the logarithm of the rate
    between 0.1 % and 100 % of the peak throughput (largest batch / its service time).
    """
    sizes = np.asarray(batch_sizes, dtype=np.int64)
    service = np.asarray(service_ms, dtype=np.float64) / 1000.0
    if sizes.ndim != 1 or sizes.shape != service.shape or sizes.size == 0 or np.any(service <= 0):
        raise ConfigError("batch_sizes and service_ms must be 1-D, of one non-zero length, service > 0",
                          field="service_ms")
    cap = batch_cap(sizes, service, slo_ms / 1000.0, max_batch)
    unit = np.cumsum(np.random.default_rng(seed).exponential(1.0, n_requests))
    arrays = (np.full(1, -np.inf), np.full(1, np.inf), sizes.reshape(1, -1), service.reshape(1, -1),
              np.array([sizes.size], dtype=np.int64), np.array([max(cap, 1)], dtype=np.int64))
    slo_s = slo_ms / 1000.0
    q = percentile / 100.0

    def meets(rate: float) -> bool:
        arrival = unit / rate
        _, done, _ = replay_tenant(arrival, *arrays, np.inf)
        return float(np.quantile(done - arrival, q)) <= slo_s

    peak = float(np.max(sizes / service))
    lo, hi = math.log(peak * 1e-3), math.log(peak)
    if not meets(math.exp(lo)):
        return 0.0
    if meets(math.exp(hi)):
        return math.exp(hi)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if meets(math.exp(mid)) else (lo, mid)
    return math.exp(lo)


def calibration_table(
    gpu: str = "A100-40GB", slos_ms: Sequence[float] = (25, 50, 100, 200), *,
    models: Mapping[str, Any] | None = None, percentile: float = 99.0, n_requests: int = 40_000,
) -> list[CalibrationRow]:
    """Analytic and request-level capacity of every model of the table on every (base)
    profile of ``gpu`` it fits, at each SLO."""
    tables = builtin_models() if models is None else models
    geometry = Geometry.for_gpu(gpu)
    profiles = sorted({p.name for p in geometry.profiles if "+" not in p.name and "-" not in p.name},
                      key=lambda name: (int(name.split("g")[0]), name))
    rows = []
    for name in sorted(tables):
        table = tables[name]
        for profile in profiles:
            if not table.fits(gpu, profile):
                continue
            service = table.inference_ms(gpu, profile)
            for slo in slos_ms:
                analytic = slo_capacity(name, profile, slo, gpu=gpu, percentile=percentile, models=tables)
                sizes = table.batch_sizes
                cap = batch_cap(np.asarray(sizes), np.asarray(service) / 1000.0, slo / 1000.0)
                by_cap = {b: request_capacity(sizes, service, slo, percentile=percentile, max_batch=b,
                                              n_requests=n_requests) for b in sizes}
                best = max(by_cap, key=lambda b: (by_cap[b], -b))
                rows.append(CalibrationRow(name, gpu, profile, float(slo), float(service[0]), analytic,
                                           by_cap[cap], cap, by_cap[best], best))
    return rows


def to_markdown(rows: Sequence[CalibrationRow]) -> str:
    lines = ["| model | profile | SLO (ms) | s(1) (ms) | analytic (req/s) | request-level (req/s), cap "
             "| analytic / request | best cap (req/s), cap |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = "-" if math.isnan(r.ratio) else f"{r.ratio:.2f}"
        lines.append(f"| {r.model} | {r.profile} | {r.slo_ms:g} | {r.batch1_ms:.2f} | {r.analytic_rps:,.0f} | "
                     f"{r.request_rps:,.0f}, {r.cap} | {ratio} | {r.best_rps:,.0f}, {r.best_cap} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", default="A100-40GB")
    parser.add_argument("--slos", default="25,50,100,200", help="SLOs in ms, comma-separated")
    parser.add_argument("--requests", type=int, default=40_000, help="requests replayed per rate")
    args = parser.parse_args(argv)
    slos = [float(s) for s in args.slos.split(",") if s.strip()]
    print(to_markdown(calibration_table(args.gpu, slos, n_requests=args.requests)))  # noqa: T201 (a script)


if __name__ == "__main__":
    main()
