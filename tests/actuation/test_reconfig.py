"""Reconfiguration against the emulator: exact targets, kept ids, make-before-break order,
a fault or a crash at every step, busy instances, external changes, the journal.

The journal is cross-checked by replaying its done actions from the layout it started at:
they must give the layout the GPU holds.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import migrator
from migrator.actuation.emulator import MUTATING_CALLS, EmulatedCrash, NvmlEmulator
from migrator.errors import (
    ExternalChange,
    InstanceBusy,
    InvalidLayout,
    JournalError,
    MigModeDisabled,
    ReconfigFailed,
    RollbackFailed,
)
from migrator.actuation.journal import Journal, read_journal
from migrator.geometry.layout import Layout, Placement
from migrator.actuation.nvml import NvmlBackend
from migrator.actuation.reconfig import PHASES, apply, plan_reconfiguration, recover

# (gpu, current, target): each has make-before-break creations, destroys and creations on
# freed slices, so a fault can hit every kind and phase of action.
CASES = [
    ("A100-40GB", "3g.20gb@0,2g.10gb@4", "4g.20gb@0,1g.5gb@4,1g.5gb@5,1g.5gb@6"),
    ("H100-80GB", "1g.10gb@0,1g.10gb@1,2g.20gb@2", "4g.40gb@0,3g.40gb@4"),
    ("A30-24GB", "2g.12gb@0,1g.6gb@2", "1g.6gb@0,1g.6gb@1,1g.6gb@2,1g.6gb@3"),
    ("RTX-PRO-6000-BLACKWELL", "2g.48gb@0", "1g.24gb@0,1g.24gb@3,2g.48gb@6"),
]


@pytest.fixture(scope="module")
def no_fsync() -> Any:
    """Journals without the disk flush, for the tests that write hundreds of them (the flush
    itself is checked by test_every_action_is_fsynced_before_it_runs)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("migrator.actuation.journal.os.fsync", lambda fd: None)
        yield


def mutations(emu: NvmlEmulator) -> int:
    return sum(call in MUTATING_CALLS for call in emu.calls)


def ids(emu: NvmlEmulator, layout: str) -> dict[str, int]:
    return {p: emu.gi_id(0, p) for p in layout.split(",") if p}


def replay(txn: Any) -> str:
    """The layout the journal's done actions lead to from the transaction's start."""
    placements = set(Layout.parse(txn.current))
    started = {r["seq"]: r["action"] for r in txn.events("start")}
    for done in txn.events("done"):
        action = started[done["seq"]]
        placement = Placement.parse(action["placement"])
        if action["kind"] == "create_gi":
            placements.add(placement)
        elif action["kind"] == "destroy_gi":
            placements.discard(placement)
    return str(Layout.of(placements))


def crash_midway(gpu: str, current: str, target: str, k: int, journal: Path) -> NvmlEmulator:
    """A GPU on which `apply` died right after its k-th NVML action, with its journal."""
    emu = NvmlEmulator([gpu], layouts=[current])
    emu.crash(k)
    with pytest.raises(EmulatedCrash), Journal(journal) as sink:
        apply(NvmlBackend(emu).open(), 0, target, expected=current, journal=sink)
    return emu


def kept(current: str, target: str) -> list[str]:
    return sorted(set(current.split(",")) & set(target.split(",")) - {""})


# -- reaching the target -------------------------------------------------------------------------


@settings(max_examples=25)
@given(data=st.data())
def test_any_pair_of_layouts_reaches_exactly_the_target(data, gpu, tmp_path_factory, no_fsync):
    layouts = migrator.Geometry.for_gpu(gpu).layouts()
    current = data.draw(st.sampled_from(layouts), label="current")
    target = data.draw(st.sampled_from(layouts), label="target")
    emu = NvmlEmulator([gpu], layouts=[current])
    before = ids(emu, current)
    path = tmp_path_factory.mktemp("j") / "journal.jsonl"
    with NvmlBackend(emu) as backend, Journal(path) as journal:
        result = apply(backend, 0, target, expected=current, journal=journal)
    assert emu.layout(0) == result.after == target
    assert {p: emu.gi_id(0, p) for p in kept(current, target)} == {p: before[p] for p in kept(current, target)}
    assert result.executed == mutations(emu) == len(result.reconfiguration.actions)
    transactions = read_journal(path) if path.exists() and path.stat().st_size else ()
    assert len(transactions) == (1 if result.executed else 0)
    for txn in transactions:
        assert txn.status == "committed" and not txn.problems() and replay(txn) == target


@settings(max_examples=25)
@given(data=st.data())
def test_actions_are_ordered_make_break_after_and_never_touch_kept(data, gpu):
    geometry = migrator.Geometry.for_gpu(gpu)
    current = data.draw(st.sampled_from(geometry.layouts()), label="current")
    target = data.draw(st.sampled_from(geometry.layouts()), label="target")
    with NvmlBackend(NvmlEmulator([gpu], layouts=[current])) as backend:
        recon = plan_reconfiguration(backend.state(0), target, geometry)
    transition = geometry.transition(current, target)
    phases = [PHASES.index(a.phase) for a in recon.actions]
    assert phases == sorted(phases)
    made = [a.placement for a in recon.actions if a.kind == "create_gi" and a.phase == "make"]
    assert tuple(made) == transition.created_before_destroy
    assert {a.placement for a in recon.actions if a.kind == "destroy_gi"} == set(transition.destroyed)
    assert not {a.placement for a in recon.actions} & set(transition.kept)
    assert recon.make_before_break == transition.make_before_break


@pytest.fixture(scope="module")
def real_plan() -> Any:
    scenario = migrator.Scenario.default()
    return scenario, migrator.Planner(scenario, config=migrator.PlannerConfig(horizon=4, time_limit_s=0.5)).plan()


def test_applying_a_planner_plan_reaches_each_slot_layout(real_plan):
    scenario, plan = real_plan
    emu = NvmlEmulator.from_scenario(scenario)
    executed = 0
    with NvmlBackend(emu) as backend:
        for t in range(len(plan.gpus[0].slots)):
            for g, gpu_plan in enumerate(plan.gpus):
                previous = emu.layout(g)
                slot = gpu_plan.slots[t]
                executed += apply(backend, g, slot.layout, expected=previous).executed
                assert emu.layout(g) == slot.layout
                assert set(slot.assignment) == set(filter(None, slot.layout.split(",")))
    assert executed > 0, "the plan changes no layout: the test would prove nothing"


# -- a fault or a crash at every step --------------------------------------------------------------


@pytest.mark.parametrize("gpu, current, target", CASES, ids=[c[0] for c in CASES])
def test_a_fault_at_any_step_rolls_back_to_the_old_layout(gpu, current, target, tmp_path, no_fsync):
    with NvmlBackend(NvmlEmulator([gpu], layouts=[current])) as backend:
        actions = plan_reconfiguration(backend.state(0), target, backend.geometry(0)).actions
    assert {a.phase for a in actions} == set(PHASES)
    for k, action in enumerate(actions, start=1):
        emu = NvmlEmulator([gpu], layouts=[current])
        before = ids(emu, current)
        emu.fail(k, error=NvmlEmulator.NVML_ERROR_INSUFFICIENT_RESOURCES)
        path = tmp_path / f"fail{k}.jsonl"
        with NvmlBackend(emu) as backend, Journal(path) as journal, pytest.raises(ReconfigFailed) as info:
            apply(backend, 0, target, expected=current, journal=journal)
        assert emu.layout(0) == current, f"fault at action {k}"
        assert {p: emu.gi_id(0, p) for p in kept(current, target)} == {p: before[p] for p in kept(current, target)}
        assert info.value.nvml_error == "NVML_ERROR_INSUFFICIENT_RESOURCES"
        assert str(action.placement) in info.value.action and info.value.action.split()[0] == action.kind.split("_")[0]
        assert "NVML_ERROR_INSUFFICIENT_RESOURCES" in str(info.value) and info.value.layout == current
        (txn,) = read_journal(path)
        assert txn.status == "aborted" and not txn.problems() and replay(txn) == current
        assert txn.events("failed")[0]["error"] == "NVML_ERROR_INSUFFICIENT_RESOURCES"


@pytest.mark.parametrize("gpu, current, target", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("prefer", ["target", "fallback"])
def test_a_crash_at_any_step_is_recovered_to_the_old_or_the_new_layout(gpu, current, target, prefer, tmp_path,
                                                                      no_fsync):
    with NvmlBackend(NvmlEmulator([gpu], layouts=[current])) as backend:
        n = len(plan_reconfiguration(backend.state(0), target, backend.geometry(0)).actions)
    before = ids(NvmlEmulator([gpu], layouts=[current]), current)  # ids are deterministic
    for k in range(1, n + 1):
        path = tmp_path / f"crash{k}-{prefer}.jsonl"
        emu = crash_midway(gpu, current, target, k, path)
        (interrupted,) = read_journal(path)
        assert interrupted.status == "open" and not interrupted.problems()
        # The crash came after the k-th call took effect, before it was marked done.
        assert [r["seq"] for r in interrupted.in_flight()] == [k - 1]
        with NvmlBackend(emu) as backend:
            (result,) = recover(path, backend, prefer=prefer)
        goal = target if prefer == "target" else current
        assert (result.outcome, result.layout, emu.layout(0)) == (prefer, goal, goal), f"crash after action {k}"
        assert {p: emu.gi_id(0, p) for p in kept(current, target)} == {p: before[p] for p in kept(current, target)}
        transactions = read_journal(path)
        assert [t.status for t in transactions] == ["open", "committed"]
        assert transactions[1].recovers == interrupted.txn and not transactions[1].problems()
        with NvmlBackend(emu) as backend:
            assert [r.outcome for r in recover(path, backend)] == ["clean"]


def test_a_failed_rollback_leaves_an_open_transaction_that_recover_finishes(tmp_path):
    gpu, current, target = CASES[0]
    emu = NvmlEmulator([gpu], layouts=[current])
    emu.fail(4)  # destroying the first leaving instance's GPU instance...
    emu.fail(5)  # ...and the first rollback action
    path = tmp_path / "journal.jsonl"
    with NvmlBackend(emu) as backend, Journal(path) as journal, pytest.raises(RollbackFailed) as info:
        apply(backend, 0, target, journal=journal)
    assert "migrator recover" in str(info.value) and info.value.nvml_error == "NVML_ERROR_UNKNOWN"
    assert emu.layout(0) not in (current, target)
    (txn,) = read_journal(path)
    assert txn.status == "open" and not txn.problems() and replay(txn) == emu.layout(0)
    with NvmlBackend(emu) as backend:
        (result,) = recover(path, backend)
    assert (result.outcome, emu.layout(0)) == ("target", target)


def test_a_failing_recovery_falls_back_to_the_other_layout(tmp_path):
    gpu, current, target = CASES[1]
    path = tmp_path / "journal.jsonl"
    emu = crash_midway(gpu, current, target, 3, path)
    emu.fail(1, calls={"nvmlDeviceCreateGpuInstanceWithPlacement"})  # 4g.40gb@0 cannot be made
    with NvmlBackend(emu) as backend:
        (result,) = recover(path, backend, prefer="target")
    assert (result.outcome, emu.layout(0)) == ("fallback", current)
    assert "NVML_ERROR_UNKNOWN" in result.error


# -- busy instances, drain ------------------------------------------------------------------------

BUSY = ("A100-40GB", "3g.20gb@0,3g.20gb@4", "4g.20gb@0,3g.20gb@4")


def busy_emulator() -> NvmlEmulator:
    emu = NvmlEmulator([BUSY[0]], layouts=[BUSY[1]])
    emu.set_processes(0, emu.gi_id(0, "3g.20gb@0"), [1234, 1235])
    return emu


def test_busy_instance_blocks_destroy_without_force(tmp_path):
    emu = busy_emulator()
    with NvmlBackend(emu) as backend, Journal(tmp_path / "j.jsonl") as journal, pytest.raises(InstanceBusy) as info:
        apply(backend, 0, BUSY[2], journal=journal)
    assert (info.value.placement, info.value.pids) == ("3g.20gb@0", (1234, 1235))
    assert "force" in str(info.value) and "nothing was changed" in str(info.value)
    assert mutations(emu) == 0 and emu.layout(0) == BUSY[1]
    assert read_journal(tmp_path / "j.jsonl") == ()


def test_force_goes_ahead_but_nvml_refuses_running_processes():
    emu = busy_emulator()
    with NvmlBackend(emu) as backend, pytest.raises(ReconfigFailed) as info:
        apply(backend, 0, BUSY[2], force=True)
    assert info.value.nvml_error == "NVML_ERROR_IN_USE" and "destroy compute instance" in info.value.action
    assert emu.layout(0) == BUSY[1]


def test_drain_hook_runs_before_destroying_an_instance_that_serves_a_task():
    emu = busy_emulator()
    seen = []

    def drain(gpu: int, placement: Placement, task: str) -> None:
        seen.append((gpu, str(placement), task, emu.layout(0)))
        emu.set_processes(0, emu.gi_id(0, str(placement)), [])  # the scheduler stops its work

    tasks = {"3g.20gb@0": "bert:infer", "3g.20gb@4": "vit:retrain"}
    with NvmlBackend(emu) as backend:
        result = apply(backend, 0, BUSY[2], tasks=tasks, drain=drain)
    assert seen == [(0, "3g.20gb@0", "bert:infer", BUSY[1])]  # once, while it still existed
    assert emu.layout(0) == result.after == BUSY[2]


def test_drain_hook_that_fails_aborts_and_rolls_back(tmp_path):
    emu = busy_emulator()

    def drain(gpu: int, placement: Placement, task: str) -> None:
        raise RuntimeError("the scheduler could not move bert")

    with NvmlBackend(emu) as backend, Journal(tmp_path / "j.jsonl") as journal, pytest.raises(ReconfigFailed) as info:
        apply(backend, 0, BUSY[2], tasks={"3g.20gb@0": "bert:infer"}, drain=drain, journal=journal)
    assert "could not move bert" in str(info.value) and info.value.nvml_error is None
    assert emu.layout(0) == BUSY[1]
    (txn,) = read_journal(tmp_path / "j.jsonl")
    assert txn.events("drain")[0]["task"] == "bert:infer" and txn.status == "aborted"


@pytest.mark.parametrize("current, target", [(BUSY[1], BUSY[2]), ("7g.40gb@0", "3g.20gb@0")],
                         ids=["gpu-instance-1", "gpu-instance-0"])
def test_a_drained_instance_still_busy_is_not_destroyed(current, target):
    emu = NvmlEmulator(["A100-40GB"], layouts=[current])
    busy = current.split(",")[0]
    emu.set_processes(0, emu.gi_id(0, busy), [99])
    with NvmlBackend(emu) as backend, pytest.raises(ReconfigFailed) as info:
        apply(backend, 0, target, tasks={busy: "bert:infer"}, drain=lambda *args: None)
    # migrator's own check stops it (NVML would have said IN_USE a step later).
    assert isinstance(info.value.__cause__, InstanceBusy) and info.value.nvml_error is None
    assert "rolled back" in str(info.value) and emu.layout(0) == current


# -- external changes, checks before acting -------------------------------------------------------


def test_a_change_between_plan_and_apply_is_detected():
    emu = NvmlEmulator(["H100-80GB"], layouts=["3g.40gb@0"])
    with NvmlBackend(emu) as backend:
        planned_from = str(backend.state(0).layout)
        recon = plan_reconfiguration(backend.state(0), "3g.40gb@0,3g.40gb@4", backend.geometry(0))
        emu.set_layout(0, "3g.40gb@0,1g.10gb@4")  # an administrator, meanwhile
        calls = len(emu.calls)
        with pytest.raises(ExternalChange) as info:
            apply(backend, 0, recon.target, expected=planned_from)
    assert (info.value.expected, info.value.observed) == ("3g.40gb@0", "3g.40gb@0,1g.10gb@4")
    assert not [c for c in emu.calls[calls:] if c in MUTATING_CALLS]
    assert emu.layout(0) == "3g.40gb@0,1g.10gb@4"


def test_leftovers_of_an_interrupted_run_are_an_external_change_pointing_to_recover():
    emu = NvmlEmulator(["H100-80GB"], layouts=["3g.40gb@0"])
    with NvmlBackend(emu) as backend:
        backend.create_gpu_instance(0, Placement("3g.40gb", 4))
        with pytest.raises(ExternalChange, match="migrator recover"):
            apply(backend, 0, "3g.40gb@0", expected="3g.40gb@0,3g.40gb@4")


def test_dry_run_orders_the_actions_and_changes_nothing(tmp_path):
    gpu, current, target = CASES[0]
    emu = NvmlEmulator([gpu], layouts=[current])
    with NvmlBackend(emu) as backend, Journal(tmp_path / "j.jsonl") as journal:
        result = apply(backend, 0, target, journal=journal, dry_run=True)
    assert result.dry_run and result.executed == 0 and result.after == current
    assert mutations(emu) == 0 and read_journal(tmp_path / "j.jsonl") == ()
    lines = result.reconfiguration.lines()
    assert lines[0].startswith(f"gpu0 ({gpu}): {current} -> {target}")
    assert [line.split(".", 1)[1].split("[")[0].strip() for line in lines[2:]] == [
        a.describe() for a in result.reconfiguration.actions
    ]
    assert "on free slices" in lines[2] and "on freed slices" in lines[-1]


def test_mig_off_and_invalid_targets_fail_before_anything():
    emu = NvmlEmulator(["A100-40GB"], mig_enabled=False)
    with NvmlBackend(emu) as backend:
        with pytest.raises(MigModeDisabled):
            apply(backend, 0, "7g.40gb@0")
        with pytest.raises(InvalidLayout):
            apply(backend, 0, "3g.20gb@0,4g.20gb@0")
        assert apply(backend, 0, "").executed == 0
    assert mutations(emu) == 0


def test_verification_catches_an_instance_added_meanwhile():
    emu = NvmlEmulator(["A100-40GB"], layouts=["3g.20gb@0,2g.10gb@4"])

    def intrude(gpu: int, placement: Placement, task: str) -> None:
        # Someone creates 1g.5gb@6 while migrator is between two actions.
        wanted = emu.c_nvmlGpuInstancePlacement_t(6, 1)
        emu.nvmlDeviceCreateGpuInstanceWithPlacement(emu.nvmlDeviceGetHandleByIndex(0), 19, ctypes.byref(wanted))

    with NvmlBackend(emu) as backend, pytest.raises(ReconfigFailed) as info:
        apply(backend, 0, "3g.20gb@0,1g.5gb@4,1g.5gb@5", tasks={"2g.10gb@4": "a:infer"}, drain=intrude)
    assert info.value.action == "verify" and "1g.5gb@6" in str(info.value)
    assert emu.layout(0) == "3g.20gb@0,2g.10gb@4"


# -- the journal -----------------------------------------------------------------------------------


def test_every_action_is_fsynced_before_it_runs(monkeypatch, tmp_path):
    gpu, current, target = CASES[0]
    emu = NvmlEmulator([gpu], layouts=[current])
    synced: list[int] = []
    monkeypatch.setattr("migrator.actuation.journal.os.fsync", lambda fd: synced.append(mutations(emu)))
    with NvmlBackend(emu) as backend, Journal(tmp_path / "j.jsonl") as journal:
        result = apply(backend, 0, target, journal=journal)
    # The new file's directory, begin, then per action a synced start (with i NVML calls made)
    # and a synced done (i + 1), then commit.
    pairs = [i for n in range(result.executed) for i in (n, n + 1)]
    assert synced == [0, 0, *pairs, result.executed]


def test_recover_checks_the_gpu_model_and_reads_torn_journals(tmp_path):
    path = tmp_path / "j.jsonl"
    emu = crash_midway(*CASES[0], 2, path)
    with open(path, "a", encoding="utf-8") as stream:
        stream.write('{"v": 1, "txn": "x", "eve')  # the process died mid-write
    with NvmlBackend(NvmlEmulator(["H100-80GB"])) as other, pytest.raises(JournalError, match="A100-40GB"):
        recover(path, other)
    with NvmlBackend(emu) as backend:
        assert [r.outcome for r in recover(path, backend)] == ["target"]
    lines = path.read_text().splitlines()
    lines.insert(1, "not json")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JournalError) as info:
        read_journal(path)
    assert info.value.line == 2


def test_one_actuator_per_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    emu = crash_midway(*CASES[0], 3, path)
    with Journal(path) as held:
        with pytest.raises(JournalError, match="held by another migrator"):
            Journal(path)
        with NvmlBackend(emu) as backend:  # recovering through the holder's own journal works
            assert [r.outcome for r in recover(held, backend)] == ["target"]
    assert emu.layout(0) == CASES[0][2]


def test_journal_records_are_self_describing(tmp_path):
    gpu, current, target = CASES[1]
    with NvmlBackend(NvmlEmulator([gpu], layouts=[current])) as backend, Journal(tmp_path / "j.jsonl") as journal:
        apply(backend, 0, target, journal=journal)
    records = [json.loads(line) for line in Path(tmp_path / "j.jsonl").read_text().splitlines()]
    assert {r["v"] for r in records} == {1} and len({r["txn"] for r in records}) == 1
    begin = records[0]
    assert (begin["event"], begin["model"], begin["current"], begin["target"], begin["fallback"]) == (
        "begin", gpu, current, target, current)
    assert records[-1] == {**records[-1], "event": "commit", "layout": target}
    assert all(r["action"]["gi_id"] is not None for r in records if r["event"] == "start"
               and r["action"]["kind"] != "create_gi")
