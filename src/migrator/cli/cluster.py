"""``migrator cluster`` and ``agent``: cluster scale on Ray."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from ..errors import MigratorError
from ._common import (
    CPUS,
    GPU_COUNT,
    HORIZON,
    TIME_LIMIT,
    StderrLog,
    echo_json,
    load_scenario,
    metrics_options,
    planner_settings,
    start_metrics,
    stop_metrics,
)

_CLUSTER_HINT = "this command needs Ray: pip install 'migrator[cluster]'"


def _cluster_module() -> Any:
    """migrator.cluster, or a one-line error naming the extra when Ray is missing."""
    try:
        from ..cluster import cluster
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


@click.command("cluster")
@click.argument("scenario", required=False, type=click.Path(dir_okay=False))
@click.option("--address", default="local", show_default=True,
              help="local: start Ray on this machine with emulated nodes; auto or HOST:PORT: join a running "
                   "Ray cluster whose GPU nodes run `migrator agent`.")
@click.option("--steps", type=click.IntRange(min=1), default=1, show_default=True, help="Decisions to make.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON summary (decisions, reconfigurations, failures, decision_ms_p50, gpus, parts).")
@click.option("--nodes", type=GPU_COUNT, help="local: emulated nodes (default: as the GPUs need).")
@click.option("--gpus-per-node", type=GPU_COUNT, default=2, show_default=True,
              help="local: GPUs of each emulated node (the scenario's GPUs dealt in order, repeated if needed).")
@click.option("--deadline", "deadline_s", type=TIME_LIMIT,
              help="Seconds the parts may take (default: the planner's time limit); late parts keep their layout.")
@click.option("--num-cpus", type=CPUS, help="local: CPUs Ray may use (default: all).")
@click.option("--horizon", type=HORIZON, help="Slots to plan ahead (default: the scenario's).")
@click.option("--time-limit", "time_limit_s", type=TIME_LIMIT,
              help="Solver time limit per part in seconds (default: the scenario's).")
@metrics_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True, help="Log level (on stderr).")
def cluster_command(scenario: str | None, address: str, steps: int, as_json: bool, nodes: int | None,
                    gpus_per_node: int, deadline_s: float | None, num_cpus: int | None, horizon: int | None,
                    time_limit_s: float | None, metrics_port: int | None, metrics_host: str, log_level: str) -> None:
    """Run the cluster controller on Ray: one agent per GPU node, the plan split per GPU and
    the parts solved in parallel within the deadline (docs/model.md, deploy/README.md)."""
    cluster = _cluster_module()
    s = load_scenario(scenario)
    run = _Run(s, steps, as_json, deadline_s, horizon, time_limit_s, metrics_port, metrics_host)
    with StderrLog(log_level):
        try:
            if address == "local":
                with cluster.LocalCluster(s, nodes=nodes, gpus_per_node=gpus_per_node, num_cpus=num_cpus) as local:
                    summary = _run_cluster(cluster, local.scenario, local.agents, run)
            else:
                summary = _join_and_run(cluster, address, run)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{summary['decisions']} decisions, {summary['reconfigurations']} reconfigurations, "
               f"{summary['failures']} failures, {summary['late_parts']} late parts, "
               f"decision p50 {summary['decision_ms_p50'] or 0:.0f} ms")


@dataclass(frozen=True)
class _Run:
    """What the cluster command's options ask of a run."""

    scenario: Any
    steps: int
    as_json: bool
    deadline_s: float | None
    horizon: int | None
    time_limit_s: float | None
    metrics_port: int | None
    metrics_host: str


def _join_and_run(cluster: Any, address: str, run: _Run) -> dict[str, Any]:
    import ray

    cluster.reachable(address)
    ray.init(address=address, namespace=cluster.NAMESPACE, configure_logging=False)
    try:
        agents = cluster.find_agents()
        if not agents:
            raise click.ClickException(f"no migrator agent in the Ray cluster at {address}: run `migrator agent` "
                                       "on its GPU nodes (deploy/README.md)")
        reports = ray.get([a.report.remote() for a in agents.values()])
        gpus = [(st.model, str(st.layout)) for report in reports for st in report.states]
        return _run_cluster(cluster, cluster.cluster_scenario(run.scenario, gpus), agents, run)
    finally:
        ray.shutdown()


def _run_cluster(cluster: Any, cluster_scenario: Any, agents: Any, run: _Run) -> dict[str, Any]:
    cluster.warm_up()
    settings = planner_settings(run.scenario, run.horizon, run.time_limit_s)
    controller = cluster.ClusterController(cluster_scenario, agents, config=settings, deadline_s=run.deadline_s)

    def each(decision: Any) -> None:
        if not run.as_json:
            for line in _cluster_lines(decision):
                click.echo(line)

    server = start_metrics(controller.metrics, run.metrics_port, run.metrics_host)
    try:
        return controller.run(steps=run.steps, on_step=each)
    finally:
        stop_metrics(server)


@click.command("agent")
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
@click.option("--num-cpus", type=click.IntRange(min=0, max=CPUS.max), help="CPUs this node lends to planning tasks.")
@click.option("--force", is_flag=True, help="Destroy instances that have running processes.")
@metrics_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="Log level (on stderr).")
def agent_command(address: str, node: str, backend: str, journal_path: str, emulator_state: str | None,
                  gpus: tuple[str, ...], num_cpus: int | None, force: bool, metrics_port: int | None,
                  metrics_host: str, log_level: str) -> None:
    """Join the Ray cluster as this GPU node and run its agent until SIGTERM (a DaemonSet pod's command).

    With --metrics-port the agent serves its node's metrics (reconfigurations, failures, apply
    latency, instances per GPU, labelled by device index and UUID) from its own process.
    """
    cluster = _cluster_module()
    from ..cluster.agent import AgentSpec

    def ready(report: Any) -> None:
        layouts = ", ".join(f"gpu{st.index} {st.layout or '(empty)'}" for st in report.states)
        click.echo(f"agent {report.node} ready: {layouts}", err=True)

    with StderrLog(log_level):
        try:
            spec = AgentSpec(node=node, backend=backend, journal=journal_path, emulator_state=emulator_state,
                             gpus=gpus, force=force, metrics_port=metrics_port, metrics_host=metrics_host)
            cluster.serve_agent(address, spec, num_cpus=num_cpus, ready=ready)
        except MigratorError as exc:
            raise click.ClickException(str(exc)) from exc
