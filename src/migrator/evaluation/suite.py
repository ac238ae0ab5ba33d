"""The scenario suite (issue 17, item 5): every bundled ``suite-*.yaml`` scenario, each policy
on each, one summary.

The suite's scenarios (``migrator/data/scenarios/suite-*.yaml``, described in
docs/scenarios.md) replay real request-rate traces (``migrator/data/traces/<trace>/``, each
with its SOURCE.md: origin, licence, derivation) on mixed GPU fleets. :func:`run_suite`
runs :func:`migrator.evaluation.comparison.compare` on each and returns a :class:`SuiteResult`,
which writes one folder per scenario (the files ``migrator simulate --out`` writes) and, above
them, ``summary.md`` and ``results.json`` (per scenario and policy: Goodput, SLO attainment,
the worst tenant's SLO attainment, and migrator's Goodput gain over every other policy with
its 95 % Student-t half-width over seeds).

Nothing is downloaded: the traces ship with the package.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .._files import write_atomically
from ..errors import ConfigError
from ..planning.planner import json_default
from ..workload.scenario import Scenario
from .comparison import WORST, Comparison, compare, plus_minus

__all__ = [
    "PAPER_GAINS", "SUITE_DURATION_S", "SuiteResult", "load_suite", "run_suite", "suite_paths", "suite_slots",
]

#: Simulated seconds per scenario when the caller gives none: long enough for every policy to
#: make a few hundred decisions in all, short enough that the six scenarios and six policies
#: run in minutes on two cores (docs/scenarios.md gives the measured time).
SUITE_DURATION_S = 60.0
#: Goodput gains the MIGRator paper (arXiv 2407.13126) reports over these baselines, shown
#: beside the suite's measured ones.
PAPER_GAINS = {"ekya": 0.17, "astraea": 0.21, "paris": 0.20}
_PREFIX = "suite-"


def suite_paths() -> list[Path]:
    """The suite's scenario files, sorted by name."""
    folder = Path(str(resources.files("migrator") / "data" / "scenarios"))
    return sorted(p for p in folder.iterdir() if p.name.startswith(_PREFIX) and p.suffix == ".yaml")


def load_suite(names: Sequence[str] | None = None) -> list[Scenario]:
    """Load the suite's scenarios (all, or those named, in the order given).

    Their traces lie beside the scenarios' folder (``data/traces``), so they are loaded with
    ``files_anywhere=True``: these are the package's own files, not a user's.
    """
    paths = {p.stem: p for p in suite_paths()}
    chosen = sorted(paths) if names is None else list(names)
    unknown = [n for n in chosen if n not in paths]
    if unknown:
        raise ConfigError(f"unknown suite scenario {unknown[0]!r}; the suite has: {', '.join(sorted(paths))}",
                          field="scenarios")
    return [Scenario.load(paths[name], files_anywhere=True) for name in chosen]


@dataclass(frozen=True)
class SuiteResult:
    """One :class:`Comparison` per suite scenario, in run order."""

    comparisons: Mapping[str, Comparison]
    duration_s: float

    def gains(self, name: str) -> dict[str, dict[str, float | None]]:
        """Migrator's Goodput gain over each other policy on scenario ``name`` (seed by seed,
        then averaged) with the 95 % Student-t half-width (None with one seed)."""
        comparison = self.comparisons[name]
        if "migrator" not in comparison.runs:
            return {}
        return {other: {"gain": _finite(comparison.improvement(other)), "ci95": comparison.improvement_ci(other)}
                for other in comparison.runs if other != "migrator"}

    def summary(self) -> dict[str, Any]:
        """Per scenario: per policy the headline means and the worst tenant, and migrator's gains."""
        out: dict[str, Any] = {}
        for name, comparison in self.comparisons.items():
            means, intervals = comparison.table(), comparison.intervals()
            out[name] = {
                "seeds": list(comparison.seeds),
                "policies": {
                    policy: {
                        "goodput": row["goodput"], "slo_attainment": row["slo_attainment"],
                        WORST: row[WORST], "worst_tenant": comparison.worst_tenant(policy),
                        "ci95": {m: intervals[policy][m] for m in ("goodput", "slo_attainment", WORST)},
                    }
                    for policy, row in means.items()
                },
                "migrator_gain": self.gains(name),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        first = next(iter(self.comparisons.values()), None)
        return {
            "suite": list(self.comparisons),
            "duration_s": self.duration_s,
            "grader": first.grader if first else None,
            "latency": first.latency if first else None,
            "paper_gains": PAPER_GAINS,
            "summary": self.summary(),
            "scenarios": {name: c.to_dict() for name, c in self.comparisons.items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=json_default, allow_nan=False)

    def to_markdown(self) -> str:
        """Two tables: migrator's gain over each policy per scenario (the paper's figures in the
        header), and per scenario and policy the worst tenant's SLO attainment."""
        policies = _policies(self.comparisons.values())
        others = [p for p in policies if p != "migrator"]
        first = next(iter(self.comparisons.values()), None)
        grader = first.grader if first else "request"
        title = (f"Scenario suite: {len(self.comparisons)} scenarios, {self.duration_s:g} simulated s each, "
                 f"graded by {grader}; gains are seed by seed, then averaged (± 95 % Student-t over seeds).")
        lines = [title, ""]
        if "migrator" in policies and others:
            header = [f"migrator vs {p}" + (f" (paper {PAPER_GAINS[p]:+.0%})" if p in PAPER_GAINS else "")
                      for p in others]
            lines += ["| scenario | " + " | ".join(header) + " |", "|---" * (len(others) + 1) + "|"]
            for name in self.comparisons:
                gains = self.gains(name)
                cells = [_gain_cell(gains.get(p)) for p in others]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += ["| scenario | " + " | ".join(f"{p}: SLO / worst tenant's SLO" for p in policies) + " |",
                  "|---" * (len(policies) + 1) + "|"]
        for name, comparison in self.comparisons.items():
            means, intervals = comparison.table(), comparison.intervals()
            cells = []
            for p in policies:
                if p not in means:
                    cells.append("")
                    continue
                worst = plus_minus(means[p][WORST], intervals[p][WORST], ".3f")
                cells.append(f"{means[p]['slo_attainment']:.3f} / {worst} ({comparison.worst_tenant(p)})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, directory: str | Path, plot: Callable[[Comparison, Path], list[Path]] | None = None) -> list[Path]:
        """Per scenario a folder with results.json/csv/md (and ``plot``'s files); above them
        ``results.json`` (:meth:`to_dict`) and ``summary.md``. Returns every path written."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for name, comparison in self.comparisons.items():
            sub = folder / name
            written += comparison.write(sub)
            written.append(comparison.write_markdown(sub))
            if plot is not None:
                written += plot(comparison, sub)
        summary, document = folder / "summary.md", folder / "results.json"
        write_atomically(summary, self.to_markdown())
        write_atomically(document, self.to_json() + "\n")
        return [*written, summary, document]


def _policies(comparisons: Iterable[Comparison]) -> list[str]:
    """Every policy any comparison ran, in the order first met."""
    seen: list[str] = []
    for comparison in comparisons:
        seen += [p for p in comparison.runs if p not in seen]
    return seen


def _finite(value: float) -> float | None:
    """None for NaN: a gain over a policy that earned nothing on every seed is undefined."""
    return None if math.isnan(value) else value


def _gain_cell(gain: Mapping[str, float | None] | None) -> str:
    if gain is None or gain["gain"] is None:
        return "n/a"
    value, half = gain["gain"], gain["ci95"]
    return f"{value:+.1%}" if half is None else f"{value:+.1%} ± {half:.1%}"


def suite_slots(scenarios: Sequence[Scenario], duration_s: float) -> list[int]:
    """Slots each scenario simulates for ``duration_s`` (never more than its own duration)."""
    return [max(1, round(min(duration_s, s.duration_s) / s.slot_s)) for s in scenarios]


def run_suite(
    scenarios: Sequence[Scenario],
    policies: Sequence[str] | str,
    seeds: int = 1,
    *,
    duration_s: float = SUITE_DURATION_S,
    grader: str = "request",
    latency: str = "model",
    on_slot: Callable[[str, str, int, int], None] | None = None,
) -> SuiteResult:
    """Compare ``policies`` on every scenario, each on its own seed and the ``seeds - 1`` after it.

    Parameters
    ----------
    scenarios : from :func:`load_suite`
    policies : names or a comma-separated string (``migrator.evaluation.policy.POLICY_NAMES``)
    seeds : replays per policy and scenario (a recorded trace's seeds replay other windows of it)
    duration_s : simulated seconds per scenario (cut to a scenario's own ``duration_s``)
    grader, latency : as :func:`migrator.evaluation.comparison.compare` takes them
    on_slot : called as ``on_slot(scenario, policy, seed, slot)`` after each simulated slot
    """
    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}", field="seeds")
    results: dict[str, Comparison] = {}
    for scenario in scenarios:
        report = None
        if on_slot is not None:
            report = (lambda p, s, t, n=scenario.name: on_slot(n, p, s, t))
        results[scenario.name] = compare(
            scenario, policies, [scenario.seed + k for k in range(seeds)],
            duration_s=min(duration_s, scenario.duration_s), on_slot=report, grader=grader, latency=latency,
        )
    return SuiteResult(results, duration_s)
