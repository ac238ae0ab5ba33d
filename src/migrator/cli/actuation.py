"""``migrator run``, ``status``, ``recover``: the controller on real or emulated GPUs."""

from __future__ import annotations

from typing import Any

import click

from ..errors import MigratorError
from ._common import (
    HORIZON,
    TIME_LIMIT,
    Backend,
    StderrLog,
    backend_option,
    device_list,
    echo_json,
    load_scenario,
    metrics_options,
    mig_manager_settings,
    open_journal,
    planner_settings,
    run_backend_options,
    start_metrics,
    stop_metrics,
    writable_file,
)


def _decision_lines(decision: Any) -> list[str]:
    head = f"slot {decision.slot}: decided in {decision.decision_ms:.0f} ms, applied in {decision.apply_ms:.0f} ms"
    lines = [head + (" (dry run: nothing changed)" if decision.dry_run else "")]
    for g, layout in enumerate(decision.layouts):
        changed = " (reconfigured)" if g in decision.reconfigured else ""
        lines.append(f"  gpu{g}: {layout or '(empty)'}{changed}")
        if decision.dry_run:
            lines += [f"    {i}. {text}" for i, text in enumerate(decision.actions[g], 1)]
    return lines + [f"  failed: {f}" for f in decision.failures]


@click.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@run_backend_options
@click.option("--dry-run", is_flag=True, help="Plan and print the ordered actions; change nothing.")
@click.option("--steps", type=click.IntRange(min=1), help="Make N decisions and exit (default: until SIGTERM/SIGINT).")
@click.option("--json", "as_json", is_flag=True,
              help="At the end print a JSON summary (decisions, reconfigurations, failures, decision_ms_p50, gpus).")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False),
              help="Append every NVML action to this journal before running it (for `migrator recover`); "
                   "with mig-manager, each GPU's change as one transaction.")
@click.option("--arrivals", "arrivals_csv", type=click.Path(dir_okay=False),
              help="Observe arrivals from this CSV as it is appended to (a time column, one count column per "
                   "tenant, one row per slot); default: replay the scenario's own arrivals.")
@click.option("--force", is_flag=True, help="Destroy instances that have running processes.")
@click.option("--devices", "devices_text", metavar="I,J,...",
              help="Device index of each scenario GPU, in order (default: the scenario's own `devices`, "
                   "else 0,1,...).")
@click.option("--clock", type=click.Choice(["auto", "simulated", "wall"]), default="auto", show_default=True,
              help="simulated: slots pass as fast as decisions are made; wall: real time. "
                   "auto: simulated with the emulator, wall otherwise.")
@metrics_options
@click.option("--metrics-file", type=click.Path(dir_okay=False),
              help="Write the Prometheus metrics to this file after every step (textfile collector).")
@click.option("--horizon", type=HORIZON, help="Slots to plan ahead (default: the scenario's).")
@click.option("--time-limit", "time_limit_s", type=TIME_LIMIT,
              help="Solver time limit per decision in seconds (default: the scenario's).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Log level of the decision log (on stderr).")
def run(scenario: str | None, backend: str, emulator_state: str | None, node: str | None, namespace: str,
        config_map: str | None, settle_s: float | None, mig_manager_timeout_s: float | None,
        dry_run: bool, steps: int | None,
        as_json: bool, journal_path: str | None, arrivals_csv: str | None, force: bool, devices_text: str | None,
        clock: str, metrics_port: int | None,
        metrics_host: str, metrics_file: str | None, horizon: int | None, time_limit_s: float | None,
        log_level: str) -> None:
    """Run the online controller on SCENARIO (the built-in default when omitted).

    Every slot: observe arrivals, update the forecasts, re-plan, apply the first slot
    (make-before-break, journaled, rolled back on failure). With the emulator a simulated
    clock runs the slots as fast as the planner decides; with NVML the slots are real
    time. SIGTERM or SIGINT stops after the step under way, leaving valid layouts.
    GPU i of the scenario is NVML device i unless --devices, or the scenario's own
    `devices` entries, say otherwise (the emulator emulates the scenario's GPUs in order).

    With --backend mig-manager, on a GPU Operator cluster, each step's layouts for all of
    --node's GPUs become one mig-parted configuration in the ConfigMap, and the node's
    nvidia.com/mig.config label names it; the GPU Operator's mig-manager applies it and
    migrator waits for nvidia.com/mig.config.state. A change takes minutes and recreates
    every instance of a GPU whose counts change, so choose it only where mig-manager must
    stay in charge and layouts change rarely (a slot_s of hours); the direct NVML backend
    changes one instance without stopping the others (deploy/README.md).
    """
    from ..actuation.controller import (
        Controller,
        CsvTailArrivals,
        SimulatedClock,
        TraceArrivals,
        WallClock,
    )

    writable_file(metrics_file, "--metrics-file")
    mig_manager = mig_manager_settings(backend, node, namespace, config_map, settle_s, mig_manager_timeout_s)
    s = load_scenario(scenario)
    devices = device_list(devices_text, len(s.gpus))
    if devices is None and backend == "emulator":
        devices = list(range(len(s.gpus)))  # the emulator's devices are the scenario's GPUs, in order
    tenants = [t.name for t in s.tenants]
    try:
        arrivals = CsvTailArrivals(arrivals_csv, tenants) if arrivals_csv else TraceArrivals(s.arrivals(), tenants)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="--arrivals") from exc
    simulated = clock == "simulated" or (clock == "auto" and backend == "emulator")
    journal = open_journal(journal_path)
    server = None
    try:
        with StderrLog(log_level), Backend(backend, s, emulator_state, mig_manager) as opened:
            try:
                controller = Controller(s, opened, arrivals=arrivals, config=planner_settings(s, horizon, time_limit_s),
                                        clock=SimulatedClock() if simulated else WallClock(), journal=journal,
                                        force=force, dry_run=dry_run, devices=devices)
            except MigratorError as exc:
                raise click.ClickException(str(exc)) from exc
            server = start_metrics(controller.metrics, metrics_port, metrics_host)

            def each(decision: Any) -> None:
                if metrics_file:
                    controller.metrics.write_textfile(metrics_file)
                if not as_json:
                    for line in _decision_lines(decision):
                        click.echo(line)

            try:
                summary = controller.run(steps=steps, on_step=each)
            except MigratorError as exc:
                raise click.ClickException(str(exc)) from exc
    finally:
        stop_metrics(server)
        if journal is not None:
            journal.close()
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{summary['decisions']} decisions, {summary['reconfigurations']} reconfigurations, "
               f"{summary['failures']} failures, decision p50 {summary['decision_ms_p50'] or 0:.0f} ms")


def _status_lines(state: Any) -> list[str]:
    mig = "MIG on" if state.mig_enabled else "MIG off"
    lines = [f"gpu{state.index}  {state.name} ({state.model})  {mig}  {state.layout or '(no instances)'}"]
    for gi in state.instances:
        cis = ",".join(str(c.id) for c in gi.compute_instances) or "none (incomplete)"
        pids = ",".join(map(str, gi.pids)) or "-"
        lines.append(f"  GPU instance {gi.id:>2}  {str(gi.placement):<14} compute instances {cis:<8} processes {pids}")
    return lines


@click.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document (backend, gpus).")
def status(scenario: str | None, backend: str, emulator_state: str | None, as_json: bool) -> None:
    """Show each GPU's MIG mode, layout, instances (ids, compute instances, processes).

    Read-only. With the emulator, SCENARIO (or --emulator-state) says what the GPUs hold.
    """
    with Backend(backend, load_scenario(scenario) if backend == "emulator" else None, emulator_state) as opened:
        try:
            states = opened.states()
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json({"backend": backend, "gpus": [s.to_dict() for s in states]})
        return
    for state in states:
        for line in _status_lines(state):
            click.echo(line)


@click.command()
@click.argument("journal", type=click.Path(exists=True, dir_okay=False))
@backend_option
@click.option("--to", "prefer", type=click.Choice(["target", "fallback"]), default="target", show_default=True,
              help="Finish the interrupted change (target) or undo it (fallback, the last good layout).")
@click.option("--force", is_flag=True, help="Destroy instances that have running processes.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one entry per GPU.")
def recover(journal: str, backend: str, emulator_state: str | None, prefer: str, force: bool, as_json: bool) -> None:
    """Finish what a crash left half-done, from JOURNAL (written by `migrator run --journal`).

    Each GPU whose last transaction is open is observed and brought to that transaction's
    target (or its last good layout with --to fallback); kept instances are not touched.
    Exit 1 when a GPU could not be brought to either layout.
    """
    from dataclasses import asdict

    from ..actuation.reconfig import recover as recover_journal

    with Backend(backend, None, emulator_state) as opened:
        try:
            results = recover_journal(journal, opened, prefer=prefer, force=force)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json([asdict(r) for r in results])
    elif not results:
        click.echo(f"{journal}: no transactions, nothing to recover")
    else:
        for r in results:
            note = f" ({r.error})" if r.error else ""
            click.echo(f"gpu{r.gpu}: {r.outcome}: {r.layout or '(empty)'}{note}")
    if any(r.outcome == "failed" for r in results):
        raise SystemExit(1)
