"""The planner's analytic SLO capacity beside the request-level grader's, per model, profile and SLO.

``python -m migrator.evaluation.calibration [--gpu A100-40GB] [--slos 25,50,100,200] [--plot PATH]``
prints the Markdown summary and table of docs/goodput.md ("Calibration"). The request-level
capacity of one instance is the highest Poisson arrival rate at which the grader's server
(greedy batching up to the grader's batch cap, ``requests.batch_cap``, no queue timeout) keeps
``percentile`` per cent of ``n_requests`` requests within the SLO, and, beside it, the same with
the best of the profiled batch sizes as the cap (the best greedy server); it is found by
bisection on the rate, every rate replaying the same unit-rate arrivals rescaled (common random
numbers, so that the estimate moves smoothly with the rate). The criterion of issue 17: wherever
the SLO is at least twice the batch-1 service time (``covered``), the analytic capacity is at
most the request-level one and at least 0.9 of it (``meets``).
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

__all__ = ["CalibrationRow", "calibration_table", "main", "plot_calibration", "request_capacity", "summary_markdown",
           "to_markdown"]


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

    @property
    def covered(self) -> bool:
        """The criterion applies: the SLO is at least twice the batch-1 service time."""
        return self.slo_ms >= 2.0 * self.batch1_ms

    @property
    def meets(self) -> bool:
        """Conservative and within 10 %: 0.9 x request-level <= analytic <= request-level."""
        return 0.9 * self.request_rps <= self.analytic_rps <= self.request_rps


def request_capacity(
    batch_sizes: Sequence[int] | np.ndarray, service_ms: Sequence[float] | np.ndarray, slo_ms: float, *,
    percentile: float = 99.0,
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
    models: Mapping[str, Any] | None = None, percentile: float = 99.0, n_requests: int = 1_000_000,
    best_requests: int | None = None,
) -> list[CalibrationRow]:
    """Analytic and request-level capacity of every model of the table on every (base)
    profile of ``gpu`` it fits, at each SLO: ``n_requests`` requests per rate with the
    grader's cap, ``best_requests`` (default ``n_requests``) per rate for each other cap, the
    best cap being the best of them all. Profiles with the same service times (1g.5gb and
    1g.10gb) are simulated once."""
    tables = builtin_models() if models is None else models
    geometry = Geometry.for_gpu(gpu)
    profiles = sorted({p.name for p in geometry.profiles if "+" not in p.name and "-" not in p.name},
                      key=lambda name: (int(name.split("g")[0]), name))
    measured: dict[tuple[Any, ...], float] = {}

    def measure(sizes: Sequence[int] | np.ndarray, service: Sequence[float] | np.ndarray, slo: float, cap: int,
                n: int) -> float:
        key = (tuple(sizes), tuple(float(x) for x in service), slo, cap, n)
        if key not in measured:
            measured[key] = request_capacity(sizes, service, slo, percentile=percentile, max_batch=cap,
                                             n_requests=n)
        return measured[key]

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
                others = n_requests if best_requests is None else best_requests
                by_cap = {b: measure(sizes, service, slo, b, n_requests if b == cap else others) for b in {*sizes, cap}}
                best = max(by_cap, key=lambda b: (by_cap[b], -b))
                rows.append(CalibrationRow(name, gpu, profile, float(slo), float(service[0]), analytic,
                                           by_cap[cap], cap, by_cap[best], best))
    return rows


def summary_markdown(rows: Sequence[CalibrationRow]) -> str:
    """Per SLO: analytic / request-level (median, min, max) and how many cells the criterion
    covers and how many of those meet it."""
    lines = ["| SLO | cells | covered | meet | median | min | max |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for slo in sorted({r.slo_ms for r in rows}):
        at = [r for r in rows if r.slo_ms == slo]
        ratios = np.array([r.ratio for r in at if not math.isnan(r.ratio)])
        covered = [r for r in at if r.covered]
        stats = (f"{np.median(ratios):.3f} | {ratios.min():.3f} | {ratios.max():.3f}" if ratios.size
                 else "- | - | -")
        lines.append(f"| {slo:g} ms | {len(at)} | {len(covered)} | {sum(r.meets for r in covered)} | {stats} |")
    covered = [r for r in rows if r.covered]
    lines.append(f"\n{sum(r.meets for r in covered)} of the {len(covered)} cells with an SLO of at least twice "
                 f"the batch-1 time meet the criterion (of {len(rows)} cells).")
    return "\n".join(lines)


def plot_calibration(rows: Sequence[CalibrationRow], path: str) -> None:
    """Log-log scatter of analytic against request-level capacity, one colour per SLO, with
    the diagonal and the 0.9 line; cells the criterion does not cover are hollow."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError("the plot needs matplotlib: pip install 'migrator[plot]'", field="plot") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for slo in sorted({r.slo_ms for r in rows}):
        at = [r for r in rows if r.slo_ms == slo and r.request_rps > 0 and r.analytic_rps > 0]
        for covered in (True, False):
            pts = [r for r in at if r.covered == covered]
            if pts:
                ax.scatter([r.request_rps for r in pts], [r.analytic_rps for r in pts], s=18,
                           label=f"{slo:g} ms" if covered else None, facecolors=None if covered else "none",
                           edgecolors=f"C{sorted({q.slo_ms for q in rows}).index(slo)}",
                           c=None if not covered else f"C{sorted({q.slo_ms for q in rows}).index(slo)}")
    values = [v for r in rows for v in (r.request_rps, r.analytic_rps) if v > 0]
    span = np.array([min(values) / 1.5, max(values) * 1.5])
    ax.plot(span, span, "k-", lw=0.8, label="analytic = request-level")
    ax.plot(span, 0.9 * span, "k:", lw=0.8, label="0.9 x request-level")
    ax.set(xscale="log", yscale="log", xlabel="request-level capacity (req/s)", ylabel="analytic capacity (req/s)",
           title=f"SLO capacity of one instance, {rows[0].gpu} (hollow: SLO < 2 s(1))")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests replayed per rate (grader's cap)")
    parser.add_argument("--best-requests", type=int, default=100_000, help="requests per rate and cap (best cap)")
    parser.add_argument("--plot", help="also write the scatter plot to this PNG file")
    args = parser.parse_args(argv)
    slos = [float(s) for s in args.slos.split(",") if s.strip()]
    rows = calibration_table(args.gpu, slos, n_requests=args.requests, best_requests=args.best_requests)
    print(summary_markdown(rows) + "\n\n" + to_markdown(rows))  # noqa: T201 (a script)
    if args.plot:
        plot_calibration(rows, args.plot)


if __name__ == "__main__":
    main()
