"""The node agent: one per GPU node, the only process that touches that node's GPUs.

A :class:`NodeAgent` owns its node's NVML backend (the real ``pynvml``, or an
:class:`~migrator.actuation.emulator.NvmlEmulator` whose state lives in a file), its reconfiguration
journal and what its GPUs hold. It reports that state with the per-slot arrival counts it
observed (:meth:`NodeAgent.report`), and applies the targets a cluster controller sends for
its own GPUs through :func:`migrator.actuation.reconfig.apply` (:meth:`NodeAgent.apply`), journaled,
make-before-break and rolled back on failure like the single-machine controller.

When it starts it finishes whatever its journal says a previous incarnation left half done
(:func:`migrator.actuation.reconfig.recover`), so an agent that died mid-reconfiguration and was
restarted leaves each GPU at the old or the new layout. That is only meaningful when the GPUs
outlive the process: real GPUs do, and an emulated node keeps its MIG state in a JSON file
rewritten after every NVML call that changes it (:class:`PersistedEmulator`).

With ``metrics_port`` in its :class:`AgentSpec` the agent serves its own ``/metrics`` from the
process it runs in (on its node): reconfigurations, NVML actions, apply latency, failures and
instances per GPU, labelled by device index and NVML UUID (:mod:`migrator.actuation.metrics`).

This module does not import Ray: :mod:`migrator.cluster` makes the agent a Ray actor, and the
agent stays usable (and testable) as a plain object.
"""

from __future__ import annotations

import collections
import hmac
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..actuation.emulator import PersistedEmulator
from ..actuation.journal import Journal
from ..actuation.metrics import Metrics, serve_metrics
from ..actuation.nvml import GpuState, NvmlBackend
from ..actuation.reconfig import ApplyResult, RecoveryResult, apply, recover
from ..errors import AgentAuthError, ConfigError, MigratorError, ReconfigError

#: The environment variable that holds the cluster's agent token, on every node and for the
#: controller (the same Kubernetes Secret, deploy/agent-daemonset.yaml).
TOKEN_ENV = "MIGRATOR_AGENT_TOKEN"


def agent_token() -> str | None:
    """This process's agent token (None where none is set)."""
    return os.environ.get(TOKEN_ENV) or None


__all__ = ["AGENT_BACKENDS", "TOKEN_ENV", "AgentSpec", "GpuTarget", "NodeAgent", "NodeReport", "PersistedEmulator",
           "agent_token"]

log = logging.getLogger(__name__)

AGENT_BACKENDS = ("nvml", "emulator")


@dataclass(frozen=True)
class AgentSpec:
    """How to build one node's agent; a value that travels to the node (picklable).

    Parameters
    ----------
    node : str
        The node's name (a Kubernetes node name, or ``node0`` for an emulated one).
    backend : {"nvml", "emulator"}
        The node's real GPUs through nvidia-ml-py, or emulated ones.
    journal : str, optional
        The node's reconfiguration journal; recovery after a restart needs it.
    emulator_state : str, optional
        Emulator only: the JSON file the emulated GPUs live in, loaded when it exists.
    gpus, layouts : sequence of str
        Emulator only: GPU models and starting layouts when ``emulator_state`` does not exist yet.
    force : bool
        Destroy instances that have running processes (:func:`migrator.actuation.reconfig.apply`).
    metrics_port : int, optional
        Serve the agent's Prometheus metrics on ``http://metrics_host:metrics_port/metrics``
        (0: any free port); none served by default.
    metrics_host : str
        The address to serve them on (``0.0.0.0`` in a pod, for Prometheus to reach).
    """

    node: str
    backend: str = "nvml"
    journal: str | None = None
    emulator_state: str | None = None
    gpus: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ()
    force: bool = False
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not isinstance(self.node, str) or not self.node:
            raise ConfigError(f"agent node must be a non-empty name, got {self.node!r}", field="node")
        if self.backend not in AGENT_BACKENDS:
            raise ConfigError(f"agent backend must be one of {', '.join(AGENT_BACKENDS)}, got {self.backend!r}",
                              field="backend")
        if self.backend == "emulator" and not self.emulator_state:
            # Without a file the emulated GPUs die with the agent, and a restarted agent
            # would recover its journal against brand-new GPUs.
            raise ConfigError(f"agent {self.node}: the emulator backend needs an emulator_state file",
                              field="emulator_state")
        port = self.metrics_port
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
            raise ConfigError(f"agent {self.node}: metrics_port must be a port number 0-65535, got {port!r}",
                              field="metrics_port")
        if self.layouts and len(self.layouts) != len(self.gpus):
            raise ConfigError(f"agent {self.node}: {len(self.layouts)} layouts for {len(self.gpus)} GPUs",
                              field="layouts")
        object.__setattr__(self, "gpus", tuple(self.gpus))
        object.__setattr__(self, "layouts", tuple(self.layouts))


@dataclass(frozen=True)
class GpuTarget:
    """What a controller wants on one of the node's GPUs: the ``layout`` to reach, the
    layout the plan was made from (``expected``; another one found is an external change)
    and the task each instance serves now (``tasks``, placement text -> task)."""

    layout: str
    expected: str | None = None
    tasks: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeReport:
    """One observation of a node: each GPU's state (``states``, by NVML device index), the
    arrival counts observed since the last report (``arrivals``, one mapping tenant ->
    count per slot, oldest first), what the journal recovery did when this incarnation of
    the agent started (``recovered``, in every report), and whether it is a restart."""

    node: str
    states: tuple[GpuState, ...]
    arrivals: tuple[Mapping[str, float], ...] = ()
    recovered: tuple[RecoveryResult, ...] = ()
    restarted: bool = False


class NodeAgent:
    """One GPU node's actuator: its backend, journal and GPUs (see the module docstring).

    Parameters
    ----------
    spec : AgentSpec
        Backend, journal and (emulator) state file.
    arrivals : ArrivalSource, optional
        Where this node's per-slot arrival counts come from (``poll()`` rows in ``tenants``
        order, as :class:`migrator.actuation.controller.TraceArrivals` gives them); counts can also be
        pushed with :meth:`push_arrivals`.
    tenants : sequence of str
        Names of the columns of ``arrivals``' rows.
    """

    def __init__(self, spec: AgentSpec, *, arrivals: Any = None, tenants: Sequence[str] = ()) -> None:
        self.spec = spec
        self.node = spec.node
        self.tenants = tuple(tenants)
        self._arrivals = arrivals
        self._pushed: collections.deque[dict[str, float]] = collections.deque()
        self._nvml = self._make_nvml()
        self.backend = NvmlBackend(self._nvml).open()
        self.journal = Journal(spec.journal) if spec.journal else None
        self.metrics = Metrics()
        self.recovered = self._recover()
        self.restarted = False
        self._token = agent_token()
        self._metrics_server = self._serve_metrics()

    def _serve_metrics(self) -> Any:
        if self.spec.metrics_port is None:
            return None
        try:
            server = serve_metrics(self.metrics, self.spec.metrics_port, self.spec.metrics_host)
        except OSError as exc:
            self.close()
            raise ConfigError(f"{self.node}: cannot serve metrics on {self.spec.metrics_host}:"
                              f"{self.spec.metrics_port}: {exc.strerror or exc}", field="metrics_port") from exc
        log.info("%s: metrics on http://%s:%d/metrics", self.node, self.spec.metrics_host, server.server_address[1])
        return server

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) the agent serves ``/metrics`` on, None when it serves none."""
        return None if self._metrics_server is None else tuple(self._metrics_server.server_address[:2])

    def metrics_text(self) -> str:
        """The agent's metrics in Prometheus' text format (what ``/metrics`` serves)."""
        return self.metrics.render()

    def _make_nvml(self) -> Any:
        if self.spec.backend == "emulator":
            assert self.spec.emulator_state is not None  # AgentSpec checked it
            return PersistedEmulator(self.spec.emulator_state, self.spec.gpus, self.spec.layouts)
        from ..geometry._nvml_read import default_nvml

        return default_nvml()

    def _recover(self) -> tuple[RecoveryResult, ...]:
        """Finish what a previous incarnation left open in the journal."""
        if self.journal is None:
            return ()
        results = tuple(r for r in recover(self.journal, self.backend, force=self.spec.force) if r.outcome != "clean")
        for r in results:
            log.warning("%s: gpu%d recovered from journal transaction %s: %s (%s)", self.node, r.gpu, r.txn,
                        r.outcome, r.layout or "(empty)")
        return results

    # -- reading ----------------------------------------------------------------------------

    def report(self) -> NodeReport:
        """Every GPU's state (incomplete instances left by someone else removed first), the
        arrivals observed since the last report, and what recovery did at start."""
        states = tuple(self._observe(device) for device in range(self.backend.device_count()))
        return NodeReport(self.node, states, self._poll_arrivals(), self.recovered, self.restarted)

    def _observe(self, device: int) -> GpuState:
        state = self.backend.state(device)
        if state.incomplete:
            state = self._repair(state)
        self.metrics.record_state(state)
        return state

    def _repair(self, state: GpuState) -> GpuState:
        device = state.index
        keep = ",".join(str(i.placement) for i in state.instances if i.complete)
        log.warning("%s: gpu%d has GPU instances without a compute instance; removing them", self.node, device)
        try:
            apply(self.backend, device, keep, journal=self.journal, force=self.spec.force)
        except ReconfigError as exc:
            self.metrics.record_failure("repair", device)
            log.error("%s: gpu%d: repair failed: %s", self.node, device, exc)
        return self.backend.state(device)

    def _poll_arrivals(self) -> tuple[dict[str, float], ...]:
        rows = [dict(zip(self.tenants, map(float, row))) for row in (self._arrivals.poll() if self._arrivals else [])]
        rows += list(self._pushed)
        self._pushed.clear()
        return tuple(rows)

    # -- changing: only for callers that hold the cluster's agent token ---------------------

    def push_arrivals(self, counts: Mapping[str, float], token: str | None = None) -> None:
        """One slot's counts per tenant, from the node's serving system."""
        self._authorize(token)
        self._pushed.append({str(k): float(v) for k, v in counts.items()})

    def apply(self, targets: Mapping[int, GpuTarget], token: str | None = None) -> dict[int, ApplyResult | str]:
        """Bring each named GPU (NVML device index) to its target; per GPU the
        :class:`~migrator.actuation.reconfig.ApplyResult`, or the error's message when it was refused
        or rolled back (the GPU then holds its layout from before)."""
        self._authorize(token)
        out: dict[int, ApplyResult | str] = {}
        for device, target in sorted(targets.items()):
            try:
                result = apply(self.backend, device, target.layout, expected=target.expected,
                               tasks=target.tasks, force=self.spec.force, journal=self.journal)
            except MigratorError as exc:
                self.metrics.record_failure("apply", device)
                log.error("%s: gpu%d: %s", self.node, device, exc)
                out[device] = str(exc)
                continue
            self.metrics.record_apply(device, result)
            out[device] = result
        return out

    def inject_crash(self, after: int, token: str | None = None) -> None:
        """Emulator only, for tests: the ``after``-th NVML change from now takes effect,
        then the agent dies (as its process would)."""
        self._authorize(token)
        if not isinstance(self._nvml, PersistedEmulator):
            raise ConfigError(f"{self.node}: crash injection needs the emulator backend", field="backend")
        self._nvml.emulator.crash(after)

    def _authorize(self, token: str | None) -> None:
        # Anyone who reaches the Ray cluster can call an actor's methods; changing MIG state
        # takes the token the node was given (a Kubernetes Secret, deploy/), compared in
        # constant time. A node given none changes nothing.
        if self._token is None:
            raise AgentAuthError(f"{self.node}: {TOKEN_ENV} is not set on this node, so it refuses to change "
                                 "anything (docs/actuator.md, 'Who can change MIG state')")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token.encode()):
            raise AgentAuthError(f"{self.node}: the call did not carry this cluster's agent token")

    def close(self) -> None:
        server, self._metrics_server = getattr(self, "_metrics_server", None), None
        if server is not None:
            server.shutdown()
            server.server_close()
        self.backend.close()
        if self.journal is not None:
            self.journal.close()

