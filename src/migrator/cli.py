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
from .geometry.geometry import Geometry, Transition, known_gpus

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
    from .geometry._nvml_read import default_nvml

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
    from .workload.scenario import Scenario

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

    from .planning.planner import Planner

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
    from .planning.planner import Planner
    from .workload.scenario import Scenario

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


# -- simulate -----------------------------------------------------------------------------------


def _results_table(comparison: Any) -> Table:
    means, spread = comparison.table(), comparison.spread()
    table = Table(title=f"{comparison.scenario}: {len(comparison.seeds)} seed(s), mean ± std")
    for header in ("policy", "Goodput", "SLO attainment", "mean accuracy", "reconfigurations",
                   "decision p50 (ms)", "decision p99 (ms)"):
        table.add_column(header, justify="left" if header == "policy" else "right")
    for name, row in means.items():
        sd = spread[name]
        table.add_row(
            name, f"{row['goodput']:,.0f} ± {sd['goodput']:,.0f}",
            f"{row['slo_attainment']:.3f}", f"{row['mean_accuracy']:.3f}",
            f"{row['reconfigurations']:.1f}", f"{row['decision_ms_p50']:.1f}", f"{row['decision_ms_p99']:.1f}",
        )
    return table


def _improvement_lines(comparison: Any) -> list[str]:
    if "migrator" not in comparison.runs:
        return []
    lines = []
    for other in comparison.runs:
        if other == "migrator":
            continue
        gain = comparison.improvement(other)
        if other == "oracle":
            lines.append(f"migrator earns {1 + gain:.1%} of the oracle's Goodput")
        else:
            lines.append(f"migrator vs {other}: {gain:+.1%} Goodput")
    return lines


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--policies", default="migrator,ekya,astraea,paris,static,oracle", show_default=True,
              help="Comma-separated policies to compare: migrator, oracle, static, ekya, astraea, paris.")
@click.option("--seeds", "n_seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Replays per policy, on arrivals drawn with the scenario's seed and the N-1 after it "
                   "(the same seeds for every policy).")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0, min_open=True),
              help="Simulated seconds (default: the scenario's duration_s).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write results.json, results.csv and, with migrator[plot] installed, PNG plots here.")
@click.option("--json", "as_json", is_flag=True, help="Print results.json's document instead of the table.")
def simulate(scenario: str | None, policies: str, n_seeds: int, duration_s: float | None,
             out_dir: str | None, as_json: bool) -> None:
    """Replay SCENARIO (the built-in default when omitted) under several policies and
    compare their Goodput.

    Each policy runs on the same arrivals for each seed; decisions take effect after the
    wall-clock time the policy took to make them. Prints a table per policy (Goodput, SLO
    attainment, mean accuracy, MIG reconfigurations, decision latency p50/p99) and
    migrator's Goodput gain over each other policy.
    """
    from rich.progress import Progress

    from .evaluation.comparison import compare, parse_policies

    s = _scenario(scenario)
    try:
        names = parse_policies(policies)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="--policies") from exc
    if duration_s is not None and duration_s > s.duration_s:
        raise click.BadParameter(f"at most the scenario's duration_s ({s.duration_s:g})", param_hint="--duration")
    seeds = [s.seed + k for k in range(n_seeds)]
    slots = s.n_slots if duration_s is None else max(1, round(duration_s / s.slot_s))
    total = len(names) * len(seeds) * slots
    with Progress(console=Console(stderr=True), transient=True, disable=as_json) as progress:
        task = progress.add_task("simulating", total=total)

        def advance(policy: str, seed: int, slot: int) -> None:
            progress.update(task, advance=1, description=f"{policy}, seed {seed}")

        try:
            result = compare(s, names, seeds, duration_s=duration_s, on_slot=advance)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    if out_dir is not None:
        written = result.write(out_dir)
        written += _plots(result, out_dir)
    if as_json:
        click.echo(result.to_json())
        return
    _console().print(_results_table(result))
    for line in _improvement_lines(result):
        click.echo(line)
    if out_dir is not None:
        click.echo("wrote " + ", ".join(str(p) for p in written))


def _plots(result: Any, out_dir: str) -> list[Any]:
    try:
        from .evaluation.plots import plot_comparison

        return plot_comparison(result, out_dir)
    except MigratorError as exc:  # matplotlib missing: the tables are still written
        click.echo(f"no plots: {exc}", err=True)
        return []


# -- the actuator: run, status, recover, mig-parted ---------------------------------------------

_BACKENDS = ("emulator", "nvml")


def _backend_option(f: Any) -> Any:
    f = click.option("--emulator-state", "emulator_state", type=click.Path(dir_okay=False),
                     help="With the emulator: load the emulated GPUs from this JSON file (when it exists) "
                          "and save them back, so that commands share one emulated machine.")(f)
    return click.option("--backend", type=click.Choice(_BACKENDS), default="emulator", show_default=True,
                        help="emulator: in-memory GPUs built from the scenario; nvml: this machine's GPUs "
                             "(needs migrator[nvml] and a driver).")(f)


class _Backend:
    """An open NvmlBackend over the emulator or the real NVML, saving the emulator's state
    on exit. NVML that cannot start is a one-line error, never a traceback."""

    def __init__(self, kind: str, scenario: Any, state_path: str | None) -> None:
        self.kind, self.scenario, self.state_path = kind, scenario, state_path
        self.emulator: Any = None

    def __enter__(self) -> Any:
        from pathlib import Path

        from .actuation.emulator import NvmlEmulator
        from .actuation.nvml import NvmlBackend

        try:
            if self.kind == "nvml":
                self.backend = NvmlBackend()
            else:
                path = Path(self.state_path) if self.state_path else None
                self.emulator = (NvmlEmulator.load(path) if path is not None and path.exists()
                                 else NvmlEmulator.from_scenario(self.scenario or _scenario(None)))
                self.backend = NvmlBackend(self.emulator)
            return self.backend.open()
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise click.ClickException(f"cannot load the emulator state {self.state_path}: {exc}") from exc

    def __exit__(self, *exc: object) -> None:
        self.backend.close()
        if self.emulator is not None and self.state_path:
            self.emulator.save(self.state_path)


class _StderrLog:
    """The decision log on stderr while a command runs (stdout stays for --json), put back
    as it was afterwards."""

    def __init__(self, level: str) -> None:
        import logging

        self.logger = logging.getLogger("migrator")
        self.handler = logging.StreamHandler()
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.level = level.upper()

    def __enter__(self) -> None:
        self.saved = self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(self.level)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved)


def _open_journal(path: str | None) -> Any:
    if path is None:
        return None
    from .actuation.journal import Journal

    try:
        return Journal(path)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="--journal") from exc


def _decision_lines(decision: Any) -> list[str]:
    head = f"slot {decision.slot}: decided in {decision.decision_ms:.0f} ms, applied in {decision.apply_ms:.0f} ms"
    lines = [head + (" (dry run: nothing changed)" if decision.dry_run else "")]
    for g, layout in enumerate(decision.layouts):
        changed = " (reconfigured)" if g in decision.reconfigured else ""
        lines.append(f"  gpu{g}: {layout or '(empty)'}{changed}")
        if decision.dry_run:
            lines += [f"    {i}. {text}" for i, text in enumerate(decision.actions[g], 1)]
    return lines + [f"  failed: {f}" for f in decision.failures]


def _device_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated device indices such as 0,1, got {text!r}",
                                 param_hint="--devices") from exc


def _write_atomically(path: str, text: str) -> None:
    import os

    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)  # node_exporter's textfile collector never sees half a file


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@_backend_option
@click.option("--dry-run", is_flag=True, help="Plan and print the ordered actions; change nothing.")
@click.option("--steps", type=click.IntRange(min=1), help="Make N decisions and exit (default: until SIGTERM/SIGINT).")
@click.option("--json", "as_json", is_flag=True,
              help="At the end print a JSON summary (decisions, reconfigurations, failures, decision_ms_p50, gpus).")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False),
              help="Append every NVML action to this journal before running it (for `migrator recover`).")
@click.option("--arrivals", "arrivals_csv", type=click.Path(dir_okay=False),
              help="Observe arrivals from this CSV as it is appended to (a time column, one count column per "
                   "tenant, one row per slot); default: replay the scenario's own arrivals.")
@click.option("--force", is_flag=True, help="Destroy instances that have running processes.")
@click.option("--devices", "devices_text", metavar="I,J,...",
              help="Device index of each scenario GPU, in order (default: the scenario's own `devices`, "
                   "else 0,1,...).")
@click.option("--clock", type=click.Choice(["auto", "simulated", "wall"]), default="auto", show_default=True,
              help="simulated: slots pass as fast as decisions are made; wall: real time. "
                   "auto: simulated with the emulator, wall with NVML.")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535),
              help="Serve Prometheus metrics on http://HOST:PORT/metrics.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@click.option("--metrics-file", type=click.Path(dir_okay=False),
              help="Write the Prometheus metrics to this file after every step (textfile collector).")
@click.option("--horizon", type=click.IntRange(min=1), help="Slots to plan ahead (default: the scenario's).")
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True),
              help="Solver time limit per decision in seconds (default: the scenario's).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Log level of the decision log (on stderr).")
def run(scenario: str | None, backend: str, emulator_state: str | None, dry_run: bool, steps: int | None,
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
    """
    from .actuation.controller import Controller, CsvTailArrivals, SimulatedClock, TraceArrivals, WallClock, serve_metrics

    s = _scenario(scenario)
    devices = _device_list(devices_text)
    if devices is None and backend == "emulator":
        devices = list(range(len(s.gpus)))  # the emulator's devices are the scenario's GPUs, in order
    tenants = [t.name for t in s.tenants]
    arrivals = CsvTailArrivals(arrivals_csv, tenants) if arrivals_csv else TraceArrivals(s.arrivals(), tenants)
    simulated = clock == "simulated" or (clock == "auto" and backend == "emulator")
    journal = _open_journal(journal_path)
    server = None
    try:
        with _StderrLog(log_level), _Backend(backend, s, emulator_state) as opened:
            try:
                controller = Controller(s, opened, arrivals=arrivals, config=_planner_settings(s, horizon, time_limit_s),
                                        clock=SimulatedClock() if simulated else WallClock(), journal=journal,
                                        force=force, dry_run=dry_run, devices=devices)
            except MigratorError as exc:
                raise click.ClickException(str(exc)) from exc
            if metrics_port is not None:
                server = serve_metrics(controller.metrics, metrics_port, metrics_host)

            def each(decision: Any) -> None:
                if metrics_file:
                    _write_atomically(metrics_file, controller.metrics.render())
                if not as_json:
                    for line in _decision_lines(decision):
                        click.echo(line)

            try:
                summary = controller.run(steps=steps, on_step=each)
            except MigratorError as exc:
                raise click.ClickException(str(exc)) from exc
    finally:
        if server is not None:
            server.shutdown()
        if journal is not None:
            journal.close()
    if as_json:
        _echo_json(summary)
        return
    click.echo(f"{summary['decisions']} decisions, {summary['reconfigurations']} reconfigurations, "
               f"{summary['failures']} failures, decision p50 {summary['decision_ms_p50'] or 0:.0f} ms")


def _planner_settings(s: Any, horizon: int | None, time_limit_s: float | None) -> Any:
    """The scenario's planner settings with the command line's overrides."""
    from dataclasses import replace

    changes = {k: v for k, v in (("horizon", horizon), ("time_limit_s", time_limit_s)) if v is not None}
    return replace(s.planner, **changes)


def _status_lines(state: Any) -> list[str]:
    mig = "MIG on" if state.mig_enabled else "MIG off"
    lines = [f"gpu{state.index}  {state.name} ({state.model})  {mig}  {state.layout or '(no instances)'}"]
    for gi in state.instances:
        cis = ",".join(str(c.id) for c in gi.compute_instances) or "none (incomplete)"
        pids = ",".join(map(str, gi.pids)) or "-"
        lines.append(f"  GPU instance {gi.id:>2}  {str(gi.placement):<14} compute instances {cis:<8} processes {pids}")
    return lines


@main.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@_backend_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document (backend, gpus).")
def status(scenario: str | None, backend: str, emulator_state: str | None, as_json: bool) -> None:
    """Show each GPU's MIG mode, layout, instances (ids, compute instances, processes).

    Read-only. With the emulator, SCENARIO (or --emulator-state) says what the GPUs hold.
    """
    with _Backend(backend, _scenario(scenario) if backend == "emulator" else None, emulator_state) as opened:
        try:
            states = opened.states()
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        _echo_json({"backend": backend, "gpus": [s.to_dict() for s in states]})
        return
    for state in states:
        for line in _status_lines(state):
            click.echo(line)


@main.command()
@click.argument("journal", type=click.Path(exists=True, dir_okay=False))
@_backend_option
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

    from .actuation.reconfig import recover as recover_journal

    with _Backend(backend, None, emulator_state) as opened:
        try:
            results = recover_journal(journal, opened, prefer=prefer, force=force)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        _echo_json([asdict(r) for r in results])
    else:
        for r in results:
            note = f" ({r.error})" if r.error else ""
            click.echo(f"gpu{r.gpu}: {r.outcome}: {r.layout or '(empty)'}{note}")
    if any(r.outcome == "failed" for r in results):
        raise SystemExit(1)


@main.group("mig-parted")
def mig_parted() -> None:
    """Export plans to, and import targets from, NVIDIA mig-parted configs (version v1).

    mig-parted keeps instance counts per profile, not placements: an exported config
    loses where instances sit, and an imported one is placed by migrator's geometry core.
    """


@mig_parted.command("export")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False),
              help="Export this plan (the output of `migrator plan --json`) instead of planning SCENARIO.")
@click.option("--slot", "slots", type=click.IntRange(min=0), multiple=True,
              help="Slot to export (repeatable); default 0, the decision.")
@click.option("--prefix", default="migrator", show_default=True, help="Configs are named PREFIX-slot-T.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--horizon", type=click.IntRange(min=1), help="Slots to plan ahead (default: the scenario's).")
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True),
              help="Solver time limit in seconds (default: the scenario's).")
def mig_parted_export(scenario: str | None, plan_path: str | None, slots: tuple[int, ...], prefix: str,
                      output: str | None, horizon: int | None, time_limit_s: float | None) -> None:
    """Write a plan's layouts as a mig-parted config (one config per exported slot)."""
    from pathlib import Path

    from .actuation.migparted import dump, export_plan
    from .planning.planner import Planner

    if plan_path is not None:
        try:
            plan_doc: Any = json.loads(Path(plan_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"cannot read the plan: {exc}", param_hint="--plan") from exc
    else:
        s = _scenario(scenario)
        try:
            plan_doc = Planner(s, _planner_settings(s, horizon, time_limit_s)).plan()
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    try:
        text = dump(export_plan(plan_doc, slots=slots or (0,), prefix=prefix))
    except (MigratorError, KeyError, TypeError) as exc:
        raise click.BadParameter(f"not a migrator plan: {exc}", param_hint="--plan/--slot") from exc
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")


@mig_parted.command("import")
@click.argument("config_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("name")
@click.option("--gpu", help="GPU model of every device (e.g. A100-40GB), when not read from a backend.")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --gpu: how many such GPUs (what `devices: all` means).")
@click.option("--backend", type=click.Choice(_BACKENDS),
              help="Read the GPUs (models and current layouts) from this backend instead of --gpu.")
@click.option("--emulator-state", "emulator_state", type=click.Path(dir_okay=False),
              help="With --backend emulator: the emulated GPUs' state file.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Apply the targets through the backend (journaled with --journal).")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False), help="Journal for --apply.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of targets.")
def mig_parted_import(config_file: str, name: str, gpu: str | None, count: int, backend: str | None,
                      emulator_state: str | None, do_apply: bool, journal_path: str | None, as_json: bool) -> None:
    """Read configuration NAME of mig-parted CONFIG_FILE as target layouts.

    Placements are chosen by the geometry core: the arrangement that keeps most of a GPU's
    current instances (read from --backend), else the first valid one.
    """
    from dataclasses import asdict

    from .actuation.migparted import import_config

    if (gpu is None) == (backend is None):
        raise click.UsageError("give either --gpu MODEL (with --count) or --backend")
    if do_apply and backend is None:
        raise click.UsageError("--apply needs --backend")
    if backend is None:
        geometries = [_geometry(gpu, None)] * count
        targets = _import_targets(import_config, config_file, name, geometries, None)
    else:
        with _Backend(backend, None, emulator_state) as opened:
            try:
                states = opened.states()
                geometries = [opened.geometry(st.index) for st in states]
            except MigratorError as exc:
                raise click.ClickException(str(exc)) from exc
            targets = _import_targets(import_config, config_file, name, geometries, [st.layout for st in states])
            if do_apply:
                _apply_targets(opened, targets, [str(st.layout) for st in states], journal_path)
    if as_json:
        _echo_json([asdict(t) for t in targets])
        return
    for t in targets:
        mig = t.layout or "(empty)" if t.mig_enabled else "MIG disabled (migrator leaves MIG mode alone)"
        click.echo(f"gpu{t.index} ({geometries[t.index].name}): {mig}")


def _import_targets(import_config: Any, path: str, name: str, geometries: list[Any], current: Any) -> Any:
    try:
        return import_config(path, name, geometries, current=current)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="CONFIG_FILE") from exc


def _apply_targets(backend: Any, targets: Any, current: list[str], journal_path: str | None) -> None:
    from .actuation.reconfig import apply

    journal = _open_journal(journal_path)
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


# -- cluster scale (Ray): cluster, agent --------------------------------------------------------

_CLUSTER_HINT = "this command needs Ray: pip install 'migrator[cluster]'"


def _cluster_module() -> Any:
    """migrator.cluster, or a one-line error naming the extra when Ray is missing."""
    try:
        from .cluster import cluster
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "ray":
            raise click.ClickException(_CLUSTER_HINT) from None
        raise
    return cluster


def _cluster_lines(decision: Any) -> list[str]:
    late = sum(p.status != "solved" for p in decision.parts)
    slowest = max((p.solve_s for p in decision.parts), default=0.0) * 1e3
    lines = [f"slot {decision.slot}: decided in {decision.decision_ms:.0f} ms ({len(decision.parts)} parts, "
             f"{late} late, slowest {slowest:.0f} ms), applied in {decision.apply_ms:.0f} ms"]
    lines += [f"  gpu{g}: {layout or '(empty)'}{' (reconfigured)' if g in decision.reconfigured else ''}"
              for g, layout in enumerate(decision.layouts)]
    return lines + [f"  failed: {f}" for f in decision.failures]


@main.command("cluster")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--address", default="local", show_default=True,
              help="local: start Ray on this machine with emulated nodes; auto or HOST:PORT: join a running "
                   "Ray cluster whose GPU nodes run `migrator agent`.")
@click.option("--steps", type=click.IntRange(min=1), default=1, show_default=True, help="Decisions to make.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary (decisions, reconfigurations, failures, decision_ms_p50, gpus, parts).")
@click.option("--nodes", type=click.IntRange(min=1), help="local: emulated nodes (default: as the GPUs need).")
@click.option("--gpus-per-node", type=click.IntRange(min=1), default=2, show_default=True,
              help="local: GPUs of each emulated node (the scenario's GPUs dealt in order, repeated if needed).")
@click.option("--deadline", "deadline_s", type=click.FloatRange(min=0, min_open=True),
              help="Seconds the parts may take (default: the planner's time limit); late parts keep their layout.")
@click.option("--num-cpus", type=click.IntRange(min=1), help="local: CPUs Ray may use (default: all).")
@click.option("--horizon", type=click.IntRange(min=1), help="Slots to plan ahead (default: the scenario's).")
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True),
              help="Solver time limit per part in seconds (default: the scenario's).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True, help="Log level (on stderr).")
def cluster_command(scenario: str | None, address: str, steps: int, as_json: bool, nodes: int | None,
                    gpus_per_node: int, deadline_s: float | None, num_cpus: int | None, horizon: int | None,
                    time_limit_s: float | None, log_level: str) -> None:
    """Run the cluster controller on Ray: one agent per GPU node, the plan split per GPU and
    the parts solved in parallel within the deadline (docs/model.md, deploy/README.md)."""
    cluster = _cluster_module()
    s = _scenario(scenario)
    with _StderrLog(log_level):
        try:
            if address == "local":
                with cluster.LocalCluster(s, nodes=nodes, gpus_per_node=gpus_per_node, num_cpus=num_cpus) as local:
                    summary = _run_cluster(cluster, local.scenario, local.agents, s, steps, as_json, deadline_s,
                                           horizon, time_limit_s)
            else:
                summary = _join_and_run(cluster, address, s, steps, as_json, deadline_s, horizon, time_limit_s)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        _echo_json(summary)
        return
    click.echo(f"{summary['decisions']} decisions, {summary['reconfigurations']} reconfigurations, "
               f"{summary['failures']} failures, {summary['late_parts']} late parts, "
               f"decision p50 {summary['decision_ms_p50'] or 0:.0f} ms")


def _join_and_run(cluster: Any, address: str, s: Any, steps: int, as_json: bool, deadline_s: float | None,
                  horizon: int | None, time_limit_s: float | None) -> dict[str, Any]:
    import ray

    ray.init(address=address, namespace=cluster.NAMESPACE, configure_logging=False)
    try:
        agents = cluster.find_agents()
        if not agents:
            raise click.ClickException(f"no migrator agent in the Ray cluster at {address}: run `migrator agent` "
                                       "on its GPU nodes (deploy/README.md)")
        reports = ray.get([a.report.remote() for a in agents.values()])
        gpus = [(st.model, str(st.layout)) for report in reports for st in report.states]
        return _run_cluster(cluster, cluster.cluster_scenario(s, gpus), agents, s, steps, as_json, deadline_s,
                            horizon, time_limit_s)
    finally:
        ray.shutdown()


def _run_cluster(cluster: Any, cluster_scenario: Any, agents: Any, s: Any, steps: int, as_json: bool,
                 deadline_s: float | None, horizon: int | None, time_limit_s: float | None) -> dict[str, Any]:
    cluster.warm_up()
    controller = cluster.ClusterController(cluster_scenario, agents, config=_planner_settings(s, horizon, time_limit_s),
                                           deadline_s=deadline_s)

    def each(decision: Any) -> None:
        if not as_json:
            for line in _cluster_lines(decision):
                click.echo(line)

    return controller.run(steps=steps, on_step=each)


@main.command("agent")
@click.option("--address", required=True, help="The Ray head's GCS address, HOST:PORT (e.g. ray-head:6379).")
@click.option("--node", envvar="NODE_NAME", required=True,
              help="This node's name (default: $NODE_NAME, the Kubernetes downward API's spec.nodeName).")
@click.option("--backend", type=click.Choice(["nvml", "emulator"]), default="nvml", show_default=True,
              help="nvml: this node's GPUs (needs migrator[nvml], a driver and root); emulator: emulated GPUs.")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False),
              default="/var/lib/migrator/journal.jsonl", show_default=True,
              help="The node's reconfiguration journal (keep it on the host: recovery after a restart reads it).")
@click.option("--emulator-state", "emulator_state", type=click.Path(dir_okay=False),
              help="Emulator: the JSON file the emulated GPUs live in.")
@click.option("--gpu", "gpus", multiple=True, help="Emulator: the model of each emulated GPU (repeat the option).")
@click.option("--num-cpus", type=click.IntRange(min=0), help="CPUs this node lends to planning tasks.")
@click.option("--force", is_flag=True, help="Destroy instances that have running processes.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Log level (on stderr).")
def agent_command(address: str, node: str, backend: str, journal_path: str, emulator_state: str | None,
                  gpus: tuple[str, ...], num_cpus: int | None, force: bool, log_level: str) -> None:
    """Join the Ray cluster as this GPU node and run its agent until SIGTERM (a DaemonSet pod's command)."""
    cluster = _cluster_module()
    from .cluster.agent import AgentSpec

    def ready(report: Any) -> None:
        layouts = ", ".join(f"gpu{st.index} {st.layout or '(empty)'}" for st in report.states)
        click.echo(f"agent {report.node} ready: {layouts}", err=True)

    with _StderrLog(log_level):
        try:
            spec = AgentSpec(node=node, backend=backend, journal=journal_path, emulator_state=emulator_state,
                             gpus=gpus, force=force)
            cluster.serve_agent(address, spec, num_cpus=num_cpus, ready=ready)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
