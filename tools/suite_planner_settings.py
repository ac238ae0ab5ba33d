"""Measure planner settings on the scenario suite: migrator with the library defaults against
migrator with the built-in scenario's ``planner:`` settings, all together and one at a time.

    python tools/suite_planner_settings.py [--duration 60] [--seeds 1] [--out settings.json]

Prints, per scenario and variant, the request-level Goodput and its change against the
library defaults (docs/scenarios.md records a run). Not run by the tests: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from migrator.evaluation.comparison import compare
from migrator.evaluation.suite import SUITE_DURATION_S, load_suite
from migrator.workload.scenario import Scenario

#: The settings in which the built-in scenario's ``planner:`` (data/scenarios/default.yaml)
#: differs from the library's PlannerConfig defaults.
BUILT_IN = {"reconfig_penalty": 200.0, "decompose_above": 300, "retrain_over_window": True}


def variants() -> dict[str, dict[str, Any]]:
    """Library defaults, the built-in scenario's settings together, and each one alone."""
    out: dict[str, dict[str, Any]] = {"library defaults": {}, "built-in planner: block": dict(BUILT_IN)}
    out.update({f"only {key}={value}": {key: value} for key, value in BUILT_IN.items()})
    return out


def goodput(scenario: Scenario, changes: dict[str, Any], seeds: Sequence[int], duration_s: float) -> list[float]:
    run = compare(scenario.with_planner(**changes), ["migrator"], seeds, duration_s=duration_s)
    return [r.goodput for r in run.runs["migrator"]]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=SUITE_DURATION_S)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    table: dict[str, dict[str, list[float]]] = {}
    for scenario in load_suite():
        seeds = [scenario.seed + k for k in range(args.seeds)]
        table[scenario.name] = {}
        for name, changes in variants().items():
            table[scenario.name][name] = goodput(scenario, changes, seeds, min(args.duration, scenario.duration_s))
            base = table[scenario.name]["library defaults"]
            change = sum(g / b - 1.0 for g, b in zip(table[scenario.name][name], base) if b > 0) / len(base)
            print(f"{scenario.name}\t{name}\t{sum(table[scenario.name][name]) / len(seeds):,.0f}\t{change:+.2%}",
                  flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as stream:
            json.dump({"duration_s": args.duration, "goodput": table}, stream, indent=2)


if __name__ == "__main__":
    main()
