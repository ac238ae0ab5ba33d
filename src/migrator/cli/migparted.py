"""``migrator mig-parted export|import``: NVIDIA mig-parted config files."""

from __future__ import annotations

import json
from typing import Any

import click

from .._files import write_atomically
from ..errors import ConfigError, MigratorError
from ._common import (
    BACKENDS,
    GPU_COUNT,
    HORIZON,
    SLOT,
    TIME_LIMIT,
    Backend,
    device_list,
    echo_json,
    geometry_for,
    load_scenario,
    open_journal,
    planner_settings,
    writable_file,
)


@click.group("mig-parted")
def mig_parted() -> None:
    """Export plans to, and import targets from, NVIDIA mig-parted configs (version v1).

    mig-parted keeps instance counts per profile, not placements: an exported config
    loses where instances sit, and an imported one is placed by migrator's geometry core.
    """


@mig_parted.command("export")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False),
              help="Export this plan (the output of `migrator plan --json`) instead of planning SCENARIO.")
@click.option("--slot", "slots", type=SLOT, multiple=True,
              help="Slot to export (repeatable); default 0, the decision.")
@click.option("--prefix", default="migrator", show_default=True, help="Configs are named PREFIX-slot-T.")
@click.option("--devices", "devices_text", metavar="I,J,...",
              help="NVML device index of each GPU of the plan, in order (default: SCENARIO's `devices`, else "
                   "0,1,...); mig-parted's `devices` name these.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--horizon", type=HORIZON, help="Slots to plan ahead (default: the scenario's).")
@click.option("--time-limit", "time_limit_s", type=TIME_LIMIT,
              help="Solver time limit in seconds (default: the scenario's).")
def mig_parted_export(scenario: str | None, plan_path: str | None, slots: tuple[int, ...], prefix: str,
                      devices_text: str | None, output: str | None, horizon: int | None,
                      time_limit_s: float | None) -> None:
    """Write a plan's layouts as a mig-parted config (one config per exported slot).

    Each GPU is written as its NVML device index: --devices, else the scenario's own
    `devices` entries (SCENARIO also gives them to a --plan), else its position.
    """
    from pathlib import Path

    from ..actuation.migparted import dump, export_plan
    from ..planning.planner import Planner

    writable_file(output, "--output")
    s = load_scenario(scenario) if scenario is not None or plan_path is None else None
    if plan_path is not None:
        try:
            plan_doc: Any = json.loads(Path(plan_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"cannot read the plan: {exc}", param_hint="--plan") from exc
        except RecursionError:  # json's decoder recurses per bracket
            raise click.BadParameter("cannot read the plan: nested too deeply", param_hint="--plan") from None
    else:
        assert s is not None
        try:
            plan_doc = Planner(s, planner_settings(s, horizon, time_limit_s)).plan()
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    devices = _export_devices(devices_text, s, plan_doc)
    try:
        text = dump(export_plan(plan_doc, slots=slots or (0,), prefix=prefix, devices=devices))
    except ConfigError as exc:
        if exc.field == "devices":
            raise click.BadParameter(str(exc), param_hint="--devices/SCENARIO") from exc
        raise click.BadParameter(f"not a migrator plan: {exc}", param_hint="--plan/--slot") from exc
    except (MigratorError, KeyError, TypeError) as exc:
        raise click.BadParameter(f"not a migrator plan: {exc}", param_hint="--plan/--slot") from exc
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomically(output, text)


def _export_devices(text: str | None, scenario: Any, plan: Any) -> list[int] | None:
    """--devices, else the scenario's device indices when it has as many GPUs as the plan."""
    gpus = plan.get("gpus") if isinstance(plan, dict) else getattr(plan, "gpus", None)
    n_gpus = len(gpus) if isinstance(gpus, (list, tuple)) else 0
    if text is not None:
        return device_list(text, n_gpus)
    if scenario is None:
        return None
    if len(scenario.gpus) != n_gpus:
        raise click.BadParameter(f"SCENARIO has {len(scenario.gpus)} GPUs but the plan {n_gpus}",
                                 param_hint="SCENARIO/--plan")
    return list(scenario.devices())


@mig_parted.command("import")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("name")
@click.option("--gpu", help="GPU model of every device (e.g. A100-40GB), when not read from a backend.")
@click.option("--device-id", "device_ids", multiple=True, metavar="0xDDDDVVVV",
              help="PCI device id (as `device-filter` writes it, e.g. 0x20B010DE) of every GPU, or repeated: of "
                   "each GPU in order. Gives the model when --gpu is left out; with --gpu alone, a GPU matches "
                   "filters naming any product of its model.")
@click.option("--count", type=GPU_COUNT,
              help="With --gpu or --device-id: how many such GPUs (what `devices: all` means); default 1, or "
                   "one per --device-id.")
@click.option("--backend", type=click.Choice(BACKENDS),
              help="Read the GPUs (models and current layouts) from this backend instead of --gpu.")
@click.option("--emulator-state", "emulator_state", type=click.Path(dir_okay=False),
              help="With --backend emulator: the emulated GPUs' state file.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Apply the targets through the backend (journaled with --journal).")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False), help="Journal for --apply.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of targets.")
def mig_parted_import(config_file: str, name: str, gpu: str | None, device_ids: tuple[str, ...],
                      count: int | None, backend: str | None, emulator_state: str | None, do_apply: bool,
                      journal_path: str | None, as_json: bool) -> None:
    """Read configuration NAME of mig-parted CONFIG_FILE as target layouts.

    Placements are chosen by the geometry core: the arrangement that keeps most of a GPU's
    current instances (read from --backend), else the first valid one. Entries with a
    `device-filter` match the GPUs' PCI device ids: --device-id, or read through --backend.
    """
    from dataclasses import asdict

    from ..actuation.migparted import import_config

    if (gpu is None and not device_ids) == (backend is None):
        raise click.UsageError("give either --gpu MODEL or --device-id ID (with --count), or --backend")
    if do_apply and backend is None:
        raise click.UsageError("--apply needs --backend")
    if backend is None:
        geometries, ids = _given_gpus(gpu, device_ids, count)
        targets = _import_targets(import_config, config_file, name, geometries, None, ids)
    else:
        with Backend(backend, None, emulator_state) as opened:
            try:
                states = opened.states()
                geometries = [opened.geometry(st.index) for st in states]
                ids = [opened.pci_device_id(st.index) for st in states]
            except MigratorError as exc:
                raise click.ClickException(str(exc)) from exc
            targets = _import_targets(import_config, config_file, name, geometries, [st.layout for st in states],
                                      ids)
            if do_apply:
                _apply_targets(opened, targets, [str(st.layout) for st in states], journal_path)
    if as_json:
        echo_json([asdict(t) for t in targets])
        return
    for t in targets:
        mig = t.layout or "(empty)" if t.mig_enabled else "MIG disabled (migrator leaves MIG mode alone)"
        click.echo(f"gpu{t.index} ({geometries[t.index].name}): {mig}")


def _given_gpus(gpu: str | None, device_ids: tuple[str, ...], count: int | None) -> tuple[list[Any], Any]:
    """The GPUs --gpu, --device-id and --count describe: geometries, and device ids or None."""
    from ..actuation.migparted import gpu_for_device_id, parse_device_id

    n_gpus = count or max(1, len(device_ids))
    if len(device_ids) > 1 and len(device_ids) != n_gpus:
        raise click.BadParameter(f"{len(device_ids)} device ids for {n_gpus} GPUs: give one, or one per GPU",
                                 param_hint="--device-id/--count")
    try:
        ids = [parse_device_id(d, "--device-id") for d in device_ids] * (n_gpus if len(device_ids) == 1 else 1)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="--device-id") from exc
    if gpu is not None:
        return [geometry_for(gpu, None)] * n_gpus, ids or None
    models = [gpu_for_device_id(d) for d in ids]
    if None in models:
        unknown = ids[models.index(None)]
        raise click.BadParameter(f"no built-in GPU has device id 0x{unknown:08X}; name its model with --gpu "
                                 "(`migrator gpus` lists them)", param_hint="--device-id")
    return [geometry_for(m, None) for m in models], ids


def _import_targets(import_config: Any, path: str, name: str, geometries: list[Any], current: Any,
                    device_ids: Any) -> Any:
    try:
        return import_config(path, name, geometries, current=current, device_ids=device_ids)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="CONFIG_FILE") from exc


def _apply_targets(backend: Any, targets: Any, current: list[str], journal_path: str | None) -> None:
    from ..actuation.reconfig import apply

    journal = open_journal(journal_path)
    try:
        for t in targets:
            if not t.mig_enabled:
                click.echo(f"gpu{t.index}: mig-enabled is false; migrator does not switch MIG mode: skipped", err=True)
                continue
            result = apply(backend, t.index, t.layout, expected=current[t.index], journal=journal)
            click.echo(f"gpu{t.index}: {result.before or '(empty)'} -> {result.after or '(empty)'} "
                       f"({result.executed} actions)", err=True)
    except MigratorError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if journal is not None:
            journal.close()
