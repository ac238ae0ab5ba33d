"""Reconfiguration: from the layout a GPU has to the one a plan wants, changing only what must.

:func:`plan_reconfiguration` diffs the observed GPU against a target layout
(:meth:`migrator.Geometry.transition`) and orders the NVML actions:

1. create the new instances that fit on slices free now (GPU instance, then its compute
   instance): make-before-break, nothing is lost while they are set up;
2. destroy the instances that leave (compute instances, then the GPU instance), after the
   caller's drain hook for an instance that serves a task;
3. create the new instances that needed the freed slices.

Instances in both layouts are kept and never touched: their ids stay.

:func:`apply` executes the list through :class:`migrator.actuation.nvml.NvmlBackend`: it first checks
that the GPU still has the layout the plan was made from (:class:`ExternalChange` otherwise)
and that no instance to destroy has processes (:class:`InstanceBusy`, unless ``force``);
writes each action to the journal before running it and marks it done after; verifies the
result; and on any failure rolls back to the last good layout and raises
:class:`ReconfigFailed` naming the action and the NVML error. :func:`recover` reads the
journal after a crash and brings each GPU with an open transaction to its target, or back to
its last good layout. See docs/actuator.md.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..errors import (
    ExternalChange,
    InstanceBusy,
    JournalError,
    NVMLCallError,
    ReconfigError,
    ReconfigFailed,
    RollbackFailed,
)
from ..geometry.geometry import Geometry
from ..geometry.layout import Layout, LayoutLike, Placement
from .journal import Journal, read_journal
from .nvml import GpuState, NvmlBackend

__all__ = [
    "Action",
    "ApplyResult",
    "DrainHook",
    "Reconfiguration",
    "RecoveryResult",
    "apply",
    "plan_reconfiguration",
    "recover",
]

log = logging.getLogger(__name__)

#: Called as ``drain(gpu, placement, task)`` before an instance that serves ``task`` is
#: destroyed: stop sending it work and stop its processes. Raising aborts the
#: reconfiguration (it is rolled back).
DrainHook = Callable[[int, Placement, str], None]

KINDS = ("create_gi", "create_ci", "destroy_ci", "destroy_gi")
# make: on slices free now; break: destroying what leaves; after: on slices freed by break.
PHASES = ("make", "break", "after")
_IDLE = "idle"


@dataclass(frozen=True)
class Action:
    """One NVML step on one GPU instance (``placement``).

    ``gi_id`` / ``ci_id`` are known for what exists (destroys, completing an instance);
    a created GPU instance's id is NVML's to choose and is recorded when it is done.
    """

    kind: str
    placement: Placement
    gi_id: int | None = None
    ci_id: int | None = None
    phase: str = "make"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"action kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.phase not in PHASES:
            raise ValueError(f"action phase must be one of {', '.join(PHASES)}, got {self.phase!r}")

    def describe(self) -> str:
        gi = f" (GPU instance {self.gi_id})" if self.gi_id is not None else ""
        return {
            "create_gi": f"create GPU instance {self.placement}",
            "create_ci": f"create compute instance in {self.placement}{gi}",
            "destroy_ci": f"destroy compute instance {self.ci_id} of {self.placement}{gi}",
            "destroy_gi": f"destroy GPU instance {self.placement}{gi}",
        }[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "placement": str(self.placement), "gi_id": self.gi_id,
                "ci_id": self.ci_id, "phase": self.phase}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Action:
        return cls(row["kind"], Placement.parse(row["placement"]), row.get("gi_id"), row.get("ci_id"),
                   row.get("phase", "make"))


@dataclass(frozen=True)
class Reconfiguration:
    """The ordered actions that take one GPU from ``current`` to ``target``."""

    gpu: int
    model: str
    current: str
    target: str
    kept: tuple[Placement, ...]
    destroyed: tuple[Placement, ...]
    created: tuple[Placement, ...]
    actions: tuple[Action, ...]

    @property
    def make_before_break(self) -> bool:
        """Every new instance is created before anything is destroyed."""
        return not any(a.phase == "after" for a in self.actions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu, "model": self.model, "current": self.current, "target": self.target,
            "kept": [str(p) for p in self.kept], "destroyed": [str(p) for p in self.destroyed],
            "created": [str(p) for p in self.created], "make_before_break": self.make_before_break,
            "actions": [a.to_dict() for a in self.actions],
        }

    def lines(self) -> list[str]:
        """The dry run, as text: one line per action, in order."""
        head = f"gpu{self.gpu} ({self.model}): {self.current or '(empty)'} -> {self.target or '(empty)'}"
        if not self.actions:
            return [head + ": no change"]
        notes = {"make": "on free slices", "break": "leaves", "after": "on freed slices"}
        out = [head, "  keep: " + (", ".join(map(str, self.kept)) or "-")]
        out += [f"  {i:>2}. {a.describe():<58} [{notes[a.phase]}]" for i, a in enumerate(self.actions, 1)]
        return out


def plan_reconfiguration(state: GpuState, target: LayoutLike, geometry: Geometry) -> Reconfiguration:
    """The ordered actions from what ``state`` holds to ``target`` (see the module docstring).

    A GPU instance without a compute instance (left by an interrupted run) that the target
    keeps gets its compute instance first; one the target does not keep is destroyed.
    """
    target = geometry.validate(target)
    t = geometry.transition(state.layout, target)
    actions: list[Action] = []
    for placement in t.kept:
        gi = _instance(state, placement)
        if not gi.complete:
            actions.append(Action("create_ci", placement, gi.id, phase="make"))
    actions += _creations(t.created_before_destroy, "make")
    for placement in t.destroyed:
        gi = _instance(state, placement)
        actions += [Action("destroy_ci", placement, gi.id, ci.id, "break") for ci in gi.compute_instances]
        actions.append(Action("destroy_gi", placement, gi.id, phase="break"))
    actions += _creations(t.created_after_destroy, "after")
    return Reconfiguration(
        gpu=state.index, model=geometry.name, current=str(state.layout), target=str(target),
        kept=t.kept, destroyed=t.destroyed, created=t.created, actions=tuple(actions),
    )


def _creations(placements: Sequence[Placement], phase: str) -> list[Action]:
    return [Action(kind, p, phase=phase) for p in placements for kind in ("create_gi", "create_ci")]


def _instance(state: GpuState, placement: Placement) -> Any:
    gi = state.instance(placement)
    if gi is None:  # the transition came from this state's own layout
        raise AssertionError(f"no GPU instance at {placement} in {state.layout}")
    return gi


# -- executing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply` did on one GPU.

    ``before`` / ``after`` are the observed layouts, ``executed`` the number of NVML
    actions run (0 for a dry run or no change), ``ids`` placement -> GPU instance id after,
    ``txn`` the journal transaction (None when nothing was journaled).
    """

    gpu: int
    before: str
    after: str
    reconfiguration: Reconfiguration
    executed: int
    dry_run: bool
    ids: Mapping[str, int]
    duration_s: float
    txn: str | None = None

    @property
    def changed(self) -> bool:
        return self.executed > 0


@dataclass
class _Context:
    """One transaction on one GPU: where it writes and how it treats busy instances."""

    backend: NvmlBackend
    gpu: int
    geometry: Geometry
    journal: Journal | None
    tasks: Mapping[str, str]
    drain: DrainHook | None
    force: bool
    txn: str = ""
    seq: Iterator[int] = field(default_factory=itertools.count)
    failed: Action | None = None  # the action that raised, for the error message
    executed: int = 0

    def write(self, event: str, **fields: Any) -> None:
        if self.journal is not None:
            self.journal.write(self.txn, event, self.gpu, **fields)


def apply(
    backend: NvmlBackend,
    gpu: int,
    target: LayoutLike,
    *,
    expected: LayoutLike | None = None,
    tasks: Mapping[str, str] | None = None,
    drain: DrainHook | None = None,
    force: bool = False,
    journal: Journal | None = None,
    dry_run: bool = False,
) -> ApplyResult:
    """Bring GPU ``gpu`` to layout ``target``, changing only what must change.

    Parameters
    ----------
    backend : NvmlBackend
        Open backend (real NVML or the emulator).
    target : layout
        The layout to reach; invalid layouts raise ``InvalidLayout`` before anything runs.
    expected : layout, optional
        The layout the plan was made from; when the GPU holds another one,
        :class:`~migrator.errors.ExternalChange` is raised and nothing is changed.
    tasks : mapping, optional
        Placement text -> task now served (``"idle"`` or absent for none): which destroyed
        instances need the drain hook.
    drain : callable, optional
        ``drain(gpu, placement, task)`` runs before an instance serving a task is destroyed.
    force : bool
        Destroy instances that have processes (NVML itself still refuses, with
        ``NVML_ERROR_IN_USE``, while a compute instance has running processes).
    journal : Journal, optional
        Where every action is written before it runs.
    dry_run : bool
        Plan and check only: nothing is changed, nothing is journaled.

    Raises
    ------
    ExternalChange, InstanceBusy, MigModeDisabled
        Before any change.
    ReconfigFailed
        An action or the final check failed; the GPU was rolled back to its layout before.
    RollbackFailed
        The rollback failed too; the journal's transaction stays open for :func:`recover`.
    """
    started = time.perf_counter()
    geometry = backend.geometry(gpu)
    goal = backend.check_target(gpu, target)
    state = backend.state(gpu)
    if expected is not None:
        _check_unchanged(state, geometry.validate(expected))
    ctx = _Context(backend, gpu, geometry, journal, dict(tasks or {}), drain, force)
    return _transact(ctx, state, goal, state.layout, kind="apply", dry_run=dry_run, started=started)


def _check_unchanged(state: GpuState, expected: Layout) -> None:
    if state.layout == expected and not state.incomplete:
        return
    note = ""
    if state.incomplete:
        note = (f"; GPU instances without a compute instance ({', '.join(str(i.placement) for i in state.incomplete)}) "
                "mean an interrupted reconfiguration: run `migrator recover JOURNAL`")
    raise ExternalChange(
        f"gpu{state.index}: the layout changed since the plan was made: expected {expected or '(empty)'}, "
        f"found {state.layout or '(empty)'}{note}; nothing was changed",
        expected=str(expected), observed=str(state.layout), gpu=state.index, action="check layout",
        layout=str(state.layout),
    )


def _transact(
    ctx: _Context, state: GpuState, goal: Layout, fallback: Layout, *, kind: str, dry_run: bool = False,
    recovers: str | None = None, started: float | None = None,
) -> ApplyResult:
    """Plan, check, journal, run, verify; roll back to ``fallback`` on failure."""
    started = time.perf_counter() if started is None else started
    recon = plan_reconfiguration(state, goal, ctx.geometry)
    _check_busy(ctx, state, recon)
    journaled = bool(recon.actions) or kind == "recover"  # a recovery always closes its transaction
    if dry_run or not journaled:
        return _result(ctx, recon, state, state, dry_run, started)
    if ctx.journal is not None:
        ctx.txn = ctx.journal.begin(
            gpu=ctx.gpu, model=ctx.geometry.name, kind=kind, current=str(state.layout), target=str(goal),
            fallback=str(fallback), actions=[a.to_dict() for a in recon.actions], recovers=recovers,
        )
    log.info("gpu%d: %s -> %s, %d actions%s", ctx.gpu, state.layout, goal, len(recon.actions),
             "" if recon.make_before_break else " (some need freed slices)")
    try:
        _run(ctx, recon.actions, "forward")
        after = _verify(ctx, goal, _kept_ids(state, goal))
    except Exception as exc:  # anything: the GPU must not stay between two layouts
        _roll_back(ctx, fallback, exc)
        raise _failure(ctx, exc, fallback) from exc
    ctx.write("commit", layout=str(goal))
    return _result(ctx, recon, state, after, False, started)


def _result(ctx: _Context, recon: Reconfiguration, before: GpuState, after: GpuState, dry_run: bool,
            started: float) -> ApplyResult:
    return ApplyResult(
        gpu=ctx.gpu, before=str(before.layout), after=str(after.layout), reconfiguration=recon,
        executed=ctx.executed, dry_run=dry_run, ids=after.ids(), duration_s=time.perf_counter() - started,
        txn=ctx.txn or None,
    )


def _check_busy(ctx: _Context, state: GpuState, recon: Reconfiguration) -> None:
    """Refuse before any change to destroy a busy instance that no drain hook will empty."""
    if ctx.force:
        return
    for placement in recon.destroyed:
        gi = _instance(state, placement)
        drained = ctx.drain is not None and ctx.tasks.get(str(placement), _IDLE) != _IDLE
        if gi.pids and not drained:
            raise _busy(ctx, placement, gi.pids, "nothing was changed")


def _busy(ctx: _Context, placement: Placement, pids: tuple[int, ...], outcome: str) -> InstanceBusy:
    return InstanceBusy(
        f"gpu{ctx.gpu}: {placement} has running processes (pids {', '.join(map(str, pids))}) and would be "
        f"destroyed; drain it first or pass force=True (--force); {outcome}",
        placement=str(placement), pids=tuple(pids), gpu=ctx.gpu, action=f"destroy GPU instance {placement}",
    )


def _run(ctx: _Context, actions: Sequence[Action], phase: str) -> None:
    created: dict[Placement, int] = {}
    drained: set[Placement] = set()
    for action in actions:
        gi_id = action.gi_id if action.gi_id is not None else created.get(action.placement)
        action = Action(action.kind, action.placement, gi_id, action.ci_id, action.phase)
        if phase == "forward" and action.kind.startswith("destroy") and action.placement not in drained:
            drained.add(action.placement)
            _before_destroy(ctx, action)
        seq = next(ctx.seq)
        ctx.write("start", seq=seq, phase=phase, action=action.to_dict())
        ctx.failed = action
        try:
            new_gi, new_ci = _perform(ctx, action)
        except Exception as exc:
            ctx.write("failed", seq=seq, error=_error_name(exc), message=str(exc))
            raise
        ctx.failed = None
        ctx.executed += 1
        if action.kind == "create_gi" and new_gi is not None:
            created[action.placement] = new_gi
        ctx.write("done", seq=seq, gi_id=new_gi, ci_id=new_ci)


def _before_destroy(ctx: _Context, action: Action) -> None:
    """Drain an instance that serves a task, then make sure it is idle (unless forced)."""
    task = ctx.tasks.get(str(action.placement), _IDLE)
    if task != _IDLE and ctx.drain is not None:
        ctx.write("drain", placement=str(action.placement), task=task)
        ctx.failed = action
        ctx.drain(ctx.gpu, action.placement, task)
    if not ctx.force:
        pids = ctx.backend.processes(ctx.gpu).get(action.gi_id, ()) if action.gi_id is not None else ()
        if pids:
            ctx.failed = action
            raise _busy(ctx, action.placement, pids, "rolled back")


def _perform(ctx: _Context, action: Action) -> tuple[int | None, int | None]:
    """Run one action; returns the (GPU instance, compute instance) ids it made or touched."""
    backend, gpu = ctx.backend, ctx.gpu
    if action.kind == "create_gi":
        return backend.create_gpu_instance(gpu, action.placement), None
    if action.gi_id is None:
        raise ReconfigError(f"gpu{gpu}: {action.describe()}: no GPU instance id", gpu=gpu, action=action.describe())
    if action.kind == "create_ci":
        return action.gi_id, backend.create_compute_instance(gpu, action.gi_id)
    if action.kind == "destroy_ci":
        if action.ci_id is None:
            raise ReconfigError(f"gpu{gpu}: {action.describe()}: no compute instance id", gpu=gpu,
                                action=action.describe())
        backend.destroy_compute_instance(gpu, action.gi_id, action.ci_id)
        return action.gi_id, action.ci_id
    backend.destroy_gpu_instance(gpu, action.gi_id)
    return action.gi_id, None


def _kept_ids(state: GpuState, goal: Layout) -> dict[str, int]:
    """Ids that must not change: the instances present now that the goal keeps."""
    wanted = set(goal)
    return {str(i.placement): i.id for i in state.instances if i.placement in wanted}


def _verify(ctx: _Context, goal: Layout, kept: Mapping[str, int]) -> GpuState:
    """The GPU holds exactly ``goal``, every instance complete, kept instances unchanged."""
    after = ctx.backend.state(ctx.gpu)
    problem = ""
    if after.layout != goal:
        problem = f"holds {after.layout or '(empty)'} instead of {goal or '(empty)'}"
    elif after.incomplete:
        problem = f"{', '.join(str(i.placement) for i in after.incomplete)} have no compute instance"
    else:
        ids = after.ids()
        moved = [p for p, gi in kept.items() if ids.get(p) != gi]
        if moved:
            problem = f"kept instances {', '.join(moved)} were replaced (ids changed)"
    if problem:
        ctx.failed = None
        raise ReconfigError(f"gpu{ctx.gpu}: verification failed: the GPU {problem}", gpu=ctx.gpu,
                            action="verify", layout=str(after.layout))
    return after


def _roll_back(ctx: _Context, fallback: Layout, cause: BaseException) -> None:
    failed = ctx.failed
    ctx.write("rollback", layout=str(fallback), error=_error_name(cause))
    log.warning("gpu%d: %s; rolling back to %s", ctx.gpu, cause, fallback or "(empty)")
    try:
        state = ctx.backend.state(ctx.gpu)
        recon = plan_reconfiguration(state, fallback, ctx.geometry)
        _run(ctx, recon.actions, "rollback")
        _verify(ctx, fallback, _kept_ids(state, fallback))
    except Exception as exc:
        observed = _observed_layout(ctx)
        holds = "an unknown layout" if observed is None else (observed or "no instance")
        raise RollbackFailed(
            f"gpu{ctx.gpu}: {_what_failed(failed, cause)}; the rollback to {fallback or '(empty)'} failed too "
            f"({_error_name(exc)}: {exc}); the GPU holds {holds}: run `migrator recover JOURNAL`",
            rollback_error=exc, gpu=ctx.gpu, action=failed.describe() if failed else "verify",
            nvml_error=_nvml_error(cause), layout=observed,
        ) from cause
    ctx.failed = failed
    ctx.write("abort", layout=str(fallback))


def _observed_layout(ctx: _Context) -> str | None:
    """The layout now, or None when even reading fails (the device may be gone)."""
    try:
        return str(ctx.backend.state(ctx.gpu).layout)
    except Exception as exc:  # reporting the failure matters more than this detail
        log.error("gpu%d: cannot read the layout after a failed rollback: %s", ctx.gpu, exc)
        return None


def _failure(ctx: _Context, cause: BaseException, fallback: Layout) -> ReconfigFailed:
    failed = ctx.failed
    return ReconfigFailed(
        f"gpu{ctx.gpu}: {_what_failed(failed, cause)}; rolled back to {fallback or '(empty)'}",
        gpu=ctx.gpu, action=failed.describe() if failed else getattr(cause, "action", "") or "verify",
        nvml_error=_nvml_error(cause), layout=str(fallback),
    )


def _what_failed(action: Action | None, cause: BaseException) -> str:
    if action is None:
        return str(cause)
    return f"{action.describe()} failed: {cause}"


def _nvml_error(exc: BaseException) -> str | None:
    return exc.error if isinstance(exc, NVMLCallError) else None


def _error_name(exc: BaseException) -> str:
    return _nvml_error(exc) or type(exc).__name__


# -- recovery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveryResult:
    """What :func:`recover` did for one GPU.

    ``outcome``: ``clean`` (its last transaction had ended), ``target`` (brought to the
    interrupted transaction's target), ``fallback`` (brought back to its last good layout),
    or ``failed`` (still between layouts; ``error`` says why).
    """

    gpu: int
    txn: str
    outcome: str
    layout: str
    error: str | None = None


_PREFER = ("target", "fallback")


def recover(
    journal: str | Path | Journal, backend: NvmlBackend, *, prefer: str = "target", force: bool = False,
) -> list[RecoveryResult]:
    """Finish every transaction a crash (or a failed rollback) left open in ``journal`` (a
    path, or the open :class:`~migrator.actuation.journal.Journal` of the caller).

    For each GPU whose last transaction is open, the GPU is observed as it is and taken to
    that transaction's target (``prefer="target"``) or its last good layout
    (``prefer="fallback"``); if that fails it is rolled back to the other one. The recovery
    is itself a journaled transaction, so a crash during recovery is recovered the same way.
    Instances both layouts share are never touched.

    Raises
    ------
    JournalError
        Unreadable journal, or a GPU whose model is not the journal's.
    """
    if prefer not in _PREFER:
        raise ValueError(f"prefer must be one of {', '.join(_PREFER)}, got {prefer!r}")
    sink = journal if isinstance(journal, Journal) else Journal(journal)
    try:
        last = {t.gpu: t for t in read_journal(sink.path)}
        results = []
        for gpu in sorted(last):
            txn = last[gpu]
            if txn.status != "open":
                results.append(RecoveryResult(gpu, txn.txn, "clean", txn.layout or ""))
                continue
            results.append(_recover_one(backend, sink, txn, prefer, force))
    finally:
        if sink is not journal:
            sink.close()
    return results


def _recover_one(backend: NvmlBackend, sink: Journal, txn: Any, prefer: str, force: bool) -> RecoveryResult:
    geometry = backend.geometry(txn.gpu)
    if geometry.name != txn.model:
        raise JournalError(f"journal transaction {txn.txn} is for a {txn.model} at gpu{txn.gpu}, but gpu{txn.gpu} "
                           f"is a {geometry.name}")
    goal_text, other_text = (txn.target, txn.fallback) if prefer == "target" else (txn.fallback, txn.target)
    goal, other = geometry.validate(goal_text), geometry.validate(other_text)
    in_flight = [r["action"] for r in txn.in_flight()]
    log.warning("gpu%d: transaction %s was interrupted (in flight: %s); recovering to %s", txn.gpu, txn.txn,
                in_flight or "nothing", goal or "(empty)")
    ctx = _Context(backend, txn.gpu, geometry, sink, {}, None, force)
    state = backend.state(txn.gpu)
    try:
        _transact(ctx, state, goal, other, kind="recover", recovers=txn.txn)
    except ReconfigFailed as exc:
        return RecoveryResult(txn.gpu, ctx.txn, _PREFER[1 - _PREFER.index(prefer)], str(other), str(exc))
    except ReconfigError as exc:
        return RecoveryResult(txn.gpu, ctx.txn or txn.txn, "failed", exc.layout or str(state.layout), str(exc))
    return RecoveryResult(txn.gpu, ctx.txn, prefer, str(goal))
