"""The NVML backend, running its real code against the emulator.

What the backend reads back (placements, ids, compute instances, processes) is checked
against what was put into the emulated GPUs directly, bypassing NVML; NVML's errors must come
out as NVMLCallError naming the call and the NVML_ERROR_* code.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import migrator
from migrator.actuation.emulator import NvmlEmulator
from migrator.actuation.nvml import NvmlBackend, error_name
from migrator.errors import MigModeDisabled, NVMLCallError, NVMLUnavailable
from migrator.geometry.layout import Placement

# Every function the backend may call, as nvidia-ml-py 12.560.30 names it.
NVIDIA_ML_PY_FUNCTIONS = {
    "nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetName",
    "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetMigMode", "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetGpuInstanceProfileInfo", "nvmlDeviceGetGpuInstancePossiblePlacements",
    "nvmlDeviceCreateGpuInstanceWithPlacement", "nvmlDeviceGetGpuInstances", "nvmlDeviceGetGpuInstanceById",
    "nvmlGpuInstanceGetInfo", "nvmlGpuInstanceDestroy", "nvmlGpuInstanceGetComputeInstanceProfileInfo",
    "nvmlGpuInstanceCreateComputeInstance", "nvmlGpuInstanceGetComputeInstances",
    "nvmlGpuInstanceGetComputeInstanceById", "nvmlComputeInstanceGetInfo", "nvmlComputeInstanceDestroy",
}


@pytest.fixture
def emu() -> NvmlEmulator:
    return NvmlEmulator(["A100-40GB", "H100-80GB"], layouts=["3g.20gb@0,3g.20gb@4", "1g.10gb@0,2g.20gb@2"])


@pytest.fixture
def backend(emu: NvmlEmulator) -> Any:
    with NvmlBackend(emu) as opened:
        yield opened


def test_state_reads_what_the_gpus_hold(emu, backend):
    state = backend.state(1)
    assert (state.name, state.model, state.mig_enabled) == ("NVIDIA H100 80GB HBM3", "H100-80GB", True)
    assert str(state.layout) == "1g.10gb@0,2g.20gb@2"
    assert state.ids() == {p: emu.gi_id(1, p) for p in ("1g.10gb@0", "2g.20gb@2")}
    gi = state.instance(Placement("2g.20gb", 2))
    assert (gi.profile_id, gi.size) == (14, 2)
    assert [(c.id, c.size) for c in gi.compute_instances] == [(0, 2)]
    assert not state.incomplete and gi.pids == ()


@settings(max_examples=40)
@given(data=st.data())
def test_any_layout_reads_back_exactly(data, gpu):
    layout = data.draw(st.sampled_from(migrator.Geometry.for_gpu(gpu).layouts()))
    emulator = NvmlEmulator([gpu], layouts=[layout])
    with NvmlBackend(emulator) as backend:
        state = backend.state(0)
    assert str(state.layout) == layout
    assert all(len(i.compute_instances) == 1 for i in state.instances)
    assert state.ids() == {p: emulator.gi_id(0, p) for p in layout.split(",") if p}


def test_processes_are_grouped_by_gpu_instance(emu, backend):
    emu.set_processes(0, emu.gi_id(0, "3g.20gb@4"), [31, 30])
    state = backend.state(0)
    assert state.instance(Placement("3g.20gb", 4)).pids == (30, 31)
    assert state.instance(Placement("3g.20gb", 0)).pids == ()
    assert backend.processes(0) == {emu.gi_id(0, "3g.20gb@4"): (30, 31)}


def test_create_and_destroy_through_the_backend(emu, backend):
    gi = backend.create_gpu_instance(1, Placement("3g.40gb", 4))
    assert backend.state(1).instance(Placement("3g.40gb", 4)).complete is False
    ci = backend.create_compute_instance(1, gi)
    instance = backend.state(1).instance(Placement("3g.40gb", 4))
    assert instance.id == gi == emu.gi_id(1, "3g.40gb@4")
    assert [(c.id, c.size) for c in instance.compute_instances] == [(ci, 3)]
    backend.destroy_compute_instance(1, gi, ci)
    backend.destroy_gpu_instance(1, gi)
    assert emu.layout(1) == "1g.10gb@0,2g.20gb@2"


@pytest.mark.parametrize(
    "step, error",
    [
        (lambda b, e: b.create_gpu_instance(0, Placement("4g.20gb", 0)), "NVML_ERROR_INSUFFICIENT_RESOURCES"),
        (lambda b, e: b.destroy_gpu_instance(0, e.gi_id(0, "3g.20gb@0")), "NVML_ERROR_IN_USE"),
        (lambda b, e: b.destroy_gpu_instance(0, 13), "NVML_ERROR_NOT_FOUND"),
        (lambda b, e: b.destroy_compute_instance(0, e.gi_id(0, "3g.20gb@0"), 5), "NVML_ERROR_NOT_FOUND"),
    ],
    ids=["overlap", "gi-with-ci", "no-such-gi", "no-such-ci"],
)
def test_nvml_errors_name_the_call_and_the_code(emu, backend, step, error):
    with pytest.raises(NVMLCallError) as info:
        step(backend, emu)
    assert info.value.error == error
    assert info.value.code == getattr(emu, error)
    assert info.value.call in str(info.value) and error in str(info.value) and "GPU 0" in str(info.value)
    assert emu.layout(0) == "3g.20gb@0,3g.20gb@4"


def test_without_privileges_reads_and_changes_fail_with_no_permission():
    # nvml.h: placements, instance listings and changes all "Require privileged user".
    emulator = NvmlEmulator(["A100-40GB"], privileged=False)
    with NvmlBackend(emulator) as backend:
        with pytest.raises(NVMLUnavailable, match="Insufficient Permissions"):
            backend.state(0)
        emulator.privileged = True
        backend.geometry(0)  # read (and kept) while privileged
        emulator.privileged = False
        with pytest.raises(NVMLCallError) as info:
            backend.create_gpu_instance(0, Placement("7g.40gb", 0))
    assert info.value.error == "NVML_ERROR_NO_PERMISSION"


def test_mig_off_is_reported_not_switched():
    emulator = NvmlEmulator(["A100-40GB"], mig_enabled=False)
    with NvmlBackend(emulator) as backend:
        state = backend.state(0)
        assert (state.mig_enabled, str(state.layout)) == (False, "")
        assert str(backend.check_target(0, "")) == ""
        with pytest.raises(MigModeDisabled, match="nvidia-smi -i 0 -mig 1"):
            backend.check_target(0, "3g.20gb@0")
    assert "nvmlDeviceSetMigMode" not in emulator.calls


def test_backend_calls_only_nvidia_ml_py_functions(emu, backend):
    gi = backend.create_gpu_instance(1, Placement("3g.40gb", 4))
    backend.create_compute_instance(1, gi)
    backend.states()
    backend.destroy_compute_instance(1, gi, 0)
    backend.destroy_gpu_instance(1, gi)
    assert set(emu.calls) <= NVIDIA_ML_PY_FUNCTIONS


def test_nvml_that_cannot_start_is_a_clear_error():
    class Failing(Exception):
        value = 12

    fake = types.SimpleNamespace(NVMLError=Failing, nvmlInit=lambda: (_ for _ in ()).throw(Failing()))
    with pytest.raises(NVMLUnavailable, match="NVML could not start"):
        NvmlBackend(fake).open()


def test_without_nvidia_ml_py_the_default_backend_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails, installed or not
    with pytest.raises(NVMLUnavailable, match=r"pip install 'migrator\[nvml\]'"):
        NvmlBackend()


def test_error_names_come_from_the_module_or_nvml_h():
    assert error_name(NvmlEmulator, 19) == "NVML_ERROR_IN_USE"
    assert error_name(types.SimpleNamespace(), 23) == "NVML_ERROR_INSUFFICIENT_RESOURCES"
    assert error_name(types.SimpleNamespace(), 12345) == "NVML error 12345"


def test_gpu_instance_without_compute_instance_is_incomplete(emu, backend):
    gi = backend.create_gpu_instance(1, Placement("1g.10gb", 6))
    state = backend.state(1)
    assert [i.placement for i in state.incomplete] == [Placement("1g.10gb", 6)]
    assert state.instance(Placement("1g.10gb", 6)).id == gi
    assert state.to_dict()["instances"][-1]["compute_instances"] == []
