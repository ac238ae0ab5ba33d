"""Cluster scale on Ray: one node agent per GPU node, planning split into parts solved in parallel.

::

  ClusterController.step:  agents.report ─> sum arrivals ─> forecast ─> Planner.problem (all GPUs)
      ─> split per GPU (migrator.planning.decompose: each GPU with its share of the tenants it serves)
      ─> one Ray task per part, all at once ─> ray.wait until the decision deadline
      ─> late parts keep their current layout ─> merge ─> each agent applies its own GPUs' targets

* A **node agent** (:class:`migrator.cluster.agent.NodeAgent`) is a Ray actor pinned to its node by the
  custom resource ``migrator-node:<node>`` that only that node advertises; it is restarted
  when it dies (``max_restarts``) and then finishes its journal's open transactions first.
* The **parts** are the per-GPU programs of :func:`migrator.planning.decompose.split`; each is solved
  by :func:`solve_part` in a Ray task with the time left before the deadline as its HiGHS
  time limit. docs/model.md ("Splitting across a cluster") says what the split costs.
* :class:`LocalCluster` starts Ray on this machine with several emulated nodes (one fake
  node resource each), for ``migrator cluster --address local`` and the tests;
  :func:`serve_agent` is what ``migrator agent`` runs on a real GPU node (deploy/).

This is the only module that imports Ray (``pip install 'migrator[cluster]'``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import ray
from ray.exceptions import RayError

# Ray 2.4x answers a call to a restarting actor at once with this; older Rays wait instead.
_ACTOR_UNAVAILABLE = getattr(ray.exceptions, "ActorUnavailableError", ())

from ..actuation.controller import SimulatedClock, TraceArrivals, WallClock, run_paced
from ..actuation.emulator import EmulatedCrash
from ..actuation.metrics import Metrics
from ..actuation.nvml import GpuState
from ..actuation.reconfig import ApplyResult, RecoveryResult
from ..errors import ConfigError, MigratorError
from ..planning.decompose import merge, split_by_plan
from ..planning.greedy import greedy_tasks
from ..planning.planner import Plan, Planner, keep_current, solve_problem
from ..planning.planner_problem import PlannerState, Problem, RawSolution, TenantState
from ..planning.split_bound import LpBasis, whole_bound
from ..workload.scenario import Scenario
from ..workload.settings import PlannerConfig
from .agent import TOKEN_ENV, AgentSpec, GpuTarget, NodeAgent, NodeReport, agent_token

__all__ = [
    "NAMESPACE",
    "ClusterController",
    "ClusterDecision",
    "LocalCluster",
    "PartOutcome",
    "WholeBound",
    "cluster_scenario",
    "find_agents",
    "node_resource",
    "reachable",
    "serve_agent",
    "solve_part",
    "solve_parts",
    "split_problem",
    "start_agent",
]

log = logging.getLogger(__name__)

#: Ray namespace of the agents (named ``agent:<node>``) and of every driver that looks them up.
NAMESPACE = "migrator"
_RESOURCE_PREFIX = "migrator-node:"
# Time a part's result needs to come back and be merged: taken off its HiGHS time limit.
_RETURN_MARGIN_S = 0.05
# A part that would get less solver time than this is not started (it would only return its
# warm start, which keeping the current layout beats: no reconfiguration on a guess).
_MIN_SOLVE_S = 0.02


def node_resource(node: str) -> str:
    """The custom Ray resource only ``node`` advertises (one unit): its agent asks for it."""
    return _RESOURCE_PREFIX + node


# -- agents -------------------------------------------------------------------------------------


class _AgentActor(NodeAgent):
    """The agent as a Ray actor: knows whether it was restarted, and dies like a process
    when the emulator injects a crash (so that Ray restarts it)."""

    def __init__(self, spec: AgentSpec, *, arrivals: Any = None, tenants: Sequence[str] = ()) -> None:
        super().__init__(spec, arrivals=arrivals, tenants=tenants)
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def apply(self, targets: Mapping[int, GpuTarget], token: str | None = None) -> dict[int, ApplyResult | str]:
        try:
            return super().apply(targets, token)
        except EmulatedCrash:
            # The emulated GPUs were saved after the call that "crashed"; a real process
            # would be gone now, so this one goes too, without any clean-up.
            log.error("%s: emulated crash: exiting", self.node)
            os._exit(70)


def start_agent(
    spec: AgentSpec, *, arrivals: Any = None, tenants: Sequence[str] = (), max_restarts: int = 10,
    detached: bool = False, token: str | None = None,
) -> Any:
    """Start (or find, when ``detached``) the agent actor of ``spec.node`` on that node.

    The actor asks for the node's resource (:func:`node_resource`) and no CPU, so it sits
    beside the planning tasks; Ray restarts it up to ``max_restarts`` times (-1: always).
    A real node's agent reads its token from its own environment (the pod's Secret);
    ``token`` hands one to an emulated node's agent, through the actor's environment, which
    the Ray cluster's members can read: for local clusters only.
    """
    options: dict[str, Any] = dict(
        name=f"agent:{spec.node}", namespace=NAMESPACE, resources={node_resource(spec.node): 1},
        num_cpus=0, max_restarts=max_restarts,
    )
    if token is not None:
        options["runtime_env"] = {"env_vars": {TOKEN_ENV: token}}
    if detached:  # a DaemonSet pod's agent outlives the command that started it
        options.update(lifetime="detached", get_if_exists=True)
    return ray.remote(_AgentActor).options(**options).remote(spec, arrivals=arrivals, tenants=tenants)


def find_agents() -> dict[str, Any]:
    """The agents of the connected Ray cluster, by node name (started by ``migrator agent``)."""
    named = ray.util.list_named_actors(all_namespaces=True)
    names = sorted(a["name"] for a in named if a.get("namespace") == NAMESPACE and a["name"].startswith("agent:"))
    return {name.removeprefix("agent:"): ray.get_actor(name, namespace=NAMESPACE) for name in names}


def cluster_scenario(scenario: Scenario, gpus: Sequence[tuple[str, str]]) -> Scenario:
    """``scenario`` with its GPUs replaced by ``gpus`` ((model, layout) each, cluster order)."""
    table = scenario.to_dict()
    table["gpus"] = [{"model": model, "layout": layout} for model, layout in gpus]
    return Scenario.from_dict(table)


class LocalCluster:
    """Ray on this machine with ``nodes`` emulated GPU nodes, one agent each.

    The scenario's GPUs are dealt to the nodes in order, ``gpus_per_node`` each (the list
    repeated when ``nodes x gpus_per_node`` asks for more; the tenants stay as they are).
    Each node advertises its own resource, keeps its emulated GPUs and journal in
    ``workdir`` (a temporary folder by default), and observes an equal share of every
    tenant's arrivals (the scenario's trace). Use as a context manager: Ray is stopped on
    exit when this object started it.

    Attributes
    ----------
    scenario : Scenario
        The cluster's scenario (its GPUs in node order).
    agents : dict
        Node name -> agent actor.
    """

    def __init__(
        self, scenario: Scenario, *, nodes: int | None = None, gpus_per_node: int = 2,
        workdir: str | Path | None = None, num_cpus: int | None = None, max_restarts: int = 10,
    ) -> None:
        if gpus_per_node < 1 or (nodes is not None and nodes < 1):
            raise ConfigError("nodes and gpus_per_node must be >= 1", field="nodes" if gpus_per_node >= 1 else "gpus_per_node")
        n_nodes = nodes if nodes is not None else -(-len(scenario.gpus) // gpus_per_node)
        specs = [scenario.gpus[i % len(scenario.gpus)] for i in range(n_nodes * gpus_per_node)]
        self.scenario = cluster_scenario(scenario, [(g.model, g.layout) for g in specs])
        self.nodes = tuple(f"node{k}" for k in range(n_nodes))
        self.gpus_per_node = gpus_per_node
        self.num_cpus = num_cpus
        self.max_restarts = max_restarts
        self._workdir = Path(workdir) if workdir is not None else None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._started_ray = False
        self.agents: dict[str, Any] = {}

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spec(self, k: int) -> AgentSpec:
        """Node ``k``'s agent: its slice of the scenario's GPUs, emulated, files in the workdir."""
        assert self._workdir is not None
        gpus = self.scenario.gpus[k * self.gpus_per_node : (k + 1) * self.gpus_per_node]
        node = self.nodes[k]
        return AgentSpec(node=node, backend="emulator", journal=str(self._workdir / f"{node}.journal.jsonl"),
                         emulator_state=str(self._workdir / f"{node}.gpus.json"),
                         gpus=tuple(g.model for g in gpus), layouts=tuple(g.layout for g in gpus))

    def start(self) -> LocalCluster:
        if self._workdir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="migrator-cluster-")
            self._workdir = Path(self._temporary.name)
        resources = {node_resource(n): 1.0 for n in self.nodes}
        if not ray.is_initialized():
            ray.init(num_cpus=self.num_cpus, resources=resources, namespace=NAMESPACE, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            self._started_ray = True
        missing = sorted(set(resources) - set(ray.cluster_resources()))
        if missing:
            raise ConfigError(f"the running Ray cluster has no resource {missing[0]}: start Ray with every "
                              "emulated node's resource, or let LocalCluster start it", field="nodes")
        trace = self.scenario.arrivals()
        tenants = trace.tenants
        share = type(trace)(tenants, trace.counts.astype(np.float64) / len(self.nodes), trace.slot_s)
        # The emulated nodes and this controller share one token, made here unless the
        # environment brings one.
        token = os.environ.setdefault(TOKEN_ENV, secrets.token_hex(16))
        self.agents = {
            node: start_agent(self.spec(k), arrivals=TraceArrivals(share, tenants), tenants=tenants,
                              max_restarts=self.max_restarts, token=token)
            for k, node in enumerate(self.nodes)
        }
        ray.get([a.report.remote() for a in self.agents.values()])  # every agent up (and recovered)
        return self

    @property
    def workdir(self) -> Path:
        assert self._workdir is not None, "start the cluster first"
        return self._workdir

    def close(self) -> None:
        """Stop the agents, and Ray when this object started it."""
        for agent in self.agents.values():
            with _quietly("kill agent"):
                ray.kill(agent, no_restart=True)
        self.agents = {}
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None


class _quietly:
    """Log and swallow errors of a clean-up step (shutting down must not hide the real error)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, Exception):
            log.debug("%s: %s", self.what, exc)
            return True
        return False


# -- parts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartOutcome:
    """One part (one GPU's program) of a decision.

    ``status``: ``solved``; ``late`` (no answer by the deadline: the GPU keeps its current
    layout and tasks); ``failed`` (the task raised: kept as well); ``no plan`` (HiGHS
    answered in time without a plan: kept as well). ``solve_s`` is the time
    the part took where it ran (build, warm start and solve), ``wall_s`` from submission to
    its result at the controller (the deadline for a late one).
    """

    gpu: int
    tenants: tuple[int, ...]
    status: str
    solve_s: float
    wall_s: float
    solution: RawSolution | None = None

    def to_dict(self, tenant_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready; tenants by name when ``tenant_names`` (the problem's) are given."""
        tenants = [tenant_names[i] for i in self.tenants] if tenant_names is not None else list(self.tenants)
        return {"gpu": self.gpu, "tenants": tenants, "status": self.status,
                "solve_ms": self.solve_s * 1e3, "wall_ms": self.wall_s * 1e3}


def split_problem(problem: Problem, start: Sequence[np.ndarray] | None = None,
                  fill_empty: bool = True) -> tuple[list[list[int]], list[Problem]]:
    """One part per GPU, each with its share of the tenants the starting plan ``start``
    gives it (the greedy plan by default; :func:`migrator.planning.decompose.split_by_plan`); returns
    each part's tenants and its problem."""
    return split_by_plan(problem, greedy_tasks(problem) if start is None else start, fill_empty)


def solve_part(
    problem: Problem, *, time_limit_s: float, mip_gap: float, deadline_unix_s: float | None = None,
    delay_s: float = 0.0,
) -> tuple[RawSolution | None, float]:
    """Solve one part from its greedy start; returns the solution (None when the deadline
    left no time worth solving in) and the seconds spent.

    ``delay_s`` sleeps first: a slow part, injected by the tests.
    """
    started = time.perf_counter()
    if delay_s > 0:
        time.sleep(delay_s)
    limit = time_limit_s
    if deadline_unix_s is not None:
        limit = min(limit, deadline_unix_s - time.time() - _RETURN_MARGIN_S)
        if limit < _MIN_SOLVE_S:
            return None, time.perf_counter() - started
    raw = solve_problem(problem, time_limit_s=limit, mip_gap=mip_gap, warm_start=greedy_tasks(problem))
    return raw, time.perf_counter() - started


# Any: Ray's stubs type a remote function's .remote() by arity and see no keyword arguments.
_solve_part_task: Any = ray.remote(num_cpus=1, max_retries=0)(solve_part)  # type: ignore[arg-type]


def solve_parts(
    parts: Sequence[Sequence[int]], problems: Sequence[Problem], *, time_limit_s: float, mip_gap: float,
    deadline_s: float | None = None, parallel: bool = True, delays: Mapping[int, float] | None = None,
) -> list[PartOutcome]:
    """Solve every part: in parallel as Ray tasks, waiting at most ``deadline_s`` (late ones
    are cancelled and reported ``late``), or one after another in this process
    (``parallel=False``, no deadline: the baseline of the benchmark)."""
    delays = delays or {}
    if not parallel:
        return [_local_outcome(g, tenants, sub, time_limit_s, mip_gap, delays.get(g, 0.0))
                for g, (tenants, sub) in enumerate(zip(parts, problems))]
    wait_s = time_limit_s if deadline_s is None else deadline_s
    submitted = time.perf_counter()
    deadline_unix = time.time() + wait_s
    refs = {
        _solve_part_task.remote(sub, time_limit_s=time_limit_s, mip_gap=mip_gap, deadline_unix_s=deadline_unix,
                                delay_s=delays.get(g, 0.0)): g
        for g, sub in enumerate(problems)
    }
    arrived = _wait_each(list(refs), submitted + wait_s)
    outcomes = []
    for ref, g in refs.items():
        tenants = tuple(parts[g])
        if ref not in arrived:
            with _quietly("cancel a late part"):
                ray.cancel(ref)
            log.warning("part gpu%d missed the %.3f s deadline: its current layout is kept", g, wait_s)
            outcomes.append(PartOutcome(g, tenants, "late", 0.0, wait_s))
            continue
        outcomes.append(_remote_outcome(g, tenants, ref, arrived[ref] - submitted))
    return outcomes


class WholeBound:
    """What the whole problem could be worth at most (:func:`migrator.planning.split_bound.split_bound`),
    so a split plan reports a true gap. On Ray it is one more task beside the parts, due by
    the same deadline (inf, no bound, when late: it never delays a decision); in this
    process it is computed when asked for."""

    def __init__(self, problem: Problem, wait_s: float, parallel: bool, start: LpBasis | None = None) -> None:
        self._problem, self._wait_s, self._start = problem, wait_s, start
        self._due = time.perf_counter() + wait_s
        self._ref = _bound_task.remote(problem, time_limit_s=wait_s, start=start) if parallel else None
        self.basis: LpBasis | None = start  # after result(): the one to start the next bound from

    def result(self) -> float:
        bound, basis = self._solved()
        self.basis = basis if basis is not None else self._start
        return bound

    def _solved(self) -> tuple[float, LpBasis | None]:
        if self._ref is None:
            return whole_bound(self._problem, time_limit_s=self._wait_s, start=self._start)
        if not _wait_each([self._ref], self._due):
            with _quietly("cancel a late bound"):
                ray.cancel(self._ref)
            return float("inf"), None
        try:
            bound, basis = ray.get(self._ref)
            return float(bound), basis
        except RayError as exc:
            log.warning("the bound of the whole problem failed: %s", exc)
            return float("inf"), None


_bound_task: Any = ray.remote(num_cpus=1, max_retries=0)(whole_bound)  # Any: as _solve_part_task


def _wait_each(refs: list[Any], deadline: float) -> dict[Any, float]:
    """When each result arrived (perf_counter), for those that did before ``deadline``."""
    arrived: dict[Any, float] = {}
    pending = refs
    while pending:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        ready, pending = ray.wait(pending, num_returns=1, timeout=left)
        now = time.perf_counter()
        arrived.update((ref, now) for ref in ready)
    return arrived


def _remote_outcome(g: int, tenants: tuple[int, ...], ref: Any, wall_s: float) -> PartOutcome:
    try:
        raw, solve_s = ray.get(ref)
    except RayError as exc:
        log.error("part gpu%d failed: %s; its current layout is kept", g, exc)
        return PartOutcome(g, tenants, "failed", 0.0, wall_s)
    return _outcome(g, tenants, raw, solve_s, wall_s)


def _outcome(g: int, tenants: tuple[int, ...], raw: RawSolution | None, solve_s: float, wall_s: float) -> PartOutcome:
    outcome = PartOutcome(g, tenants, _status(raw), solve_s, wall_s, raw)
    if raw is not None and outcome.status == "no plan":
        # solve_problem leaves the warning to its caller, which knows what is kept.
        log.warning("part gpu%d: no plan in time (%s); its current layout is kept", g, raw.status)
    return outcome


def _status(raw: RawSolution | None) -> str:
    if raw is None:
        return "late"
    return "no plan" if raw.kept_gpus else "solved"


def _local_outcome(g: int, tenants: Sequence[int], sub: Problem, time_limit_s: float, mip_gap: float,
                   delay_s: float) -> PartOutcome:
    started = time.perf_counter()
    raw, solve_s = solve_part(sub, time_limit_s=time_limit_s, mip_gap=mip_gap, delay_s=delay_s)
    return _outcome(g, tuple(tenants), raw, solve_s, time.perf_counter() - started)


def merge_outcomes(problem: Problem, parts: Sequence[Sequence[int]], subs: Sequence[Problem],
                   outcomes: Sequence[PartOutcome]) -> RawSolution:
    """The parts' plans as one (:func:`migrator.planning.decompose.merge`); a part without a solution
    keeps its GPU's current layout and tasks for the whole horizon."""
    solutions = [
        o.solution if o.solution is not None
        else RawSolution(keep_current(sub), 0.0, 0.0, o.status, float("inf"), 0.0, 0.0, kept_gpus=(0,))
        for o, sub in zip(outcomes, subs)
    ]
    merged = merge(problem, parts, solutions)
    # The parts' objectives do not add up to the merged plan's value (shared tenants pool
    # their capacity); NaN makes the planner value it with the estimator.
    return dataclasses.replace(merged, objective=float("nan"), bound=float("inf"))


def warm_up(n_tasks: int | None = None) -> None:
    """Have the workers import the planner before the first deadline counts (a cold worker
    spends seconds importing numba and HiGHS)."""
    n = n_tasks if n_tasks is not None else max(1, int(ray.cluster_resources().get("CPU", 1)))
    ray.get([_import_planner.remote() for _ in range(n)])


@ray.remote(num_cpus=1)
def _import_planner() -> bool:
    from ..planning import greedy, planner  # noqa: F401 - the import is the point

    return True


# -- the controller -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterDecision:
    """One cluster step: the layout of each GPU after it (cluster order), the parts, what
    was reconfigured and what failed, and how long deciding and applying took."""

    slot: int
    layouts: tuple[str, ...]
    planned: tuple[str, ...]
    parts: tuple[PartOutcome, ...]
    decision_ms: float
    apply_ms: float
    reconfigured: tuple[int, ...]
    failures: tuple[str, ...] = ()
    timings: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class _Gpu:
    node: str
    device: int
    model: str


class ClusterController:
    """Receding-horizon controller over the node agents of a Ray cluster.

    Parameters
    ----------
    scenario : Scenario
        Tenants and planner settings; its GPUs must be the agents' GPUs in node-name order
        (:func:`cluster_scenario` builds such a scenario, :class:`LocalCluster` has one).
    agents : mapping
        Node name -> agent actor (:func:`start_agent`, :func:`find_agents`).
    config : PlannerConfig, optional
        Overrides the scenario's planner settings.
    deadline_s : float, optional
        How long the parts may take, all together (default the planner's ``time_limit_s``);
        a part without an answer by then keeps its current layout.
    parallel : bool
        Parts as Ray tasks (default), or one after another in this process (no deadline).
    clock : WallClock or SimulatedClock, optional
        Paces :meth:`run` (simulated by default: steps run back to back).
    observe_timeout_s : float
        How long to wait for agents' reports; a node that does not answer is left alone
        this step (its GPUs are planned at their last known layouts, not changed).
    """

    def __init__(
        self, scenario: Scenario, agents: Mapping[str, Any], *, config: PlannerConfig | None = None,
        deadline_s: float | None = None, parallel: bool = True, clock: WallClock | SimulatedClock | None = None,
        observe_timeout_s: float = 60.0,
    ) -> None:
        if not agents:
            raise ConfigError("a cluster controller needs at least one agent", field="agents")
        self.scenario = scenario
        self.agents = dict(sorted(agents.items()))
        self.planner = Planner(scenario, config)
        self.config = self.planner.config
        self.deadline_s = float(deadline_s) if deadline_s is not None else self.config.time_limit_s
        if self.deadline_s <= 0:
            raise ConfigError(f"deadline_s must be > 0, got {deadline_s!r}", field="deadline_s")
        self.parallel = parallel
        self.clock = clock if clock is not None else SimulatedClock()
        self.observe_timeout_s = observe_timeout_s
        self.tenants = tuple(t.name for t in scenario.tenants)
        self.forecaster = self.config.make_forecaster()
        self.metrics = Metrics()
        self.slot = 0
        self._observed_slots = 0
        self._delays: dict[int, float] = {}
        self._tenant_state: dict[str, TenantState] = {}
        self.recoveries: list[tuple[str, RecoveryResult]] = []
        self.restarted: set[str] = set()  # nodes whose agent is a restarted incarnation
        self.late_parts = 0
        self._bound_start: LpBasis | None = None  # the last bound's basis, to start the next from
        self.last_decision: ClusterDecision | None = None
        self._stop = threading.Event()
        self.timings: dict[str, float] = {}
        reports = self._gather()
        self.gpus = self._map_gpus(reports)
        self._layouts = [str(reports[gpu.node].states[gpu.device].layout) for gpu in self.gpus]
        self._expected: list[str | None] = [None] * len(self.gpus)
        self._assignments: list[dict[str, str]] = [{} for _ in self.gpus]

    # -- set-up -------------------------------------------------------------------------------

    def _map_gpus(self, reports: Mapping[str, NodeReport]) -> tuple[_Gpu, ...]:
        missing = sorted(set(self.agents) - set(reports))
        if missing:
            raise ConfigError(f"agent {missing[0]} did not report within {self.observe_timeout_s} s", field="agents")
        gpus = tuple(_Gpu(node, s.index, s.model) for node, report in reports.items() for s in report.states)
        if len(gpus) != len(self.scenario.gpus):
            raise ConfigError(f"the agents have {len(gpus)} GPUs but the scenario {len(self.scenario.gpus)}: "
                              "build the scenario with cluster_scenario()", field="gpus")
        for i, (gpu, spec) in enumerate(zip(gpus, self.scenario.gpus)):
            if gpu.model != spec.model:
                raise ConfigError(f"gpus[{i}]: the scenario has a {spec.model} but {gpu.node} device {gpu.device} "
                                  f"is a {gpu.model}", field=f"gpus[{i}]")
        return gpus

    def inject_delay(self, gpu: int, seconds: float) -> None:
        """For tests: GPU ``gpu``'s part sleeps ``seconds`` before solving (0 clears it)."""
        if seconds > 0:
            self._delays[gpu] = float(seconds)
        else:
            self._delays.pop(gpu, None)

    def stop(self) -> None:
        """Return from :meth:`run` after the step under way."""
        self._stop.set()

    # -- one step -----------------------------------------------------------------------------

    def _gather(self) -> dict[str, NodeReport]:
        """Every agent's report, in node order; nodes that fail or time out are left out. An
        agent Ray is restarting answers at once that it is unavailable: it is asked again
        until it answers or the time runs out (a restart imports the planner's libraries,
        which takes long on a loaded node)."""
        began, pending, reports = time.monotonic(), dict(self.agents), {}
        while pending:
            left = self.observe_timeout_s - (time.monotonic() - began)
            if left <= 0:
                break
            refs = {agent.report.remote(): node for node, agent in pending.items()}
            ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=left)
            restarting = {}
            for ref in ready:
                try:
                    reports[refs[ref]] = ray.get(ref)
                except _ACTOR_UNAVAILABLE:
                    restarting[refs[ref]] = pending[refs[ref]]
                except RayError as exc:
                    log.error("%s: no report: %s", refs[ref], exc)
                    self.metrics.record_failure("observe")
            for ref in late:
                log.error("%s: no report within %.1f s", refs[ref], self.observe_timeout_s)
                self.metrics.record_failure("observe")
            pending = restarting
            if pending:
                time.sleep(0.2)
        for node in pending:
            log.error("%s: still restarting after %.1f s", node, self.observe_timeout_s)
            self.metrics.record_failure("observe")
        for report in reports.values():
            self._note_restart(report)
        return {node: reports[node] for node in self.agents if node in reports}

    def _note_restart(self, report: NodeReport) -> None:
        if report.restarted and report.node not in self.restarted:
            self.restarted.add(report.node)
            log.warning("%s: the agent was restarted", report.node)
        for result in report.recovered:
            if any(node == report.node and seen.txn == result.txn for node, seen in self.recoveries):
                continue  # an agent reports its start-up recovery every time
            self.recoveries.append((report.node, result))
            log.warning("%s: gpu%d recovered from the journal: %s (%s)", report.node, result.gpu, result.outcome,
                        result.layout or "(empty)")

    def _fold_arrivals(self, reports: Mapping[str, NodeReport]) -> None:
        """Sum the nodes' counts slot by slot (the k-th row of each node is the same slot)."""
        rows = [r.arrivals for r in reports.values()]
        for k in range(max((len(r) for r in rows), default=0)):
            total = np.zeros(len(self.tenants))
            for node_rows in rows:
                if k < len(node_rows):
                    total += [node_rows[k].get(t, 0.0) for t in self.tenants]
            self.forecaster.update(total)
            self._observed_slots += 1

    def _observe(self, reports: Mapping[str, NodeReport]) -> list[GpuState | None]:
        """Each GPU's state (None where its node did not report); flags external changes."""
        states: list[GpuState | None] = []
        for g, gpu in enumerate(self.gpus):
            if gpu.node not in reports:
                states.append(None)
                continue
            state = reports[gpu.node].states[gpu.device]
            layout = str(state.layout)
            if self._expected[g] is not None and layout != self._expected[g]:
                self.metrics.record_external_change(g)
                log.warning("gpu%d (%s device %d): layout changed outside the controller: expected %s, found %s",
                            g, gpu.node, gpu.device, self._expected[g] or "(empty)", layout or "(empty)")
                self._assignments[g] = {p: t for p, t in self._assignments[g].items() if p in layout.split(",")}
            self._expected[g] = layout
            self._layouts[g] = layout
            self.metrics.record_state(dataclasses.replace(state, index=g))
            states.append(state)
        return states

    def decide(self) -> tuple[Plan, list[PartOutcome], list[GpuState | None]]:
        """Gather the agents' reports and plan from them, changing nothing: the plan, its
        parts and each GPU's observed state (None where its node did not answer).
        ``self.timings`` says where the time went (seconds: observe, build, split, solve, bound, merge)."""
        started = time.perf_counter()
        states = self._observe(reports := self._gather())
        self._fold_arrivals(reports)
        observed = time.perf_counter()
        plan, outcomes = self._plan()
        self.timings = {"observe": observed - started, **self.timings}
        return plan, outcomes, states

    def _plan(self) -> tuple[Plan, list[PartOutcome]]:
        """Forecast, split, solve the parts within the deadline, merge."""
        clock = [time.perf_counter()]

        def lap() -> float:
            clock.append(time.perf_counter())
            return clock[-1] - clock[-2]

        layouts = tuple(self._layouts)
        assignments = tuple({p: t for p, t in self._assignments[g].items() if p in layouts[g].split(",")}
                            for g in range(len(self.gpus)))
        state = PlannerState(layouts=layouts, assignments=assignments, tenants=dict(self._tenant_state),
                             slot=self.slot)
        forecast = self.forecaster.forecast(self.config.horizon) if self._observed_slots else None
        problem = self.planner.problem(forecast, state)
        build_s = lap()
        # The planner's starting plan: not the greedy plan alone, which would re-deal the
        # tenants among alike GPUs whenever the forecast moves.
        parts, subs = split_problem(problem, self.planner.split_start(problem), self.planner.fills_empty_gpus(problem))
        split_s = lap()
        bound = WholeBound(problem, self.config.time_limit_s if self.deadline_s is None else self.deadline_s,
                           self.parallel, start=self._bound_start)
        outcomes = solve_parts(parts, subs, time_limit_s=self.config.time_limit_s, mip_gap=self.config.mip_gap,
                               deadline_s=self.deadline_s, parallel=self.parallel, delays=self._delays)
        solve_s = lap()
        raw = merge_outcomes(problem, parts, subs, outcomes)
        merge_s = lap()
        raw = dataclasses.replace(raw, bound=bound.result())
        self._bound_start = bound.basis
        bound_s = lap()
        # The planner's own last steps: the retraining pass where its settings ask (not on
        # the GPUs of parts without a solution, raw.kept_gpus: they keep what they have), decoding.
        plan = self.planner.finish(problem, raw)
        self.timings = {"build": build_s, "split": split_s, "solve": solve_s, "bound": bound_s, "merge": merge_s + lap()}
        return plan, outcomes

    def step(self) -> ClusterDecision:
        """Observe every node, plan, and have each agent apply its GPUs' first slot."""
        started = time.perf_counter()
        try:
            plan, outcomes, states = self.decide()
        except MigratorError as exc:
            self.metrics.record_failure("plan")
            log.error("slot %d: no decision (plan failed): %s", self.slot, exc)
            self.slot += 1
            return ClusterDecision(self.slot - 1, tuple(self._layouts), tuple(self._layouts), (), 0.0, 0.0, (),
                                   (f"plan: {exc}",))
        decision_s = time.perf_counter() - started
        self.metrics.record_decision(decision_s)
        self.metrics.record_plan(plan)
        self.late_parts += sum(o.status != "solved" for o in outcomes)
        applied = time.perf_counter()
        reconfigured, failures = self._apply(plan, states)
        self._tenant_state = dict(Planner.advance(plan).tenants)
        decision = ClusterDecision(
            slot=self.slot, layouts=tuple(self._layouts), planned=tuple(plan.first(g).layout for g in range(len(self.gpus))),
            parts=tuple(outcomes), decision_ms=decision_s * 1e3, apply_ms=(time.perf_counter() - applied) * 1e3,
            reconfigured=tuple(reconfigured), failures=tuple(failures), timings=dict(self.timings),
        )
        self.last_decision = decision
        log.info("cluster decision slot=%d decision_ms=%.1f apply_ms=%.1f parts=%d late=%d reconfigured=%s",
                 decision.slot, decision.decision_ms, decision.apply_ms, len(outcomes),
                 sum(o.status != "solved" for o in outcomes), list(reconfigured))
        self.slot += 1
        return decision

    def _apply(self, plan: Plan, states: Sequence[GpuState | None]) -> tuple[list[int], list[str]]:
        """Send each node its GPUs' targets, all nodes at once; collect what happened."""
        targets: dict[str, dict[int, GpuTarget]] = {}
        for g, (gpu, state) in enumerate(zip(self.gpus, states)):
            if state is not None:
                targets.setdefault(gpu.node, {})[gpu.device] = GpuTarget(
                    plan.first(g).layout, expected=str(state.layout), tasks=dict(self._assignments[g]))
        token = agent_token()
        refs = {node: self.agents[node].apply.remote(t, token) for node, t in targets.items()}
        index = {(gpu.node, gpu.device): g for g, gpu in enumerate(self.gpus)}
        reconfigured, failures = [], []
        for node, ref in refs.items():
            try:
                results = ray.get(ref)
            except RayError as exc:  # the agent died on the way: its journal says what to finish
                message = f"{node}: agent lost during apply ({type(exc).__name__}); it recovers from its journal"
                log.error(message)
                failures.append(message)
                for device in targets[node]:
                    self.metrics.record_failure("apply", index[(node, device)])
                    self._expected[index[(node, device)]] = None
                continue
            for device, result in results.items():
                g = index[(node, device)]
                if isinstance(result, str):
                    self.metrics.record_failure("apply", g)
                    failures.append(result)
                    self._expected[g] = None  # observed afresh next step, not flagged as a change
                    continue
                self.metrics.record_apply(g, result)
                if result.changed:
                    reconfigured.append(g)
                self._expected[g] = self._layouts[g] = result.after
                self._assignments[g] = dict(plan.first(g).assignment)
        return sorted(reconfigured), failures

    # -- the loop -----------------------------------------------------------------------------

    def run(self, steps: int | None = None, on_step: Callable[[ClusterDecision], None] | None = None) -> dict[str, Any]:
        """Step every ``slot_s`` of the clock until ``steps`` decisions or :meth:`stop`;
        returns :meth:`summary`."""
        run_paced(self.step, self.clock, self._stop, self.scenario.slot_s, steps, on_step)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The run command's keys (``decisions``, ``reconfigurations``, ``failures``,
        ``decision_ms_p50``, ``apply_ms_p50``, ``external_changes``, ``slots``, ``gpus`` with
        ``node`` and ``device``), plus ``nodes``, ``deadline_s``, ``late_parts`` (all steps:
        parts late, failed or without a plan, whose GPUs kept their layouts),
        ``recoveries`` and ``parts`` (the last decision's, with their solve times)."""
        last = self.last_decision
        solve_ms = [o.solve_s * 1e3 for o in last.parts] if last is not None else []
        return {
            **self.metrics.totals(),
            "slots": self.slot,
            "nodes": list(self.agents),
            "deadline_s": self.deadline_s,
            "parallel": self.parallel,
            "late_parts": self.late_parts,
            "part_solve_ms_max": max(solve_ms, default=None),
            "parts": [o.to_dict(self.tenants) for o in last.parts] if last is not None else [],
            "restarted": sorted(self.restarted),
            "recoveries": [{"node": node, "gpu": r.gpu, "outcome": r.outcome, "layout": r.layout}
                           for node, r in self.recoveries],
            "gpus": [
                {"name": f"gpu{g}", "model": gpu.model, "node": gpu.node, "device": gpu.device,
                 "layout": self._layouts[g]}
                for g, gpu in enumerate(self.gpus)
            ],
        }


# -- a real node: `migrator agent` ----------------------------------------------------------------


def reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` that nothing answers at within ``timeout_s``: Ray itself retries
    an unreachable head for minutes before it gives up (``auto`` is left to Ray)."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"address must be HOST:PORT (or auto), got {address!r}", field="address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"no Ray head answers at {address} ({exc.strerror or exc})", field="address") from exc


def serve_agent(address: str, spec: AgentSpec, *, num_cpus: int | None = None, max_restarts: int = -1,
                ready: Callable[[NodeReport], None] | None = None) -> None:
    """Join the Ray cluster at ``address`` (the head's GCS, ``HOST:6379``) as this node,
    advertising its resource, start its agent (detached, restarted without limit) and wait
    for SIGTERM/SIGINT; then leave the cluster. What a DaemonSet pod runs (deploy/)."""
    reachable(address)
    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    command = [ray_cli, "start", f"--address={address}", f"--resources={json.dumps({node_resource(spec.node): 1})}"]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    try:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address}: {exc}", field="address") from exc
    stop = threading.Event()
    saved = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        ray.init(address="auto", namespace=NAMESPACE, configure_logging=False)
        agent = start_agent(spec, max_restarts=max_restarts, detached=True)
        report = ray.get(agent.report.remote())
        if ready is not None:
            ready(report)
        stop.wait()
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)
        with _quietly("ray shutdown"):
            ray.shutdown()
        subprocess.run([ray_cli, "stop"], check=False, stdout=subprocess.DEVNULL)
