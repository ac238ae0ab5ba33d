"""Several policies on several seeds of one scenario: runs, means and spreads, files.

``compare(scenario, ["migrator", "static"], seeds=[0, 1, 2])`` replays every policy on the
same arrivals of each seed, and :class:`Comparison` summarises them as the report needs
(``results.json``: ``{"policies": {name: {"goodput", "slo_attainment", "mean_accuracy",
"reconfigurations", "decision_ms_p50", "decision_ms_p99"}}}``, means over seeds, with the
standard deviations and per-seed figures beside them).

Per tenant and over seeds (issue 17, item 4): each policy's entry has ``"tenants"`` (per
tenant: Goodput, SLO attainment, mean accuracy, the requests that weigh them, ``"arrived"``
and ``"within"``, means over seeds, with ``"ci95"``), ``"worst_slo_attainment"`` (the lowest
tenant's, per seed, then averaged), ``"worst_tenant"`` and ``"ci95"``: the half-width of the
95 % Student-t confidence interval of each mean over seeds (``migrator.evaluation.stats``;
None with one seed). Each grading in ``"gradings"`` carries the same per-tenant figures.

Every run is graded twice (``migrator.evaluation.simulate``): the headline figures are those of
the comparison's ``grader`` (``"request"`` by default), and ``results.json`` gives both beside
them: ``{"grader": "request", "policies": {name: {..., "gradings": {"request": {"goodput",
"slo_attainment", "mean_accuracy", "std": {...}}, "slot": {...}}}}}``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._files import write_atomically
from ..errors import ConfigError
from ..planning.planner import json_default
from ..workload.scenario import Scenario
from .latency import check_latency
from .policy import POLICY_NAMES, Policy, make_policy
from .requests import GRADERS
from .simulate import TENANT_METRICS, SimResult, check_grader, simulate
from .stats import CI_WORDS, mean_ci

__all__ = ["GRADING_METRICS", "METRICS", "WORST", "Comparison", "compare", "parse_policies", "plus_minus"]

METRICS = ("goodput", "slo_attainment", "mean_accuracy", "reconfigurations", "decision_ms_p50", "decision_ms_p99")
#: The figures each grading gives (``gradings`` in ``results.json``).
GRADING_METRICS = ("goodput", "slo_attainment", "mean_accuracy")
#: Added by issue 17 (item 4), after the columns above in results.csv so that theirs stay put.
WORST = "worst_slo_attainment"
_ALL_METRICS = (*METRICS, WORST)
_ALL_GRADING_METRICS = (*GRADING_METRICS, WORST)
#: Per tenant, besides TENANT_METRICS: the requests that weigh them into the aggregate.
_TENANT_WEIGHTS = ("arrived", "within")


def parse_policies(text: str | Sequence[str]) -> list[str]:
    """Policy names from ``"migrator,static"`` or a list; unknown or repeated names are errors."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n).strip() for n in text]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"policies must name at least one of {', '.join(POLICY_NAMES)}", field="policies")
    for name in names:
        if name not in POLICY_NAMES:
            raise ConfigError(f"unknown policy {name!r}; known policies: {', '.join(POLICY_NAMES)}", field="policies")
    if len(set(names)) != len(names):
        raise ConfigError(f"policies must not repeat a name, got {', '.join(names)}", field="policies")
    return names


@dataclass(frozen=True)
class Comparison:
    """Results of every policy on every seed: ``runs[policy]`` in seed order."""

    scenario: str
    seeds: tuple[int, ...]
    runs: Mapping[str, tuple[SimResult, ...]]
    grader: str = "request"
    latency: str = "model"

    def table(self) -> dict[str, dict[str, float]]:
        """Per policy, the mean over seeds of each metric."""
        return {name: self._stat(name, np.mean) for name in self.runs}

    def spread(self) -> dict[str, dict[str, float]]:
        """Per policy, the standard deviation over seeds of each metric (0 for one seed)."""
        return {name: self._stat(name, np.std) for name in self.runs}

    def _stat(self, name: str, reduce: Callable[[np.ndarray], Any]) -> dict[str, float]:
        rows = [run.summary() for run in self.runs[name]]
        return {m: float(reduce(np.array([r[m] for r in rows]))) for m in _ALL_METRICS}

    def intervals(self) -> dict[str, dict[str, float | None]]:
        """Per policy, the half-width of the 95 % Student-t interval of each metric's mean
        over seeds (None with one seed)."""
        return {name: _ci([run.summary() for run in runs], _ALL_METRICS) for name, runs in self.runs.items()}

    def tenants(self, grader: str | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """Per policy and tenant, by ``grader`` (default the headline): the means over seeds
        of Goodput, SLO attainment, mean accuracy, ``arrived`` and ``within``, and
        ``"ci95"``, the half-widths of the first three's 95 % Student-t intervals."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, runs in self.runs.items():
            per_seed = [run.tenant_summary(None if grader == self.grader else grader) for run in runs]
            tenants = list(per_seed[0]) if per_seed else []
            out[name] = {
                tenant: {
                    **{m: float(np.mean([row[tenant][m] for row in per_seed])) for m in (*TENANT_METRICS, *_TENANT_WEIGHTS)},
                    "ci95": _ci([row[tenant] for row in per_seed], TENANT_METRICS),
                }
                for tenant in tenants
            }
        return out

    def worst_tenant(self, name: str, grader: str | None = None) -> str | None:
        """The tenant of policy ``name`` with the lowest mean SLO attainment over seeds."""
        tenants = self.tenants(grader)[name]
        return min(tenants, key=lambda t: tenants[t]["slo_attainment"]) if tenants else None

    def improvement_ci(self, over: str, policy: str = "migrator") -> float | None:
        """Half-width of the 95 % Student-t interval of :meth:`improvement` (the per-seed
        gains' mean); None with one seed."""
        gains = [a.goodput / b.goodput - 1.0 for a, b in zip(self.runs[policy], self.runs[over]) if b.goodput > 0]
        return mean_ci(gains)[1] if gains else None

    def gradings(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per policy and grader: the mean over seeds of each of :data:`GRADING_METRICS`, with
        their standard deviations under ``"std"``."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, runs in self.runs.items():
            rows = [run.grading_summary() for run in runs]
            out[name] = {}
            for grader in GRADERS:
                if not rows or any(grader not in r for r in rows):
                    continue
                values = {m: np.array([r[grader][m] for r in rows]) for m in _ALL_GRADING_METRICS}
                out[name][grader] = {
                    **{m: float(np.mean(v)) for m, v in values.items()},
                    "std": {m: float(np.std(v)) for m, v in values.items()},
                    "ci95": {m: mean_ci(v)[1] for m, v in values.items()},
                    "tenants": self.tenants(grader)[name],
                }
        return out

    def improvement(self, over: str, policy: str = "migrator") -> float:
        """Relative Goodput gain of ``policy`` over ``over`` (0.17 = 17 % more), seed by seed
        and then averaged."""
        gains = [a.goodput / b.goodput - 1.0 for a, b in zip(self.runs[policy], self.runs[over]) if b.goodput > 0]
        return float(np.mean(gains)) if gains else float("nan")

    def to_dict(self) -> dict[str, Any]:
        spread = self.spread()
        gradings = self.gradings()
        intervals = self.intervals()
        tenants = self.tenants()
        return {
            "scenario": self.scenario,
            "interval": f"{CI_WORDS} of the mean over seeds (ci95: its half-width; null with one seed)",
            "seeds": list(self.seeds),
            "grader": self.grader,
            "latency": self.latency,
            "policies": {
                name: {
                    **means,
                    "std": spread[name],
                    "ci95": intervals[name],
                    "tenants": tenants[name],
                    "worst_tenant": self.worst_tenant(name),
                    "per_seed": [run.summary() for run in self.runs[name]],
                    "settings": dict(self.runs[name][0].settings) if self.runs[name] else {},
                    "gradings": gradings[name],
                    "latency": dict(self.runs[name][0].latency) if self.runs[name] else {},
                }
                for name, means in self.table().items()
            },
            "arrivals": self.arrivals(),
        }

    def arrivals(self) -> dict[str, Any]:
        """Per seed, the warm-up the policies sized on and where the scored window starts in
        the recorded traces (None without one); every policy of a seed replays the same."""
        first = next((runs for runs in self.runs.values() if runs), ())
        return {
            "warmup_s": first[0].warmup_s if first else None,
            "windows": [{"seed": run.seed, "start_slot": run.start_slot} for run in first],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=json_default, allow_nan=False)

    def to_csv(self) -> str:
        """One row per policy: the means (by the headline grader), the standard deviations
        (``*_std``), the seeds, the grader, then each grading's means (``goodput_request``,
        ``goodput_slot``, ...); then the columns issue 17 added: the worst tenant's SLO
        attainment (mean, ``_std``, per grading) and the 95 % Student-t half-widths
        (``*_ci95``, empty with one seed). Per-tenant figures are in ``results.json``."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        graded = [f"{m}_{g}" for g in GRADERS for m in GRADING_METRICS]
        added = [WORST, f"{WORST}_std", *(f"{WORST}_{g}" for g in GRADERS), *(f"{m}_ci95" for m in _ALL_METRICS)]
        writer.writerow(["policy", *METRICS, *(f"{m}_std" for m in METRICS), "seeds", "grader", *graded, *added])
        spread = self.spread()
        gradings = self.gradings()
        intervals = self.intervals()
        for name, means in self.table().items():
            by = gradings[name]
            extra = [by[g][m] if g in by else "" for g in GRADERS for m in GRADING_METRICS]
            worst = [means[WORST], spread[name][WORST], *(by[g][WORST] if g in by else "" for g in GRADERS)]
            ci = ["" if intervals[name][m] is None else intervals[name][m] for m in _ALL_METRICS]
            writer.writerow([name, *(means[m] for m in METRICS), *(spread[name][m] for m in METRICS), len(self.seeds),
                             self.grader, *extra, *worst, *ci])
        return out.getvalue()

    def to_markdown(self) -> str:
        """The report's tables in Markdown: per policy the headline grading's means over seeds
        (± the 95 % Student-t half-width when there are several seeds) with the worst tenant's
        SLO attainment, then per policy and tenant Goodput, SLO attainment and accuracy."""
        means, intervals, tenants = self.table(), self.intervals(), self.tenants()
        spread = "mean ± " + CI_WORDS if len(self.seeds) > 1 else "one seed"
        lines = [
            f"{self.scenario}: {len(self.seeds)} seed(s) ({spread}), graded by {self.grader}, "
            f"decision time: {self.latency}",
            "",
            "| policy | Goodput | SLO attainment | worst tenant's SLO attainment | mean accuracy | reconfigurations |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in means.items():
            ci = intervals[name]
            lines.append(
                f"| {name} | {plus_minus(row['goodput'], ci['goodput'], ',.0f')} "
                f"| {plus_minus(row['slo_attainment'], ci['slo_attainment'], '.3f')} "
                f"| {plus_minus(row[WORST], ci[WORST], '.3f')} ({self.worst_tenant(name)}) "
                f"| {plus_minus(row['mean_accuracy'], ci['mean_accuracy'], '.3f')} | {row['reconfigurations']:.1f} |"
            )
        lines += ["", "| policy | tenant | Goodput | SLO attainment | mean accuracy |", "|---|---|---|---|---|"]
        for name, by_tenant in tenants.items():
            for tenant, figures in by_tenant.items():
                half = figures["ci95"]
                lines.append(
                    f"| {name} | {tenant} | {plus_minus(figures['goodput'], half['goodput'], ',.0f')} "
                    f"| {plus_minus(figures['slo_attainment'], half['slo_attainment'], '.3f')} "
                    f"| {plus_minus(figures['mean_accuracy'], half['mean_accuracy'], '.3f')} |"
                )
        return "\n".join(lines) + "\n"

    def write_markdown(self, directory: str | Path) -> Path:
        """``results.md`` (:meth:`to_markdown`) in ``directory`` (created); returns its path."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "results.md"
        write_atomically(path, self.to_markdown())
        return path

    def write(self, directory: str | Path) -> list[Path]:
        """``results.json`` and ``results.csv`` in ``directory`` (created); returns the paths."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / "results.json", folder / "results.csv"]
        write_atomically(paths[0], self.to_json() + "\n")
        write_atomically(paths[1], self.to_csv())
        return paths


def plus_minus(mean: float, half_width: float | None, spec: str) -> str:
    """``mean`` formatted with ``spec``, followed by ``± half_width`` when there is one."""
    return f"{mean:{spec}}" if half_width is None else f"{mean:{spec}} ± {half_width:{spec}}"


def _ci(rows: Sequence[Mapping[str, float]], metrics: Sequence[str]) -> dict[str, float | None]:
    """Per metric, the half-width of the 95 % Student-t interval of its mean over ``rows``."""
    return {m: mean_ci([r[m] for r in rows])[1] if rows else None for m in metrics}


def compare(
    scenario: Scenario,
    policies: Sequence[str] | str,
    seeds: Sequence[int] = (0,),
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    decision_latency_s: float | None = None,
    duration_s: float | None = None,
    on_slot: Callable[[str, int, int], None] | None = None,
    grader: str = "request",
    warmup_s: float | None = None,
    latency: str = "model",
) -> Comparison:
    """Replay every policy on every seed.

    Parameters
    ----------
    policies : names (see ``migrator.evaluation.policy.POLICY_NAMES``) or a comma-separated string
    seeds : seeds of the scenario's synthetic arrivals; all policies see the same ones
    options : per policy name, keyword options for its constructor
    decision_latency_s, duration_s : as :func:`migrator.evaluation.simulate.simulate` takes them
    on_slot : called as ``on_slot(policy, seed, slot)`` after each simulated slot
    grader : the headline grading, ``"request"`` or ``"slot"`` (both are reported)
    warmup_s : seconds of unscored traffic before each seed's scored window, from which the
        policies take their average rates (``migrator.evaluation.warmup``)
    latency : how decisions are charged, ``"model"`` (a decision cost per policy measured
        once per machine: runs repeat exactly unless a decision stops at its time limit, which
        each run's ``decisions_at_time_limit`` counts) or ``"wall"`` (``migrator.evaluation.latency``)
    """
    grader = check_grader(grader)
    latency = check_latency(latency)
    names = parse_policies(policies)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ConfigError("seeds must hold at least one seed", field="seeds")
    options = dict(options or {})
    runs: dict[str, list[SimResult]] = {name: [] for name in names}
    for seed in seeds:
        for name in names:
            policy: Policy = make_policy(name, **options.get(name, {}))
            report = (lambda t, n=name, s=seed: on_slot(n, s, t)) if on_slot is not None else None
            runs[name].append(simulate(
                scenario, policy, seed=seed, decision_latency_s=decision_latency_s, duration_s=duration_s,
                on_slot=report, grader=grader, warmup_s=warmup_s,
                latency=latency,
            ))
    return Comparison(scenario.name, seeds, {name: tuple(r) for name, r in runs.items()}, grader, latency)
