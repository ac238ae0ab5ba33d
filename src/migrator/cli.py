"""The ``migrator`` command. Every command is a thin shell over the public API.

Exit codes: 0 success; 1 the answer is "no" (an invalid layout) or the device failed;
2 bad usage (unknown GPU, malformed layout, bad option), as click does.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import InvalidLayout, LayoutSyntaxError, MigratorError, UnknownGPU
from .geometry import Geometry, Transition, known_gpus

_DEFAULT_GPU = "A100-40GB"


def _console() -> Console:
    # Wide enough for the profile table when piped; a terminal's own width wins.
    return Console(width=None if Console().is_terminal else 120, highlight=False)


def _echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def _geometry(gpu: str | None, nvml_index: int | None) -> Geometry:
    if nvml_index is not None:
        return _geometry_from_nvml(nvml_index)
    try:
        return Geometry.for_gpu(gpu or _DEFAULT_GPU)
    except UnknownGPU as exc:
        raise click.BadParameter(str(exc), param_hint="GPU") from exc


def _geometry_from_nvml(index: int) -> Geometry:
    from ._nvml_read import default_nvml

    try:
        nvml = default_nvml()
        nvml.nvmlInit()
    except MigratorError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # the driver's own error (no GPU, no driver)
        raise click.ClickException(f"NVML could not start: {exc}") from exc
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        return Geometry.from_nvml(handle, nvml)
    except MigratorError as exc:
        raise click.ClickException(str(exc)) from exc
    except nvml.NVMLError as exc:
        raise click.ClickException(f"NVML device {index}: {exc}") from exc
    finally:
        nvml.nvmlShutdown()


def _profile_table(g: Geometry) -> Table:
    table = Table(title=f"{g.name}: {g.memory_slices} memory slices, {g.compute_slices} compute slices")
    for column in ("profile", "id", "compute", "memory slices", "memory MiB", "max", "starts", "dec/enc/jpg/ofa"):
        table.add_column(column, justify="left" if column in ("profile", "starts") else "right")
    for p in sorted(g.profiles, key=lambda p: (p.compute_slices, p.memory_slices, p.name)):
        table.add_row(
            p.name,
            "" if p.id is None else str(p.id),
            str(p.compute_slices),
            str(p.memory_slices),
            str(p.memory_mib),
            str(p.max_count),
            ",".join(map(str, p.starts)),
            "/".join(map(str, p.engines.as_tuple())),
        )
    return table


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="migrator")
def main() -> None:
    """Decide and apply NVIDIA MIG layouts for GPUs shared by several tenants.

    Layouts are written as comma-separated placements PROFILE@START sorted by start,
    e.g. "1g.10gb@0,1g.10gb@1,2g.20gb@2,3g.40gb@4".
    """


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of a table.")
def gpus(as_json: bool) -> None:
    """List the GPU models with a built-in MIG geometry."""
    rows = [Geometry.for_gpu(name) for name in known_gpus()]
    if as_json:
        _echo_json(
            [
                {
                    "name": g.name,
                    "description": g.description,
                    "memory_slices": g.memory_slices,
                    "compute_slices": g.compute_slices,
                    "profiles": [p.name for p in g.profiles],
                    "device_names": list(g.device_names),
                }
                for g in rows
            ]
        )
        return
    table = Table(title="GPUs with a built-in MIG geometry")
    for column in ("gpu", "memory slices", "compute slices", "profiles", "NVML device names"):
        table.add_column(column)
    for g in rows:
        table.add_row(
            g.name,
            str(g.memory_slices),
            str(g.compute_slices),
            " ".join(p.name for p in g.profiles),
            "\n".join(g.device_names),
        )
    _console().print(table)
    click.echo("Other MIG-capable GPUs work when read from the device: migrator geometry --nvml INDEX")


@main.command()
@click.argument("gpu", required=False)
@click.option("--nvml", "nvml_index", type=int, metavar="INDEX",
              help="Read the geometry of NVML device INDEX instead (read-only; needs migrator[nvml]).")
@click.option("--layouts", "show_layouts", is_flag=True, help="List every valid layout, with a count.")
@click.option("--maximal", is_flag=True, help="With --layouts: only layouts to which no instance can be added.")
@click.option("--check", "check", metavar="LAYOUT", help="Say whether LAYOUT is valid, or name the rule it breaks (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of a table.")
def geometry(gpu: str | None, nvml_index: int | None, show_layouts: bool, maximal: bool,
             check: str | None, as_json: bool) -> None:
    """Show the MIG profiles and placements of GPU (default A100-40GB).

    GPU is a short key (H100-80GB), an alias or an NVML device name
    ("NVIDIA A100-SXM4-40GB"); `migrator gpus` lists them.
    """
    if maximal and not show_layouts:
        raise click.UsageError("--maximal only applies with --layouts")
    g = _geometry(gpu, nvml_index)
    if check is not None:
        _check(g, check, as_json)
    elif show_layouts:
        layouts = g.layouts(maximal=maximal)
        if as_json:
            _echo_json({"gpu": g.name, "maximal": maximal, "count": len(layouts), "layouts": layouts})
            return
        for layout in layouts:
            click.echo(layout if layout else "(empty)")
        kind = "maximal layouts" if maximal else "valid layouts"
        click.echo(f"{len(layouts)} {kind} on {g.name}")
    elif as_json:
        _echo_json(g.to_dict())
    else:
        _console().print(_profile_table(g))
        if g.source:
            click.echo(f"source: {g.source}")


def _check(g: Geometry, text: str, as_json: bool) -> None:
    try:
        layout = g.validate(text)
    except LayoutSyntaxError as exc:
        raise click.BadParameter(str(exc), param_hint="--check") from exc
    except InvalidLayout as exc:
        if as_json:
            _echo_json({"gpu": g.name, "valid": False, "rule": exc.rule, "reason": str(exc)})
        else:
            click.echo(f"invalid on {g.name}: {exc} [rule: {exc.rule}]")
        raise SystemExit(1) from exc
    if as_json:
        _echo_json({"gpu": g.name, "valid": True, "layout": str(layout)})
    else:
        click.echo(f"valid on {g.name}: {layout if len(layout) else '(empty)'}")


@main.command()
@click.argument("gpu")
@click.argument("current")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
def transition(gpu: str, current: str, target: str, as_json: bool) -> None:
    """Show what changes from layout CURRENT to layout TARGET on GPU.

    Instances kept are untouched; created instances that fit on slices already free
    are created first (make-before-break), the rest only after the destroys.
    """
    g = _geometry(gpu, None)
    try:
        t = g.transition(current, target)
    except InvalidLayout as exc:
        raise click.BadParameter(str(exc), param_hint="CURRENT/TARGET") from exc
    if as_json:
        _echo_json(_transition_dict(g, t))
        return
    for line in _transition_lines(t):
        click.echo(line)


def _transition_dict(g: Geometry, t: Transition) -> dict[str, Any]:
    def names(placements: tuple[Any, ...]) -> list[str]:
        return [str(p) for p in placements]

    return {
        "gpu": g.name,
        "kept": names(t.kept),
        "destroyed": names(t.destroyed),
        "created_before_destroy": names(t.created_before_destroy),
        "created_after_destroy": names(t.created_after_destroy),
        "make_before_break": t.make_before_break,
    }


def _transition_lines(t: Transition) -> list[str]:
    def names(placements: tuple[Any, ...]) -> str:
        return ", ".join(str(p) for p in placements) or "-"

    return [
        f"keep:                    {names(t.kept)}",
        f"create first (free now): {names(t.created_before_destroy)}",
        f"destroy:                 {names(t.destroyed)}",
        f"create after destroy:    {names(t.created_after_destroy)}",
        "make-before-break: " + ("yes" if t.make_before_break else "no (some instances need freed slices)"),
    ]


def _scenario(path: str | None) -> Any:
    from .scenario import Scenario

    try:
        return Scenario.default() if path is None else Scenario.load(path)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="SCENARIO") from exc


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as a JSON document (keys gpus, goodput, stats).")
@click.option("--horizon", type=click.IntRange(min=1), help="Slots to plan ahead (default: the scenario's).")
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True),
              help="Solver time limit in seconds (default: the scenario's).")
def plan(scenario: str | None, as_json: bool, horizon: int | None, time_limit_s: float | None) -> None:
    """Plan one decision for SCENARIO (a YAML file; the built-in default when omitted).

    Prints a layout timeline per GPU, the expected Goodput per tenant and the solver's
    statistics. Only the first slot is meant to be applied; the rest is look-ahead.
    """
    from dataclasses import replace

    from .planner import Planner

    s = _scenario(scenario)
    changes = {k: v for k, v in (("horizon", horizon), ("time_limit_s", time_limit_s)) if v is not None}
    try:
        result = Planner(s, replace(s.planner, **changes)).plan()
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
    st = result.stats
    lines.append(
        f"solver: {st.status}, objective {st.objective:,.1f}, bound {st.bound:,.1f}, gap {st.mip_gap:.2%}, "
        f"build {st.build_s * 1e3:.1f} ms, solve {st.solve_s * 1e3:.1f} ms, "
        f"{st.integers} integer of {st.columns} columns, {st.reconfigurations} reconfigurations"
    )
    return lines


@main.command()
def demo() -> None:
    """Run migrator on built-in defaults: plan the default scenario (continuous-learning
    tenants sharing two A100s) and show the MIG geometry it works with."""
    from .planner import Planner
    from .scenario import Scenario

    console = _console()
    scenario = Scenario.default()
    g = scenario.gpus[0].geometry
    console.print(_profile_table(g))
    click.echo(f"{len(g.layouts())} valid layouts on {g.name}, {len(g.layouts(maximal=True))} maximal")
    tenants = ", ".join(f"{t.name} ({t.model}, SLO {t.slo_ms:g} ms)" for t in scenario.tenants)
    click.echo(f"\nscenario {scenario.name!r}: {len(scenario.gpus)} x {g.name}; tenants: {tenants}")
    click.echo(f"planning {scenario.planner.horizon} slots of {scenario.slot_s:g} s ahead...\n")
    for line in _plan_lines(Planner(scenario).plan()):
        click.echo(line)
