"""Prometheus metrics of a controller or a node agent, through prometheus_client.

Each :class:`Metrics` has its own ``CollectorRegistry`` (never the process-wide default), so
several controllers in one process, and the tests, do not mix their numbers. What is
exported (``gpu`` is the GPU's index: the NVML device index for ``migrator run`` and an
agent, the cluster-wide position for ``migrator cluster``; ``gpu_uuid`` is NVML's UUID)::

    migrator_decisions_total                                    counter
    migrator_decision_latency_seconds                           histogram  observe, forecast, plan
    migrator_apply_latency_seconds{gpu,gpu_uuid}                histogram  one GPU's apply
    migrator_reconfigurations_total{gpu,gpu_uuid}               counter    applies that changed the layout
    migrator_nvml_actions_total{gpu,gpu_uuid}                   counter    NVML create/destroy steps run
    migrator_external_changes_total{gpu,gpu_uuid}              counter    layouts changed by someone else
    migrator_failures_total{stage,gpu,gpu_uuid}                 counter    observe, plan, apply, repair
                                                                           (gpu empty for a whole step)
    migrator_gpu_instances{gpu,gpu_uuid,model}                  gauge      GPU instances last observed
    migrator_planned_goodput                                    gauge      the last plan's expected Goodput
    migrator_planned_tenant_goodput{tenant}                     gauge      ... per tenant
    migrator_planned_slo_attainment{tenant}                     gauge      expected share of arrivals served
                                                                           within SLO (0-1)

The Goodput and attainment gauges are what the plan expects over its horizon (the planner's
estimate), not a measurement of served requests. :func:`serve_metrics` serves ``GET
/metrics`` (other paths: 404); :meth:`Metrics.write_textfile` writes the same text
atomically for node_exporter's textfile collector.
"""

from __future__ import annotations

import collections
import logging
import socket
import socketserver
import statistics
import threading
from pathlib import Path
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)

from .._files import write_atomically

__all__ = ["Metrics", "serve_metrics"]

log = logging.getLogger(__name__)

# Latency histogram buckets in seconds: decisions are meant to take well under a second.
_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SAMPLES_KEPT = 100_000  # for the medians of the summary: about a day of 1 s slots
_GPU = ("gpu", "gpu_uuid")


class _Latency:
    """The latest samples of one latency, for the summary's median (Prometheus' histogram
    has only buckets)."""

    def __init__(self) -> None:
        self.samples: collections.deque[float] = collections.deque(maxlen=_SAMPLES_KEPT)

    def p50_ms(self) -> float | None:
        return statistics.median(self.samples) * 1e3 if self.samples else None


class Metrics:
    """A controller's (or agent's) counters, gauges and latency histograms (thread-safe).

    ``registry`` is this object's own ``prometheus_client.CollectorRegistry``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._uuids: dict[int, str] = {}  # gpu -> UUID, as last observed
        self._totals = collections.Counter[str]()
        self._decision_samples = _Latency()
        self._apply_samples = _Latency()
        r = self.registry
        self._decisions = Counter("migrator_decisions", "Control decisions made (plans computed).", registry=r)
        self._decision = Histogram("migrator_decision_latency_seconds",
                                   "Time to observe, forecast and plan one decision.", buckets=_BUCKETS_S,
                                   registry=r)
        self._apply = Histogram("migrator_apply_latency_seconds", "Time to apply one GPU's decision.", _GPU,
                                buckets=_BUCKETS_S, registry=r)
        self._reconfigurations = Counter("migrator_reconfigurations", "Reconfigurations applied, per GPU.", _GPU,
                                         registry=r)
        self._actions = Counter("migrator_nvml_actions", "NVML create/destroy actions run, per GPU.", _GPU,
                                registry=r)
        self._external = Counter("migrator_external_changes", "Layouts found changed by someone else, per GPU.",
                                 _GPU, registry=r)
        self._failures = Counter("migrator_failures", "Failed steps, by stage (observe, plan, apply, repair) and "
                                 "GPU (empty when the whole step failed).", ("stage", *_GPU), registry=r)
        self._instances = Gauge("migrator_gpu_instances", "GPU instances on each GPU at the last observation.",
                                (*_GPU, "model"), registry=r)
        self._goodput = Gauge("migrator_planned_goodput", "Goodput the last plan expects over its horizon.",
                              registry=r)
        self._tenant_goodput = Gauge("migrator_planned_tenant_goodput",
                                     "Goodput the last plan expects over its horizon, per tenant.", ("tenant",),
                                     registry=r)
        self._attainment = Gauge("migrator_planned_slo_attainment", "Share of each tenant's arrivals the last "
                                 "plan expects to serve within its SLO (0-1).", ("tenant",), registry=r)

    def _gpu(self, gpu: int | None) -> tuple[str, str]:
        return ("", "") if gpu is None else (str(gpu), self._uuids.get(gpu, ""))

    # -- recording -----------------------------------------------------------------------------

    def record_decision(self, seconds: float) -> None:
        with self._lock:
            self._totals["decisions"] += 1
            self._decisions.inc()
            self._decision.observe(seconds)
            self._decision_samples.samples.append(seconds)

    def record_apply(self, gpu: int, result: Any) -> None:
        """One GPU's :class:`~migrator.actuation.reconfig.ApplyResult`."""
        with self._lock:
            labels = self._gpu(gpu)
            self._apply.labels(*labels).observe(result.duration_s)
            self._apply_samples.samples.append(result.duration_s)
            if result.changed:
                self._totals["reconfigurations"] += 1
                self._reconfigurations.labels(*labels).inc()
                self._actions.labels(*labels).inc(result.executed)

    def record_failure(self, stage: str, gpu: int | None = None) -> None:
        with self._lock:
            self._totals["failures"] += 1
            self._failures.labels(stage, *self._gpu(gpu)).inc()

    def record_external_change(self, gpu: int) -> None:
        with self._lock:
            self._totals["external_changes"] += 1
            self._external.labels(*self._gpu(gpu)).inc()

    def record_state(self, state: Any) -> None:
        """A :class:`~migrator.actuation.nvml.GpuState`: its instance count, and its UUID for
        the labels of everything recorded about ``state.index`` from now on."""
        with self._lock:
            uuid = getattr(state, "uuid", "")
            if uuid:
                self._uuids[state.index] = uuid
            self._instances.labels(*self._gpu(state.index), state.model).set(len(state.instances))

    def record_plan(self, plan: Any) -> None:
        """The :class:`migrator.Plan` just made: its expected Goodput and SLO attainment."""
        with self._lock:
            self._goodput.set(plan.total_goodput)
            for tenant, value in plan.goodput.items():
                self._tenant_goodput.labels(tenant).set(value)
            for tenant, value in plan.attainment.items():
                self._attainment.labels(tenant).set(value)

    # -- reading -------------------------------------------------------------------------------

    def totals(self) -> dict[str, Any]:
        """The counters every controller's summary starts with."""
        with self._lock:
            return {
                "decisions": self._totals["decisions"],
                "reconfigurations": self._totals["reconfigurations"],
                "failures": self._totals["failures"],
                "decision_ms_p50": self._decision_samples.p50_ms(),
                "apply_ms_p50": self._apply_samples.p50_ms(),
                "external_changes": self._totals["external_changes"],
            }

    def render(self) -> str:
        """The Prometheus text exposition format, as ``/metrics`` serves it."""
        return generate_latest(self.registry).decode("utf-8")

    def write_textfile(self, path: str | Path) -> None:
        """The text format to ``path``, atomically (node_exporter's textfile collector never
        reads half a file); a symbolic link is replaced, not written through."""
        write_atomically(path, self.render())


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape under way does not hold the process at exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics %s: " + format, self.address_string(), *args)


def _only_metrics(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"only /metrics is served\n"]
        return app(environ, start_response)

    return serve


def serve_metrics(metrics: Metrics, port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve ``GET /metrics`` on a daemon thread; ``server.shutdown()`` then
    ``server.server_close()`` stop it. Port 0 picks a free port (``server.server_address``)."""
    server_class: type[_Server] = (type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
                                   if ":" in host else _Server)
    server: WSGIServer = make_server(host, port, _only_metrics(make_wsgi_app(metrics.registry)), server_class,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="migrator-metrics", daemon=True).start()
    return server
