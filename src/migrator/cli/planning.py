"""``migrator plan`` and ``demo``: one decision of the planner."""

from __future__ import annotations

from typing import Any

import click

from ..errors import MigratorError
from ._common import HORIZON, TIME_LIMIT, load_scenario, new_console, planner_settings, profile_table


@click.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as a JSON document (keys gpus, goodput, stats).")
@click.option("--horizon", type=HORIZON, help="Slots to plan ahead (default: the scenario's).")
@click.option("--time-limit", "time_limit_s", type=TIME_LIMIT,
              help="Solver time limit in seconds (default: the scenario's).")
def plan(scenario: str | None, as_json: bool, horizon: int | None, time_limit_s: float | None) -> None:
    """Plan one decision for SCENARIO (a YAML file; the built-in default when omitted).

    Prints a layout timeline per GPU, the expected Goodput per tenant and the solver's
    statistics. Only the first slot is meant to be applied; the rest is look-ahead.
    """
    from ..planning.planner import Planner

    s = load_scenario(scenario)
    try:
        result = Planner(s, planner_settings(s, horizon, time_limit_s)).plan()
    except MigratorError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(result.to_json())
        return
    for line in _plan_lines(result):
        click.echo(line)


def _plan_lines(result: Any) -> list[str]:
    lines = []
    for g in result.gpus:
        lines.append(f"{g.name} ({g.model})")
        start = 0
        for t in range(1, len(g.slots) + 1):
            if t == len(g.slots) or g.slots[t] != g.slots[start]:
                slot = g.slots[start]
                tasks = ", ".join(f"{p}={task}" for p, task in slot.assignment.items()) or "(no instances)"
                lines.append(f"  slots {start:>3}-{t - 1:<3} {tasks}")
                start = t
    lines.append("expected Goodput: " + ", ".join(f"{k} {v:,.0f}" for k, v in result.goodput.items())
                 + f"; total {result.total_goodput:,.0f}")
    lines.append("expected SLO attainment: " + ", ".join(f"{k} {v:.2f}" for k, v in result.attainment.items()))
    st = result.stats
    lines.append(
        f"solver: {st.status}, objective {st.objective:,.1f}, bound {st.bound:,.1f}, gap {st.mip_gap:.2%}, "
        f"build {st.build_s * 1e3:.1f} ms, solve {st.solve_s * 1e3:.1f} ms, "
        f"{st.integers} integer of {st.columns} columns, {st.reconfigurations} reconfigurations"
    )
    return lines


@click.command()
def demo() -> None:
    """Run migrator on built-in defaults: plan the default scenario (continuous-learning
    tenants sharing two A100s) and show the MIG geometry it works with."""
    from ..planning.planner import Planner
    from ..workload.scenario import Scenario

    console = new_console()
    scenario = Scenario.default()
    g = scenario.gpus[0].geometry
    console.print(profile_table(g))
    click.echo(f"{len(g.layouts())} valid layouts on {g.name}, {len(g.layouts(maximal=True))} maximal")
    tenants = ", ".join(f"{t.name} ({t.model}, SLO {t.slo_ms:g} ms)" for t in scenario.tenants)
    click.echo(f"\nscenario {scenario.name!r}: {len(scenario.gpus)} x {g.name}; tenants: {tenants}")
    click.echo(f"planning {scenario.planner.horizon} slots of {scenario.slot_s:g} s ahead...\n")
    for line in _plan_lines(Planner(scenario).plan()):
        click.echo(line)
