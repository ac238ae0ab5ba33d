"""The online controller: observe, forecast, re-plan, apply the first slot, every slot.

One control step (:meth:`Controller.step`):

1. take the arrival counts observed since the last step from the arrival source and update
   the forecaster (``PlannerConfig.make_forecaster()``);
2. read every GPU's layout through the backend; a layout that is not the one the controller
   left is an external change: it is counted, logged, and planned from;
3. re-plan the horizon from the observed layouts (receding horizon:
   ``Planner.plan(forecast=..., state=PlannerState(...))``);
4. apply the plan's first slot to each GPU through :func:`migrator.actuation.reconfig.apply` (journaled,
   make-before-break, rolled back on failure), or only log the actions with ``dry_run``. A
   backend that changes a node's GPUs together (one with ``apply_layouts``:
   :class:`~migrator.actuation.migmanager.MigManagerBackend`) gets the whole slot in one call
   instead: one mig-manager change per GPU would stop the node's GPU clients once per GPU.

:meth:`Controller.run` repeats it every ``slot_s`` seconds of its clock (a
:class:`SimulatedClock` runs as fast as the planner) until a step count, :meth:`stop`, or
SIGTERM/SIGINT: a signal only sets a flag, so the step under way finishes (an apply commits
or rolls back) and the GPUs are left with valid layouts.

Arrivals come from an :class:`ArrivalSource`: :class:`TraceArrivals` (a recorded or
synthetic trace), :class:`CsvTailArrivals` (a CSV another process appends to) or
:class:`PushArrivals` (a scheduler that embeds migrator pushes counts); a scheduler can also
call :meth:`Controller.observe` directly. :class:`~migrator.actuation.metrics.Metrics` holds
the counters, gauges and latency histograms (prometheus_client, one registry per controller),
served by :func:`~migrator.actuation.metrics.serve_metrics`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence, cast

import numpy as np

from ..errors import ConfigError, MigratorError, ReconfigError
from ..geometry.layout import Layout, LayoutLike
from ..planning.planner import Plan, Planner, SlotPlan
from ..planning.planner_problem import PlannerState, TenantState
from ..workload.scenario import Scenario
from ..workload.settings import PlannerConfig
from ..workload.traces import TIME_COLUMNS, Trace
from .journal import Journal
from .metrics import Metrics, serve_metrics
from .nvml import GpuState, NvmlBackend
from .reconfig import ApplyResult, DrainHook, apply

__all__ = [
    "ArrivalSource",
    "Controller",
    "CsvTailArrivals",
    "Decision",
    "Metrics",
    "NodeBackend",
    "PushArrivals",
    "SimulatedClock",
    "TraceArrivals",
    "WallClock",
    "run_paced",
    "serve_metrics",
]

log = logging.getLogger(__name__)


# -- arrivals -----------------------------------------------------------------------------------


class ArrivalSource(Protocol):
    """Where observed arrivals come from: each :meth:`poll` returns the per-slot counts
    (arrays of shape ``(n_tenants,)``, in the scenario's tenant order) of the slots that
    ended since the last poll, oldest first; an empty list when none did."""

    def poll(self) -> list[np.ndarray]: ...


class NodeBackend(Protocol):
    """A backend that changes a node's GPUs together, in one :meth:`apply_layouts` call per
    step (:class:`~migrator.actuation.migmanager.MigManagerBackend`); the controller tells
    it from an :class:`~migrator.actuation.nvml.NvmlBackend` by that method."""

    def device_count(self) -> int: ...

    def geometry(self, gpu: int) -> Any: ...

    def state(self, gpu: int) -> GpuState: ...

    def apply_layouts(self, targets: Mapping[int, LayoutLike], *, expected: Mapping[int, LayoutLike] | None = None,
                      force: bool = False, dry_run: bool = False, journal: Journal | None = None) -> Any: ...


def _counts_row(values: Any, n: int, where: str) -> np.ndarray:
    row = np.asarray(values, dtype=np.float64)
    if row.shape != (n,) or not np.all(np.isfinite(row)) or np.any(row < 0):
        raise ConfigError(f"{where} must be {n} finite, non-negative counts (one per tenant), got {values!r}",
                          field="arrivals")
    return row


class TraceArrivals:
    """Replays a trace one slot per poll: the first poll sees nothing (no slot has ended
    yet), the next one slot 0, and so on; past the end, nothing."""

    def __init__(self, trace: Trace, tenants: Sequence[str]) -> None:
        self._counts = trace.select(list(tenants)).counts.astype(np.float64)
        self._next = -1

    def poll(self) -> list[np.ndarray]:
        self._next += 1
        if not 1 <= self._next <= self._counts.shape[1]:
            return []
        return [self._counts[:, self._next - 1]]


class PushArrivals:
    """Counts pushed by an embedding scheduler (thread-safe); each push is one slot."""

    def __init__(self, tenants: Sequence[str]) -> None:
        self.tenants = tuple(tenants)
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()

    def push(self, counts: Mapping[str, float] | Sequence[float]) -> None:
        """One slot's counts: a mapping tenant -> count (missing tenants count 0) or a
        sequence in tenant order."""
        if isinstance(counts, Mapping):
            unknown = sorted(set(counts) - set(self.tenants))
            if unknown:
                raise ConfigError(f"unknown tenant {unknown[0]!r}; tenants: {', '.join(self.tenants)}",
                                  field="arrivals")
            counts = [counts.get(t, 0.0) for t in self.tenants]
        row = _counts_row(counts, len(self.tenants), "pushed arrivals")
        with self._lock:
            self._queue.append(row)

    def poll(self) -> list[np.ndarray]:
        with self._lock:
            rows = list(self._queue)
            self._queue.clear()
        return rows


class CsvTailArrivals:
    """Reads the rows another process appends to a wide CSV file, one row per slot.

    The header is a time column (``slot``, ``second``, ``t`` or ``time_s``) and one count
    column per tenant (extra columns are ignored); the time column increases from row to row.
    A line is read once it ends with a newline, so a row being written is never read
    half-way. The file must exist when the reader is made (empty is fine): a path that does
    not is more likely a typo than a file to come, and would leave the controller blind.
    """

    def __init__(self, path: str | Path, tenants: Sequence[str]) -> None:
        self.path = Path(path)
        try:
            is_file = self.path.is_file()
        except OSError as exc:  # a name too long even to ask about, ...
            raise ConfigError(f"arrivals {str(self.path)[:80]}: {exc.strerror or exc}", field="arrivals") from exc
        if not is_file:
            raise ConfigError(f"arrivals {self.path}: no such file (create it, even empty, before the "
                              "controller starts)", field="arrivals")
        self.tenants = tuple(tenants)
        self._offset = 0
        self._columns: list[int] | None = None
        self._line = 0
        self._time = -np.inf

    def poll(self) -> list[np.ndarray]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self._offset)
                data = stream.read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"cannot read arrivals {self.path}: {exc.strerror or exc}", field="arrivals") from exc
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        try:
            text = complete.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"arrivals {self.path}: not UTF-8 text after line {self._line} "
                              f"(byte {self._offset - len(complete) + exc.start})", field="arrivals") from exc
        rows = []
        for raw in text.splitlines():
            self._line += 1
            cells = [c.strip() for c in raw.split(",")]
            if not any(cells):
                continue
            if self._columns is None:
                self._columns = self._header(cells)
            else:
                rows.append(self._row(cells))
        return rows

    def _header(self, cells: list[str]) -> list[int]:
        if not cells or cells[0] not in TIME_COLUMNS:
            raise ConfigError(f"arrivals {self.path}: the first column must be one of {', '.join(TIME_COLUMNS)}, "
                              f"got {cells[0] if cells else ''!r}", field="arrivals")
        missing = [t for t in self.tenants if t not in cells]
        if missing:
            raise ConfigError(f"arrivals {self.path}: no column for tenant {missing[0]!r}; columns: "
                              f"{', '.join(cells)}", field="arrivals")
        return [cells.index(t) for t in self.tenants]

    def _row(self, cells: list[str]) -> np.ndarray:
        assert self._columns is not None
        try:
            now = float(cells[0])
        except ValueError:
            now = np.nan
        if not np.isfinite(now) or now <= self._time:
            raise ConfigError(f"arrivals {self.path}, line {self._line}: the time column must be a number "
                              f"above the previous row's ({self._time:g}), got {cells[0][:40]!r}", field="arrivals")
        self._time = now
        values = []
        for tenant, column in zip(self.tenants, self._columns):
            where = f"arrivals {self.path}, line {self._line}, column {tenant!r}"
            try:
                values.append(float(cells[column]))
            except (IndexError, ValueError):
                raise ConfigError(f"{where}: not a number", field="arrivals") from None
        return _counts_row(values, len(self.tenants), f"arrivals {self.path}, line {self._line}")


# -- clocks -------------------------------------------------------------------------------------


class WallClock:
    """Real time (monotonic); waiting ends early when the stop event is set."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline_s: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, deadline_s - self.now()))


class SimulatedClock:
    """Time that jumps to each deadline at once: ``--steps N`` with the emulator runs as
    fast as the planner decides."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = float(start_s)

    def now(self) -> float:
        return self._now

    def sleep_until(self, deadline_s: float, stop: threading.Event) -> None:
        self._now = max(self._now, float(deadline_s))


# -- the controller -----------------------------------------------------------------------------


def placed_assignment(wanted: SlotPlan, layout: str) -> dict[str, str]:
    """The plan's tasks (``wanted.assignment``, placement text -> task) on the instances the
    GPU holds (``layout``). Where the actuator placed them (NVML) that is the plan itself;
    where the driver chose the placements (mig-manager keeps counts, not placements), each
    profile's planned instances are matched to the held ones of that profile in order of
    start."""
    if layout == wanted.layout:
        return dict(wanted.assignment)
    held = _by_profile(layout)
    placed = {}
    for profile, planned in _by_profile(wanted.layout).items():
        for plan_text, held_text in zip(planned, held.get(profile, ())):
            if plan_text in wanted.assignment:
                placed[held_text] = wanted.assignment[plan_text]
    return placed


def _by_profile(layout: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for placement in sorted(Layout.parse(layout), key=lambda p: p.start):
        out.setdefault(placement.profile, []).append(str(placement))
    return out



def run_paced(
    step: Callable[[], Any], clock: Any, stop: threading.Event, slot_s: float,
    steps: int | None = None, on_step: Callable[[Any], None] | None = None,
) -> int:
    """Call ``step`` once every ``slot_s`` seconds of ``clock`` until ``steps`` calls or
    ``stop`` is set; ``on_step(result)`` after each. A step longer than the slot starts the
    next one at once, not several at once. Returns the number of steps taken."""
    deadline = clock.now()
    done = 0
    while not stop.is_set() and (steps is None or done < steps):
        result = step()
        if on_step is not None:
            on_step(result)
        done += 1
        deadline += slot_s
        if clock.now() > deadline:
            log.warning("step %d took longer than the slot (%.3f s)", done, slot_s)
            deadline = clock.now()
        elif steps is None or done < steps:
            clock.sleep_until(deadline, stop)
    return done


@dataclass(frozen=True)
class Decision:
    """One control step: the layouts and tasks chosen for each GPU (applied, or only
    planned with ``dry_run``), the planned actions, how long it took, what failed."""

    slot: int
    layouts: tuple[str, ...]
    assignments: tuple[Mapping[str, str], ...]
    decision_ms: float
    apply_ms: float
    reconfigured: tuple[int, ...]
    actions: tuple[tuple[str, ...], ...]
    failures: tuple[str, ...] = ()
    dry_run: bool = False


class Controller:
    """Receding-horizon MIG controller over a backend (real NVML or the emulator).

    Parameters
    ----------
    scenario : Scenario
        Tenants, planner settings, slot length, GPUs.
    backend : NvmlBackend or NodeBackend (the MigManagerBackend)
        Open backend. One with ``apply_layouts`` (the mig-manager backend) is given each
        step's layouts for all its GPUs in one call, and is not asked to repair GPU
        instances left without a compute instance (mig-parted rebuilds such a GPU itself).
    arrivals : ArrivalSource, optional
        Where observed counts come from; by default a :class:`PushArrivals` (see
        :meth:`observe`).
    config : PlannerConfig, optional
        Overrides the scenario's planner settings.
    clock : WallClock or SimulatedClock, optional
        Wall time by default.
    journal : Journal, optional
        Reconfiguration journal (strongly advised on real GPUs: ``migrator recover`` needs it).
    drain : callable, optional
        ``drain(gpu, placement, task)`` before an instance serving a task is destroyed.
    force : bool
        Destroy instances with processes (see :func:`migrator.actuation.reconfig.apply`).
    dry_run : bool
        Plan and log the actions, change nothing.
    devices : sequence of int, optional
        The backend's device index of each scenario GPU; by default the scenario's own
        (``devices`` in its GPU entries, or the indices ``discover: nvml`` found), else
        ``0..n-1``. Each must have the scenario GPU's geometry.
    """

    def __init__(
        self,
        scenario: Scenario,
        backend: NvmlBackend | NodeBackend,
        *,
        arrivals: ArrivalSource | None = None,
        config: PlannerConfig | None = None,
        clock: WallClock | SimulatedClock | None = None,
        journal: Journal | None = None,
        drain: DrainHook | None = None,
        force: bool = False,
        dry_run: bool = False,
        devices: Sequence[int] | None = None,
    ) -> None:
        self.scenario = scenario
        self.backend = backend
        self.tenants = tuple(t.name for t in scenario.tenants)
        self.arrivals: ArrivalSource = arrivals if arrivals is not None else PushArrivals(self.tenants)
        self.planner = Planner(scenario, config)
        self.forecaster = self.planner.config.make_forecaster()
        self.clock = clock if clock is not None else WallClock()
        self.journal = journal
        self.drain = drain
        self.force = force
        self.dry_run = dry_run
        self.metrics = Metrics()
        self.slot = 0
        self._observed_slots = 0
        self._lock = threading.Lock()  # forecaster updates may come from a scheduler's thread
        self._stop = threading.Event()
        self._stop_reason = ""
        self._gpus = list(range(len(scenario.gpus)))
        self.devices = self._check_devices(devices)
        self._expected: list[str | None] = [None] * len(self._gpus)
        self._assignments: list[dict[str, str]] = [{} for _ in self._gpus]
        self._tenant_state: dict[str, TenantState] = {}
        self._last_layouts = [""] * len(self._gpus)
        self.last_decision: Decision | None = None
        self.last_plan: Plan | None = None  # the plan of the last decision (all its slots)

    def _check_devices(self, devices: Sequence[int] | None) -> tuple[int, ...]:
        count = self.backend.device_count()
        if devices is None:
            own = [g.device for g in self.scenario.gpus]
            wanted = tuple(int(d) for d in own if d is not None)
            if len(wanted) != len(own):
                wanted = tuple(range(len(self._gpus)))
        else:
            wanted = tuple(int(d) for d in devices)
        if len(wanted) != len(self._gpus) or len(set(wanted)) != len(wanted):
            raise ConfigError(f"devices must name {len(self._gpus)} distinct device indices (one per scenario GPU), "
                              f"got {list(wanted)}", field="devices")
        for i, (spec, device) in enumerate(zip(self.scenario.gpus, wanted)):
            if not 0 <= device < count:
                raise ConfigError(f"gpus[{i}]: device {device} does not exist; the backend has {count} devices",
                                  field=f"gpus[{i}]")
            found = self.backend.geometry(device)
            if found != spec.geometry:
                raise ConfigError(f"gpus[{i}]: the scenario has a {spec.model} but device {device} is a {found.name}",
                                  field=f"gpus[{i}]")
        return wanted

    # -- inputs from an embedding scheduler --------------------------------------------------

    def observe(self, counts: Mapping[str, float] | Sequence[float] | np.ndarray) -> None:
        """Fold one slot's observed counts into the forecaster now (thread-safe)."""
        if isinstance(counts, Mapping):
            counts = [counts.get(t, 0.0) for t in self.tenants]
        row = _counts_row(counts, len(self.tenants), "observed arrivals")
        with self._lock:
            self.forecaster.update(row)
            self._observed_slots += 1

    def report_progress(self, tenant: str, progress_gpu_s: float, done: bool = False) -> None:
        """Replace the planner's estimate of a tenant's retraining progress by the real one."""
        if tenant not in self.tenants:
            raise ConfigError(f"unknown tenant {tenant!r}; tenants: {', '.join(self.tenants)}", field="tenant")
        self._tenant_state[tenant] = TenantState(progress_gpu_s=float(progress_gpu_s), done=bool(done))

    def stop(self, reason: str = "stop requested") -> None:
        """Finish the step under way and return from :meth:`run`."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    # -- one step ---------------------------------------------------------------------------

    def step(self) -> Decision:
        """Observe, forecast, plan and apply one decision (see the module docstring)."""
        started = time.perf_counter()
        for row in self.arrivals.poll():
            self.observe(row)
        try:
            states = self._observe_gpus()
        except MigratorError as exc:
            return self._no_decision("observe", exc)
        try:
            plan = self._plan(states)
        except MigratorError as exc:
            return self._no_decision("plan", exc)
        decision_s = time.perf_counter() - started
        self.metrics.record_decision(decision_s)
        self.metrics.record_plan(plan)
        self.last_plan = plan
        decision = self._apply(plan, states, decision_s)
        self._tenant_state = dict(Planner.advance(plan).tenants)
        self.last_decision = decision
        self.slot += 1
        log.info("decision slot=%d decision_ms=%.1f apply_ms=%.1f layouts=%s reconfigured=%s%s",
                 decision.slot, decision.decision_ms, decision.apply_ms, "|".join(decision.layouts),
                 list(decision.reconfigured), " (dry run)" if self.dry_run else "")
        return decision

    def _no_decision(self, stage: str, exc: Exception) -> Decision:
        self.metrics.record_failure(stage)
        log.error("slot %d: no decision (%s failed): %s", self.slot, stage, exc)
        self.slot += 1
        return Decision(self.slot - 1, tuple(self._last_layouts), tuple(self._assignments), 0.0, 0.0, (), (),
                        (f"{stage}: {exc}",), self.dry_run)

    def _observe_gpus(self) -> list[GpuState]:
        states = []
        for g, device in zip(self._gpus, self.devices):
            state = self.backend.state(device)
            if state.incomplete and not self.dry_run and not self._node_wide:
                state = self._repair(state)
            layout = str(state.layout)
            if self._expected[g] is not None and layout != self._expected[g]:
                self.metrics.record_external_change(device)
                log.warning("gpu%d: layout changed outside migrator: expected %s, found %s; planning from it",
                            device, self._expected[g] or "(empty)", layout or "(empty)")
                self._assignments[g] = {p: t for p, t in self._assignments[g].items() if p in layout.split(",")}
            self._expected[g] = layout
            self.metrics.record_state(state)
            states.append(state)
        return states

    def _repair(self, state: GpuState) -> GpuState:
        """Destroy GPU instances without a compute instance (an interrupted run's leftovers)."""
        keep = [str(i.placement) for i in state.instances if i.complete]
        log.warning("gpu%d: GPU instances without a compute instance: %s; removing them", state.index,
                    ", ".join(str(i.placement) for i in state.incomplete))
        try:
            # Only a per-GPU backend is asked to repair (mig-parted rebuilds a node's GPUs itself).
            apply(cast(NvmlBackend, self.backend), state.index, ",".join(keep), journal=self.journal, force=self.force)
        except ReconfigError as exc:
            self.metrics.record_failure("repair", state.index)
            log.error("gpu%d: repair failed: %s", state.index, exc)
        return self.backend.state(state.index)

    def _plan(self, states: Sequence[GpuState]) -> Plan:
        layouts = tuple(str(s.layout) for s in states)
        assignments = tuple(
            {p: t for p, t in self._assignments[g].items() if p in layouts[g].split(",")} for g in self._gpus
        )
        state = PlannerState(layouts=layouts, assignments=assignments, tenants=dict(self._tenant_state),
                             slot=self.slot)
        with self._lock:
            forecast = self.forecaster.forecast(self.planner.config.horizon) if self._observed_slots else None
        if forecast is None:
            log.info("slot %d: no arrivals observed yet: planning on the scenario's own arrivals", self.slot)
        return self.planner.plan(forecast=forecast, state=state)

    @property
    def _node_wide(self) -> bool:
        """Whether the backend changes the node's GPUs together (``apply_layouts``)."""
        return callable(getattr(self.backend, "apply_layouts", None))

    def _layout_of(self, g: int, state: GpuState) -> str:
        """What GPU ``g`` holds after a step: what the apply left, else what was observed."""
        expected = self._expected[g]
        return expected if expected is not None else str(state.layout)

    def _apply(self, plan: Plan, states: Sequence[GpuState], decision_s: float) -> Decision:
        started = time.perf_counter()
        apply_all = self._apply_node if self._node_wide else self._apply_each
        results, failures = apply_all(plan, states)
        reconfigured: list[int] = []
        actions: list[tuple[str, ...]] = []
        for g, state in zip(self._gpus, states):
            result = results.get(g)
            if result is None:  # failed, or refused before any change
                self._expected[g] = None  # observed afresh next step, not flagged as a change
                actions.append(())
                continue
            self.metrics.record_apply(state.index, result)
            actions.append(tuple(a.describe() for a in result.reconfiguration.actions))
            if result.changed:
                reconfigured.append(g)
            if not self.dry_run:
                self._expected[g] = result.after
                self._assignments[g] = placed_assignment(plan.first(g), result.after)
        layouts = tuple(self._layout_of(g, s) for g, s in zip(self._gpus, states))
        self._last_layouts = list(layouts)
        return Decision(
            slot=self.slot, layouts=tuple(plan.first(g).layout for g in self._gpus) if self.dry_run else layouts,
            assignments=tuple(dict(plan.first(g).assignment) for g in self._gpus),
            decision_ms=decision_s * 1e3, apply_ms=(time.perf_counter() - started) * 1e3,
            reconfigured=tuple(reconfigured), actions=tuple(actions), failures=tuple(failures), dry_run=self.dry_run,
        )

    def _apply_each(self, plan: Plan, states: Sequence[GpuState]) -> tuple[dict[int, ApplyResult], list[str]]:
        """Each GPU through :func:`~migrator.actuation.reconfig.apply`, on its own: one GPU's
        failure (rolled back) does not stop the others."""
        results, failures = {}, []
        for g, state in zip(self._gpus, states):
            wanted = plan.first(g)
            try:
                results[g] = apply(cast(NvmlBackend, self.backend), state.index, wanted.layout, expected=state.layout,
                                   tasks=self._assignments[g], drain=self.drain, force=self.force,
                                   journal=self.journal, dry_run=self.dry_run)
            except MigratorError as exc:  # rolled back, or refused before any change
                failures.append(self._failed(exc, state.index))
        return results, failures

    def _apply_node(self, plan: Plan, states: Sequence[GpuState]) -> tuple[dict[int, ApplyResult], list[str]]:
        """All GPUs in one ``apply_layouts`` call. A GPU it refuses before writing anything
        (changed behind migrator's back, busy, MIG off) is left out and the call made again
        for the others; any other error (mig-manager answered ``failed``, timed out, the API
        refused) is the step's failure, one for the node."""
        gpu_of = {state.index: g for g, state in zip(self._gpus, states)}
        targets = {state.index: plan.first(g).layout for g, state in zip(self._gpus, states)}
        expected = {state.index: str(state.layout) for state in states}
        failures: list[str] = []
        apply_layouts = cast(NodeBackend, self.backend).apply_layouts  # _node_wide said it has one
        while targets:
            try:
                result = apply_layouts(targets, expected=expected, force=self.force, dry_run=self.dry_run,
                                       journal=self.journal)
            except MigratorError as exc:
                if isinstance(exc, ReconfigError) and exc.gpu in targets:
                    failures.append(self._failed(exc, exc.gpu))
                    del targets[exc.gpu], expected[exc.gpu]
                    continue
                failures.append(self._failed(exc, None))
                return {}, failures
            return {gpu_of[d]: r for d, r in result.per_gpu.items() if d in gpu_of}, failures
        return {}, failures

    def _failed(self, exc: MigratorError, device: int | None) -> str:
        self.metrics.record_failure("apply", device)
        log.error("slot %d: %s", self.slot, exc)
        return str(exc)

    # -- the loop ---------------------------------------------------------------------------

    def run(self, steps: int | None = None, on_step: Callable[[Decision], None] | None = None) -> dict[str, Any]:
        """Step every ``slot_s`` seconds of the clock until ``steps`` decisions, :meth:`stop`
        or SIGTERM/SIGINT; returns :meth:`summary`. ``on_step(decision)`` runs after each
        step (to print it, or write the metrics). Signal handlers are installed only when
        called from the main thread, and restored on return."""
        with self._signals():
            done = run_paced(self.step, self.clock, self._stop, self.scenario.slot_s, steps, on_step)
        if self._stop_reason:
            log.info("stopped (%s) after %d steps; layouts: %s", self._stop_reason, done,
                     "|".join(self._last_layouts))
        return self.summary()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, previous in saved.items():
                signal.signal(signum, previous)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only a flag: the step under way finishes, so no apply is cut short.
        self.stop(signal.Signals(signum).name)

    def summary(self) -> dict[str, Any]:
        """Counters and the current layouts: keys ``decisions``, ``reconfigurations``,
        ``failures``, ``decision_ms_p50``, ``gpus`` (``name``, ``model``, ``device``, ``layout``), plus
        ``external_changes``, ``apply_ms_p50``, ``slots``, ``dry_run``, ``stopped_by`` and
        ``actions`` (per GPU, the last decision's actions: what a dry run would do)."""
        last = self.last_decision
        return {
            **self.metrics.totals(),
            "slots": self.slot,
            "dry_run": self.dry_run,
            "stopped_by": self._stop_reason or None,
            "actions": [list(a) for a in last.actions] if last is not None else [[] for _ in self._gpus],
            "gpus": [
                {"name": f"gpu{g}", "model": self.scenario.gpus[g].model, "device": self.devices[g],
                 "layout": self._last_layouts[g]}
                for g in self._gpus
            ],
        }
