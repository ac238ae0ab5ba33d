"""``migrator simulate``: policies replayed over a scenario and compared."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..errors import MigratorError
from ._common import SECONDS, SEEDS, load_scenario, new_console, writable_folder

# The gradings of ``migrator.evaluation.requests.GRADERS`` (not imported here: the command's
# module loads no simulator until it runs; a test holds the two lists equal).
GRADERS = ("request", "slot")
# ``migrator.evaluation.latency.LATENCY_MODES``, for the same reason.
LATENCY_MODES = ("model", "wall")
# ``migrator.evaluation.suite.SUITE_DURATION_S`` (a test holds the two equal).
SUITE_DURATION_S = 60.0
LATENCY_WORDS = {"model": "decisions charged their measured cost", "wall": "decisions charged their wall clock"}
GRADER_WORDS = {"request": "request by request", "slot": "by the planner's slot model"}


def _spread_words(comparison: Any) -> str:
    from ..evaluation.stats import CI_WORDS

    return f"mean ± {CI_WORDS}" if len(comparison.seeds) > 1 else "one seed"


def _results_table(comparison: Any) -> Table:
    from ..evaluation.comparison import WORST, plus_minus

    means, intervals = comparison.table(), comparison.intervals()
    table = Table(title=f"{comparison.scenario}: {len(comparison.seeds)} seed(s), {_spread_words(comparison)}, "
                        f"graded {GRADER_WORDS[comparison.grader]}, {LATENCY_WORDS[comparison.latency]}")
    for header in ("policy", "Goodput", "SLO attainment", "worst tenant's SLO", "mean accuracy", "reconfigurations",
                   "decision p50 (ms)", "decision p99 (ms)"):
        table.add_column(header, justify="left" if header == "policy" else "right")
    for name, row in means.items():
        ci = intervals[name]
        table.add_row(
            name, plus_minus(row["goodput"], ci["goodput"], ",.0f"),
            plus_minus(row["slo_attainment"], ci["slo_attainment"], ".3f"),
            f"{plus_minus(row[WORST], ci[WORST], '.3f')} ({comparison.worst_tenant(name)})",
            plus_minus(row["mean_accuracy"], ci["mean_accuracy"], ".3f"),
            f"{row['reconfigurations']:.1f}", f"{row['decision_ms_p50']:.1f}", f"{row['decision_ms_p99']:.1f}",
        )
    return table


def _tenant_table(comparison: Any) -> Table:
    """Per policy and tenant: Goodput, SLO attainment and accuracy (headline grading)."""
    from ..evaluation.comparison import plus_minus

    table = Table(title=f"per tenant, {_spread_words(comparison)}")
    for header in ("policy", "tenant", "Goodput", "SLO attainment", "mean accuracy"):
        table.add_column(header, justify="left" if header in ("policy", "tenant") else "right")
    for name, tenants in comparison.tenants().items():
        for tenant, row in tenants.items():
            ci = row["ci95"]
            table.add_row(name, tenant, plus_minus(row["goodput"], ci["goodput"], ",.0f"),
                          plus_minus(row["slo_attainment"], ci["slo_attainment"], ".3f"),
                          plus_minus(row["mean_accuracy"], ci["mean_accuracy"], ".3f"))
    return table


def _other_grading_lines(comparison: Any) -> list[str]:
    """The gradings beside the headline, one line each: Goodput and SLO attainment per policy."""
    gradings = comparison.gradings()
    lines = []
    for grader in GRADERS:
        if grader == comparison.grader:
            continue
        figures = [f"{name} {by[grader]['goodput']:,.0f} ({by[grader]['slo_attainment']:.3f} SLO)"
                   for name, by in gradings.items() if grader in by]
        if figures:
            lines.append(f"graded {GRADER_WORDS[grader]}: " + ", ".join(figures))
    return lines


def _improvement_lines(comparison: Any) -> list[str]:
    if "migrator" not in comparison.runs:
        return []
    lines = []
    for other in comparison.runs:
        if other == "migrator":
            continue
        gain = comparison.improvement(other)
        half = comparison.improvement_ci(other)
        ci = "" if half is None else f" ± {half:.1%} (95 % CI, Student t, {len(comparison.seeds)} seeds)"
        if other == "oracle":
            lines.append(f"migrator earns {1 + gain:.1%}{ci} of the oracle's Goodput")
        else:
            lines.append(f"migrator vs {other}: {gain:+.1%}{ci} Goodput")
    return lines


def _repeat_lines(comparison: Any) -> list[str]:
    """Per policy whose decisions a time limit cut short: how many, and why that matters."""
    lines = []
    for name, runs in comparison.runs.items():
        cut = sum(run.time_limited_decisions for run in runs)
        if cut:
            total = sum(len(run.decisions) for run in runs)
            lines.append(f"{comparison.scenario}: {cut} of {name}'s {total} decisions stopped at their time limit; "
                         "what they found depends on this machine's speed and load, so this run may not repeat "
                         "exactly (planner.node_limit makes decisions repeat: docs/results.md, \"Runs that repeat\")")
    return lines


@click.command()
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--policies", default="migrator,ekya,astraea,paris,static,oracle", show_default=True,
              help="Comma-separated policies to compare: migrator, oracle, static, ekya, astraea, paris.")
@click.option("--seeds", "n_seeds", type=SEEDS, default=1, show_default=True,
              help="Replays per policy, on arrivals drawn with the scenario's seed and the N-1 after it "
                   "(the same seeds for every policy; on a recorded trace each seed replays another window "
                   "of it). With several seeds every mean carries its 95 % Student-t confidence interval.")
@click.option("--duration", "duration_s", type=SECONDS,
              help="Simulated seconds (default: the scenario's duration_s).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write results.json, results.csv, results.md (the tables, per tenant too) and, with "
                   "migrator[plot] installed, PNG plots here.")
@click.option("--json", "as_json", is_flag=True, help="Print results.json's document instead of the table.")
@click.option("--grader", type=click.Choice(GRADERS), default="request", show_default=True,
              help="The headline grading: 'request' serves individual requests on each policy's instance "
                   "timeline (routing, batching, set-up, per-request SLO); 'slot' uses the planner's own "
                   "analytic SLO capacity per slot. results.json reports both.")
@click.option("--warmup", "warmup_s", type=SECONDS,
              help="Seconds of traffic before the scored window, never scored, from which every policy takes "
                   "its average rates (PARIS's and static's sizing, the first forecast). Default: one earlier "
                   "period of the scenario (its duration_s) drawn with its own seed for synthetic arrivals; for a "
                   "recorded trace, the slots before the window (half the spare ones, at most the window's "
                   "length; the seed picks the window).")
@click.option("--latency", type=click.Choice(LATENCY_MODES), default="model", show_default=True,
              help="How long each decision delays its effect. 'model': one fixed cost per policy, the median of a "
                   "few of its decisions, measured once per machine and kept (in $MIGRATOR_DECISION_COSTS, else "
                   "~/.cache/migrator/decision-costs.json; results.json records it), so that a seed repeats "
                   "exactly unless a decision stops at its time limit (the run says so; planner.node_limit avoids "
                   "it); 'wall': the wall-clock time each decision took, which moves with the machine's load.")
@click.option("--node-limit", "node_limit", type=click.IntRange(min=0),
              help="Hold every planner decision (migrator, oracle, static) to N branch-and-bound nodes instead of "
                   "the clock (planner.node_limit), so that a run repeats exactly on any machine and under any "
                   "load; slower where a program's root node is hard (docs/results.md, \"Runs that repeat\"). "
                   "Default: the scenario's own setting (none: the time limit).")
@click.option("--suite", is_flag=True,
              help="Run every scenario of the bundled suite (real traces, mixed GPUs; docs/scenarios.md) instead of "
                   f"SCENARIO, each for --duration simulated seconds (default {SUITE_DURATION_S:g}); --out gets one "
                   "folder per scenario and summary.md / results.json over them all.")
def simulate(scenario: str | None, policies: str, n_seeds: int, duration_s: float | None,
             out_dir: str | None, as_json: bool, grader: str, warmup_s: float | None, latency: str,
             node_limit: int | None, suite: bool) -> None:
    """Replay SCENARIO (the built-in default when omitted) under several policies and
    compare their Goodput.

    Each policy runs on the same arrivals for each seed, after a warm-up it may size on
    (--warmup, never scored); decisions take effect after the policy's decision cost
    (--latency model, measured once per machine) or the wall-clock time each took
    (--latency wall). Every run is graded request by request
    (default) and by the planner's slot model; --grader picks the headline. Prints a table
    per policy (Goodput, SLO attainment, mean accuracy, MIG reconfigurations, decision
    latency p50/p99, the worst tenant's SLO attainment), a table per tenant (Goodput, SLO
    attainment, accuracy), the other grading's Goodput and SLO attainment, and migrator's
    Goodput gain over each other policy; with several seeds, every mean carries its 95 %
    Student-t confidence interval. With --suite, every bundled suite scenario (real
    request-rate traces, A100/H100 fleets of 4-32 GPUs) is run in turn and a summary table
    gives migrator's gain over each policy per scenario beside the MIGRator paper's figures.
    """
    from rich.progress import Progress

    from ..evaluation.comparison import compare, parse_policies

    writable_folder(out_dir, "--out")
    try:
        names = parse_policies(policies)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="--policies") from exc
    if suite:
        _check_suite_options(scenario, warmup_s)
        _simulate_suite(names, n_seeds, SUITE_DURATION_S if duration_s is None else duration_s, out_dir, as_json,
                        grader, latency, node_limit)
        return
    s = _with_node_limit(load_scenario(scenario), node_limit)
    if duration_s is not None and duration_s > s.duration_s:
        raise click.BadParameter(f"at most the scenario's duration_s ({s.duration_s:g})", param_hint="--duration")
    if warmup_s is not None and warmup_s > s.duration_s:
        raise click.BadParameter(f"at most the scenario's duration_s ({s.duration_s:g})", param_hint="--warmup")
    seeds = [s.seed + k for k in range(n_seeds)]
    slots = s.n_slots if duration_s is None else max(1, round(duration_s / s.slot_s))
    total = len(names) * len(seeds) * slots
    with Progress(console=Console(stderr=True), transient=True, disable=as_json) as progress:
        task = progress.add_task("simulating", total=total)

        def advance(policy: str, seed: int, slot: int) -> None:
            progress.update(task, advance=1, description=f"{policy}, seed {seed}")

        try:
            result = compare(s, names, seeds, duration_s=duration_s, on_slot=advance, grader=grader,
                             warmup_s=warmup_s, latency=latency)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    if out_dir is not None:
        written = result.write(out_dir)
        written.append(result.write_markdown(out_dir))
        written += _plots(result, out_dir)
    if as_json:
        click.echo(result.to_json())
        return
    console = new_console()
    console.print(_results_table(result))
    console.print(_tenant_table(result))
    for line in _other_grading_lines(result) + _improvement_lines(result) + _repeat_lines(result):
        click.echo(line)
    if out_dir is not None:
        click.echo("wrote " + ", ".join(str(p) for p in written))


def _check_suite_options(scenario: str | None, warmup_s: float | None) -> None:
    if scenario is not None:
        raise click.UsageError("--suite runs the bundled scenarios: give no SCENARIO with it")
    if warmup_s is not None:
        raise click.BadParameter("not with --suite (each scenario's warm-up is the slots before its window)",
                                 param_hint="--warmup")


def _with_node_limit(s: Any, node_limit: int | None) -> Any:
    """The scenario with ``--node-limit`` as its planner's node limit, where it is given."""
    if node_limit is None:
        return s
    try:
        return s.with_planner(node_limit=node_limit)
    except MigratorError as exc:
        raise click.BadParameter(str(exc), param_hint="--node-limit") from exc


def _simulate_suite(names: list[str], n_seeds: int, duration_s: float, out_dir: str | None, as_json: bool,
                    grader: str, latency: str, node_limit: int | None) -> None:
    """``--suite``: every bundled suite scenario in turn under one progress bar, then the
    summary (migrator's gain over each policy, the worst tenants) and, with --out, the files."""
    from rich.progress import Progress

    from ..evaluation.suite import load_suite, run_suite, suite_slots

    try:
        scenarios = load_suite()
    except MigratorError as exc:
        raise click.ClickException(str(exc)) from exc
    scenarios = [_with_node_limit(s, node_limit) for s in scenarios]
    total = len(names) * n_seeds * sum(suite_slots(scenarios, duration_s))
    with Progress(console=Console(stderr=True), transient=True, disable=as_json) as progress:
        task = progress.add_task("suite", total=total)

        def advance(name: str, policy: str, seed: int, slot: int) -> None:
            progress.update(task, advance=1, description=f"{name}: {policy}, seed {seed}")

        try:
            result = run_suite(scenarios, names, n_seeds, duration_s=duration_s, grader=grader, latency=latency,
                               on_slot=advance)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    written = []
    if out_dir is not None:
        written = result.write(out_dir, plot=lambda c, folder: _plots(c, str(folder)))
        written += _suite_plot(result.summary(), out_dir)
    if as_json:
        click.echo(result.to_json())
        return
    console = new_console()
    for comparison in result.comparisons.values():
        console.print(_results_table(comparison))
    click.echo(result.to_markdown())
    for comparison in result.comparisons.values():
        for line in _repeat_lines(comparison):
            click.echo(line)
    if written:
        click.echo(f"wrote {len(written)} files under {out_dir} (summary.md, results.json, one folder per scenario)")


def _suite_plot(summary: Any, out_dir: str) -> list[Any]:
    try:
        from ..evaluation.plots import plot_suite

        return plot_suite(summary, out_dir)
    except MigratorError:  # matplotlib missing: said once per scenario already
        return []


def _plots(result: Any, out_dir: str) -> list[Any]:
    try:
        from ..evaluation.plots import plot_comparison

        return plot_comparison(result, out_dir)
    except MigratorError as exc:  # matplotlib missing: the tables are still written
        click.echo(f"no plots: {exc}", err=True)
        return []
