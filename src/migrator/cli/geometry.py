"""``migrator gpus``, ``geometry``, ``transition``: what a GPU model allows."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from ..errors import InvalidLayout, LayoutSyntaxError
from ..geometry.geometry import Geometry, Transition, known_gpus
from ._common import echo_json, geometry_for, new_console, profile_table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document instead of a table.")
def gpus(as_json: bool) -> None:
    """List the GPU models with a built-in MIG geometry."""
    rows = [Geometry.for_gpu(name) for name in known_gpus()]
    if as_json:
        echo_json(
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
    new_console().print(table)
    click.echo("Other MIG-capable GPUs work when read from the device: migrator geometry --nvml INDEX")


@click.command()
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
    g = geometry_for(gpu, nvml_index)
    if check is not None:
        _check(g, check, as_json)
    elif show_layouts:
        layouts = g.layouts(maximal=maximal)
        if as_json:
            echo_json({"gpu": g.name, "maximal": maximal, "count": len(layouts), "layouts": layouts})
            return
        for layout in layouts:
            click.echo(layout if layout else "(empty)")
        kind = "maximal layouts" if maximal else "valid layouts"
        click.echo(f"{len(layouts)} {kind} on {g.name}")
    elif as_json:
        echo_json(g.to_dict())
    else:
        new_console().print(profile_table(g))
        if g.source:
            click.echo(f"source: {g.source}")


def _check(g: Geometry, text: str, as_json: bool) -> None:
    try:
        layout = g.validate(text)
    except LayoutSyntaxError as exc:
        raise click.BadParameter(str(exc), param_hint="--check") from exc
    except InvalidLayout as exc:
        if as_json:
            echo_json({"gpu": g.name, "valid": False, "rule": exc.rule, "reason": str(exc)})
        else:
            click.echo(f"invalid on {g.name}: {exc} [rule: {exc.rule}]")
        raise SystemExit(1) from exc
    if as_json:
        echo_json({"gpu": g.name, "valid": True, "layout": str(layout)})
    else:
        click.echo(f"valid on {g.name}: {layout if len(layout) else '(empty)'}")


@click.command()
@click.argument("gpu")
@click.argument("current")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
def transition(gpu: str, current: str, target: str, as_json: bool) -> None:
    """Show what changes from layout CURRENT to layout TARGET on GPU.

    Instances kept are untouched; created instances that fit on slices already free
    are created first (make-before-break), the rest only after the destroys.
    """
    g = geometry_for(gpu, None)
    try:
        t = g.transition(current, target)
    except InvalidLayout as exc:
        raise click.BadParameter(str(exc), param_hint="CURRENT/TARGET") from exc
    if as_json:
        echo_json(_transition_dict(g, t))
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
