"""The NVML emulator: nvidia-ml-py's call surface and NVML's answers, MIG state in memory.

Cross-checks: the geometry read back through the emulator equals the built-in table; which
placements it accepts is decided against the independent pure-Python reference
(tests/reference.py), not the geometry core it is built on; its names, values and parameter
names are those of nvidia-ml-py 12.560.30's pynvml.py; what it answers for every profile
constant is what real H100 and H200 GPUs answered (tests/data/nvml_*.json, replayed by
tests/nvml_replay.py); its privilege rules are nvml.h's "Requires privileged user" lines.
"""

from __future__ import annotations

import ctypes
import inspect
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nvml_replay import NvmlReplay
from reference import canonical

import migrator
from migrator.actuation import emulator as emulator_module
from migrator.actuation.emulator import MUTATING_CALLS, EmulatedCrash, NvmlEmulator

DATA = Path(__file__).resolve().parents[1] / "data"

# nvml.h / nvidia-ml-py 12.560.30 (pynvml.py lines 219-248): the values NVML returns.
NVML_ERRORS = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_INVALID_ARGUMENT": 2,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_NOT_FOUND": 6,
    "NVML_ERROR_INSUFFICIENT_SIZE": 7,
    "NVML_ERROR_RESET_REQUIRED": 16,
    "NVML_ERROR_IN_USE": 19,
    "NVML_ERROR_INSUFFICIENT_RESOURCES": 23,
    "NVML_ERROR_UNKNOWN": 999,
}
# nvml.h (NVIDIA/go-nvml 2f9e261, gen/nvml/nvml.h) / nvidia-ml-py 13.615.71: the profile constants.
GPU_INSTANCE_PROFILES = {
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE": 0,
    "NVML_GPU_INSTANCE_PROFILE_2_SLICE": 1,
    "NVML_GPU_INSTANCE_PROFILE_3_SLICE": 2,
    "NVML_GPU_INSTANCE_PROFILE_4_SLICE": 3,
    "NVML_GPU_INSTANCE_PROFILE_7_SLICE": 4,
    "NVML_GPU_INSTANCE_PROFILE_8_SLICE": 5,
    "NVML_GPU_INSTANCE_PROFILE_6_SLICE": 6,
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1": 7,
    "NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1": 8,
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2": 9,
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE_GFX": 10,
    "NVML_GPU_INSTANCE_PROFILE_2_SLICE_GFX": 11,
    "NVML_GPU_INSTANCE_PROFILE_4_SLICE_GFX": 12,
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE_NO_ME": 13,
    "NVML_GPU_INSTANCE_PROFILE_2_SLICE_NO_ME": 14,
    "NVML_GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME": 15,
    "NVML_GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME": 16,
    "NVML_GPU_INSTANCE_PROFILE_3_SLICE_GFX": 17,
    "NVML_GPU_INSTANCE_PROFILE_COUNT": 18,
}
COMPUTE_INSTANCE_PROFILE_COUNT = 9  # NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE_NVL (8) is the last
# nvml.h's "Requires privileged user" calls among the emulator's, each with what a test calls.
PRIVILEGED_CALLS = (
    "nvmlDeviceGetGpuInstancePossiblePlacements",
    "nvmlDeviceCreateGpuInstanceWithPlacement",
    "nvmlDeviceGetGpuInstances",
    "nvmlDeviceGetGpuInstanceById",
    "nvmlGpuInstanceDestroy",
    "nvmlGpuInstanceCreateComputeInstance",
    "nvmlGpuInstanceGetComputeInstances",
    "nvmlGpuInstanceGetComputeInstanceById",
    "nvmlComputeInstanceDestroy",
    "nvmlDeviceSetMigMode",  # "Requires root user."
)
# The recordings of real GPUs (tools/nvml_dump.py, driver 580.159.04) and the built-in table each is.
RECORDINGS = {"nvml_h100_80gb_hbm3.json": "H100-80GB", "nvml_h200.json": "H200-141GB"}

# nvidia-ml-py's parameter names for the functions the backend calls (12.560.30 and 13.615.71).
PYNVML_SIGNATURES = {
    "nvmlInit": [],
    "nvmlShutdown": [],
    "nvmlDeviceGetCount": [],
    "nvmlDeviceGetHandleByIndex": ["index"],
    "nvmlDeviceGetName": ["handle"],
    "nvmlDeviceGetMemoryInfo": ["handle", "version"],
    "nvmlDeviceGetMigMode": ["device"],
    "nvmlDeviceSetMigMode": ["device", "mode"],
    "nvmlDeviceGetComputeRunningProcesses": ["handle"],
    "nvmlDeviceGetGpuInstanceProfileInfo": ["device", "profile", "version"],
    "nvmlDeviceGetGpuInstancePossiblePlacements": ["device", "profileId", "placementsRef", "countRef"],
    "nvmlDeviceCreateGpuInstanceWithPlacement": ["device", "profileId", "placement"],
    "nvmlDeviceGetGpuInstances": ["device", "profileId", "gpuInstancesRef", "countRef"],
    "nvmlDeviceGetGpuInstanceById": ["device", "gpuInstanceId"],
    "nvmlGpuInstanceGetInfo": ["gpuInstance"],
    "nvmlGpuInstanceDestroy": ["gpuInstance"],
    "nvmlGpuInstanceGetComputeInstanceProfileInfo": ["device", "profile", "engProfile", "version"],
    "nvmlGpuInstanceCreateComputeInstance": ["gpuInstance", "profileId"],
    "nvmlGpuInstanceGetComputeInstances": ["gpuInstance", "profileId", "computeInstancesRef", "countRef"],
    "nvmlGpuInstanceGetComputeInstanceById": ["gpuInstance", "computeInstanceId"],
    "nvmlComputeInstanceGetInfo": ["computeInstance"],
    "nvmlComputeInstanceDestroy": ["computeInstance"],
}


@pytest.fixture
def emu() -> NvmlEmulator:
    emulator = NvmlEmulator(["A100-40GB", "H100-80GB"], layouts=["3g.20gb@0", ""])
    emulator.nvmlInit()
    return emulator


def code_of(call: Any) -> int:
    with pytest.raises(NvmlEmulator.NVMLError) as info:
        call()
    return info.value.value


def create(emu: NvmlEmulator, gpu: int, profile: str, start: int) -> Any:
    """Create a GPU instance through the NVML surface, as the backend does."""
    p = migrator.Geometry.for_gpu(emu.to_dict()["gpus"][gpu]["model"]).profile(profile)
    wanted = emu.c_nvmlGpuInstancePlacement_t(start, p.memory_slices)
    return emu.nvmlDeviceCreateGpuInstanceWithPlacement(emu.nvmlDeviceGetHandleByIndex(gpu), p.id,
                                                        ctypes.byref(wanted))


# -- the call surface ------------------------------------------------------------------------


def test_error_names_values_and_classes_are_nvidia_ml_pys():
    for name, value in NVML_ERRORS.items():
        assert getattr(NvmlEmulator, name) == value, name
    error = NvmlEmulator.NVMLError(19)
    assert type(error).__name__ == "NVMLError_InUse" and isinstance(error, NvmlEmulator.NVMLError)
    assert isinstance(NvmlEmulator.NVMLError(23), NvmlEmulator.NVMLError_InsufficientResources)
    assert str(NvmlEmulator.NVMLError(4)) == "Insufficient Permissions"


@pytest.mark.parametrize("name", sorted(PYNVML_SIGNATURES))
def test_parameter_names_are_nvidia_ml_pys(name):
    parameters = list(inspect.signature(getattr(NvmlEmulator, name)).parameters)[1:]
    assert parameters == PYNVML_SIGNATURES[name]


def test_same_surface_as_the_installed_nvidia_ml_py():
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    for name in PYNVML_SIGNATURES:
        assert hasattr(pynvml, name), name
        real = [p for p in inspect.signature(getattr(pynvml, name)).parameters]
        assert real == PYNVML_SIGNATURES[name], name
    for name, value in NVML_ERRORS.items():
        assert getattr(pynvml, name) == value
    for name, value in GPU_INSTANCE_PROFILES.items():
        assert getattr(pynvml, name) == value, name
    assert pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT == COMPUTE_INSTANCE_PROFILE_COUNT
    for name in ("c_nvmlGpuInstance_t", "c_nvmlComputeInstance_t", "NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED",
                 "NVMLError_InUse"):
        assert hasattr(pynvml, name), name
    # The fields the backend reads, in the real structures.
    for struct in ("c_nvmlGpuInstancePlacement_t", "c_nvmlGpuInstanceInfo_t", "c_nvmlComputeInstanceInfo_t",
                   "c_nvmlGpuInstanceProfileInfo_v2_t", "c_nvmlComputeInstanceProfileInfo_v2_t"):
        real = {f[0] for f in getattr(pynvml, struct)._fields_}
        ours = {f[0] for f in getattr(emulator_module, struct)._fields_}
        assert ours <= real, (struct, ours - real)


def test_profile_constants_are_nvidia_ml_pys():
    for name, value in GPU_INSTANCE_PROFILES.items():
        assert getattr(NvmlEmulator, name) == value, name
    assert NvmlEmulator.NVML_COMPUTE_INSTANCE_PROFILE_COUNT == COMPUTE_INSTANCE_PROFILE_COUNT


@pytest.mark.parametrize(
    "gpu, constant, profile",
    [
        ("H100-80GB", "NVML_GPU_INSTANCE_PROFILE_7_SLICE", "7g.80gb"),
        ("H100-80GB", "NVML_GPU_INSTANCE_PROFILE_3_SLICE", "3g.40gb"),
        ("H100-80GB", "NVML_GPU_INSTANCE_PROFILE_1_SLICE", "1g.10gb"),
        ("H100-80GB", "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1", "1g.10gb+me"),
        ("H100-80GB", "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2", "1g.20gb"),
        ("A100-40GB", "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2", "1g.10gb"),
        ("A30-24GB", "NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1", "2g.12gb+me"),
        ("A30-24GB", "NVML_GPU_INSTANCE_PROFILE_4_SLICE", "4g.24gb"),
        ("RTX-PRO-6000-BLACKWELL", "NVML_GPU_INSTANCE_PROFILE_2_SLICE_NO_ME", "2g.48gb-me"),
        ("RTX-PRO-6000-BLACKWELL", "NVML_GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME", "1g.24gb+me.all"),
        ("RTX-PRO-6000-BLACKWELL", "NVML_GPU_INSTANCE_PROFILE_4_SLICE_GFX", "4g.96gb+gfx"),
    ],
    ids=str,
)
def test_profile_info_takes_nvmls_profile_constants(gpu, constant, profile):
    emulator = NvmlEmulator([gpu])
    emulator.nvmlInit()
    info = emulator.nvmlDeviceGetGpuInstanceProfileInfo(emulator.nvmlDeviceGetHandleByIndex(0),
                                                        GPU_INSTANCE_PROFILES[constant])
    expected = migrator.Geometry.for_gpu(gpu).profile(profile)
    assert (info.name, info.id, info.sliceCount) == (f"MIG {profile}".encode(), expected.id, expected.compute_slices)


@pytest.mark.parametrize("recording", sorted(RECORDINGS), ids=str)
def test_answers_what_the_recorded_gpu_answered(recording):
    replay = NvmlReplay.from_json(DATA / recording)
    device = replay.devices[0]
    emulator = NvmlEmulator([RECORDINGS[recording]], mig_enabled=[bool(device["mig_mode"][0])])
    emulator.nvmlInit()
    ours, theirs = emulator.nvmlDeviceGetHandleByIndex(0), replay.nvmlDeviceGetHandleByIndex(0)
    assert emulator.nvmlDeviceGetName(ours) == replay.nvmlDeviceGetName(theirs)
    assert emulator.nvmlDeviceGetMemoryInfo(ours).total == replay.nvmlDeviceGetMemoryInfo(theirs).total
    assert emulator.nvmlDeviceGetMigMode(ours) == replay.nvmlDeviceGetMigMode(theirs)
    fields = ("id", "sliceCount", "instanceCount", "memorySizeMB", "decoderCount", "encoderCount", "jpegCount",
              "ofaCount", "name")
    answered = set()
    for constant in range(GPU_INSTANCE_PROFILES["NVML_GPU_INSTANCE_PROFILE_COUNT"] + 2):
        try:
            real = replay.nvmlDeviceGetGpuInstanceProfileInfo(theirs, constant)
        except replay.NVMLError as exc:
            assert code_of(lambda: emulator.nvmlDeviceGetGpuInstanceProfileInfo(ours, constant)) == exc.value, constant
            continue
        info = emulator.nvmlDeviceGetGpuInstanceProfileInfo(ours, constant)
        assert {f: getattr(info, f) for f in fields} == {f: getattr(real, f) for f in fields}, constant
        placements = []
        for nvml, handle in ((emulator, ours), (replay, theirs)):
            buffer, count = (nvml.c_nvmlGpuInstancePlacement_t * 8)(), ctypes.c_uint(8)
            nvml.nvmlDeviceGetGpuInstancePossiblePlacements(handle, real.id, buffer, ctypes.byref(count))
            placements.append([(buffer[i].start, buffer[i].size) for i in range(count.value)])
        assert placements[0] == placements[1], constant
        answered.add(constant)
    assert answered == {r["profile_index"] for r in device["profiles"]}


def test_compute_instance_profiles_count_as_nvidia_ml_pys(emu):
    gi = emu.nvmlDeviceGetGpuInstanceById(emu.nvmlDeviceGetHandleByIndex(0), emu.gi_id(0, "3g.20gb@0"))
    shared = emu.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
    answers = {}
    for profile in range(COMPUTE_INSTANCE_PROFILE_COUNT + 1):
        try:
            answers[profile] = emu.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, profile, shared).sliceCount
        except emu.NVMLError as exc:
            answers[profile] = exc.value
    not_supported, invalid = NVML_ERRORS["NVML_ERROR_NOT_SUPPORTED"], NVML_ERRORS["NVML_ERROR_INVALID_ARGUMENT"]
    # 1, 2 and 3 compute slices in a 3g instance; 4, 7, 8, 6, 1_SLICE_REV1 and 7_SLICE_NVL not; 9 is past the count.
    assert answers == {0: 1, 1: 2, 2: 3, 3: not_supported, 4: not_supported, 5: not_supported, 6: not_supported,
                       7: not_supported, 8: not_supported, 9: invalid}


def test_geometry_read_through_the_emulator_is_the_builtin_table(gpu):
    emulator = NvmlEmulator([gpu])
    emulator.nvmlInit()
    read = migrator.Geometry.from_nvml(emulator.nvmlDeviceGetHandleByIndex(0), emulator)
    builtin = migrator.Geometry.for_gpu(gpu)
    assert read == builtin and read.name == gpu
    assert {p.name: p.id for p in read.profiles} == {p.name: p.id for p in builtin.profiles}


def test_calls_before_nvml_init_are_uninitialized():
    emulator = NvmlEmulator(["A100-40GB"])
    assert code_of(emulator.nvmlDeviceGetCount) == NVML_ERRORS["NVML_ERROR_UNINITIALIZED"]
    emulator.nvmlInit()
    assert emulator.nvmlDeviceGetCount() == 1


# -- NVML's answers ------------------------------------------------------------------------------


def test_creating_on_a_gpu_with_mig_off_is_not_supported():
    emulator = NvmlEmulator(["A100-40GB"], mig_enabled=False)
    emulator.nvmlInit()
    handle = emulator.nvmlDeviceGetHandleByIndex(0)
    assert emulator.nvmlDeviceGetMigMode(handle) == [0, 0]
    assert code_of(lambda: create(emulator, 0, "3g.20gb", 0)) == NVML_ERRORS["NVML_ERROR_NOT_SUPPORTED"]
    buffer, count = (emulator.c_nvmlGpuInstance_t * 2)(), ctypes.c_uint()
    listing = lambda: emulator.nvmlDeviceGetGpuInstances(handle, 9, buffer, ctypes.byref(count))  # noqa: E731
    assert code_of(listing) == NVML_ERRORS["NVML_ERROR_NOT_SUPPORTED"]


def test_a_mig_mode_change_stays_pending_until_a_reset():
    emulator = NvmlEmulator(["A100-40GB"], mig_enabled=False)
    emulator.nvmlInit()
    handle = emulator.nvmlDeviceGetHandleByIndex(0)
    status = emulator.nvmlDeviceSetMigMode(handle, emulator.NVML_DEVICE_MIG_ENABLE)
    assert status == NVML_ERRORS["NVML_ERROR_RESET_REQUIRED"]  # nvidia-ml-py returns the activation status
    assert emulator.nvmlDeviceGetMigMode(handle) == [0, 1]  # [current, pending]
    assert code_of(lambda: create(emulator, 0, "3g.20gb", 0)) == NVML_ERRORS["NVML_ERROR_NOT_SUPPORTED"]
    assert emulator.to_dict()["gpus"][0]["mig_pending"] is True
    assert NvmlEmulator.from_dict(emulator.to_dict()).to_dict() == emulator.to_dict()  # pending survives a save
    emulator.reset_gpu(0)
    assert emulator.nvmlDeviceGetMigMode(handle) == [1, 1]
    emulator.nvmlGpuInstanceCreateComputeInstance(create(emulator, 0, "3g.20gb", 0), 2)
    disable = lambda: emulator.nvmlDeviceSetMigMode(handle, emulator.NVML_DEVICE_MIG_DISABLE)  # noqa: E731
    assert code_of(disable) == NVML_ERRORS["NVML_ERROR_IN_USE"]  # GPU instances hold the mode
    assert emulator.nvmlDeviceGetMigMode(handle) == [1, 1]
    emulator.set_processes(0, emulator.gi_id(0, "3g.20gb@0"), [99])
    assert code_of(lambda: emulator.reset_gpu(0)) == NVML_ERRORS["NVML_ERROR_IN_USE"]
    emulator.set_processes(0, emulator.gi_id(0, "3g.20gb@0"), [])
    emulator.reset_gpu(0)  # a reset loses every instance
    assert emulator.layout(0) == "" and emulator.nvmlDeviceGetMigMode(handle) == [1, 1]
    assert emulator.nvmlDeviceSetMigMode(handle, emulator.NVML_DEVICE_MIG_ENABLE) == emulator.NVML_SUCCESS  # no change


def test_unprivileged_caller_may_read_profiles_but_not_list_or_change():
    emulator = NvmlEmulator(["A100-40GB"], layouts=["3g.20gb@0"])
    emulator.nvmlInit()
    device = emulator.nvmlDeviceGetHandleByIndex(0)
    gi_id = emulator.gi_id(0, "3g.20gb@0")
    gi = emulator.nvmlDeviceGetGpuInstanceById(device, gi_id)  # handles taken while still privileged
    ci = emulator.nvmlGpuInstanceGetComputeInstanceById(gi, 0)
    emulator.privileged = False
    placement = emulator.c_nvmlGpuInstancePlacement_t(4, 4)
    count = ctypes.c_uint(8)
    calls = {
        "nvmlDeviceGetGpuInstancePossiblePlacements": (device, 9, (emulator.c_nvmlGpuInstancePlacement_t * 8)(),
                                                       ctypes.byref(count)),
        "nvmlDeviceCreateGpuInstanceWithPlacement": (device, 9, ctypes.byref(placement)),
        "nvmlDeviceGetGpuInstances": (device, 9, (emulator.c_nvmlGpuInstance_t * 2)(), ctypes.byref(count)),
        "nvmlDeviceGetGpuInstanceById": (device, gi_id),
        "nvmlGpuInstanceDestroy": (gi,),
        "nvmlGpuInstanceCreateComputeInstance": (gi, 0),
        "nvmlGpuInstanceGetComputeInstances": (gi, 2, (emulator.c_nvmlComputeInstance_t * 8)(), ctypes.byref(count)),
        "nvmlGpuInstanceGetComputeInstanceById": (gi, 0),
        "nvmlComputeInstanceDestroy": (ci,),
        "nvmlDeviceSetMigMode": (device, emulator.NVML_DEVICE_MIG_DISABLE),
        # With MIG on, the parent device's process list is for privileged callers only.
        "nvmlDeviceGetComputeRunningProcesses": (device,),
    }
    assert set(calls) == {*PRIVILEGED_CALLS, "nvmlDeviceGetComputeRunningProcesses"}
    for name, args in calls.items():
        assert code_of(lambda: getattr(emulator, name)(*args)) == NVML_ERRORS["NVML_ERROR_NO_PERMISSION"], name
    assert emulator.layout(0) == "3g.20gb@0" and emulator.nvmlDeviceGetMigMode(device) == [1, 1]
    # What stays open: profile information, MIG mode, instance information, device queries.
    assert emulator.nvmlDeviceGetGpuInstanceProfileInfo(device, emulator.NVML_GPU_INSTANCE_PROFILE_3_SLICE).id == 9
    assert emulator.nvmlGpuInstanceGetInfo(gi).id == gi_id
    assert emulator.nvmlComputeInstanceGetInfo(ci).id == 0
    # The same calls with privileges succeed (so the refusals above are the privilege rule's).
    emulator.privileged = True
    emulator.nvmlDeviceGetGpuInstances(device, 9, (emulator.c_nvmlGpuInstance_t * 2)(), ctypes.byref(count))
    assert count.value == 1 and emulator.nvmlDeviceGetComputeRunningProcesses(device) == []
    # With MIG off the process list is open (nvml.h restricts only the MIG aggregate).
    off = NvmlEmulator(["A100-40GB"], mig_enabled=False, privileged=False)
    off.nvmlInit()
    assert off.nvmlDeviceGetComputeRunningProcesses(off.nvmlDeviceGetHandleByIndex(0)) == []


@pytest.mark.parametrize(
    "profile, start, error",
    [
        ("3g.20gb", 4, None),
        ("3g.20gb", 0, "NVML_ERROR_INSUFFICIENT_RESOURCES"),  # overlaps 3g.20gb@0
        ("4g.20gb", 0, "NVML_ERROR_INSUFFICIENT_RESOURCES"),
        ("2g.10gb", 2, "NVML_ERROR_INSUFFICIENT_RESOURCES"),  # slices 2-3 belong to 3g.20gb@0
        ("2g.10gb", 4, None),
        ("3g.20gb", 2, "NVML_ERROR_INVALID_ARGUMENT"),  # 3g.20gb starts at 0 or 4 only
    ],
    ids=str,
)
def test_create_with_placement_answers_like_nvml(emu, profile, start, error):
    if error is None:
        gi = create(emu, 0, profile, start)
        assert emu.nvmlGpuInstanceGetInfo(gi).placement.start == start
    else:
        assert code_of(lambda: create(emu, 0, profile, start)) == NVML_ERRORS[error]


def test_unknown_profile_id_and_placement_by_value_are_invalid_arguments(emu):
    device = emu.nvmlDeviceGetHandleByIndex(0)
    placement = emu.c_nvmlGpuInstancePlacement_t(4, 4)
    invalid = NVML_ERRORS["NVML_ERROR_INVALID_ARGUMENT"]
    assert code_of(lambda: emu.nvmlDeviceCreateGpuInstanceWithPlacement(device, 77, ctypes.byref(placement))) == invalid
    # nvidia-ml-py passes the argument to C as is: a structure by value would be garbage there.
    assert code_of(lambda: emu.nvmlDeviceCreateGpuInstanceWithPlacement(device, 9, placement)) == invalid
    assert emu.layout(0) == "3g.20gb@0"


def test_destroy_refuses_while_in_use_and_stale_handles_are_invalid(emu):
    device = emu.nvmlDeviceGetHandleByIndex(0)
    gi = emu.nvmlDeviceGetGpuInstanceById(device, emu.gi_id(0, "3g.20gb@0"))
    assert code_of(lambda: emu.nvmlGpuInstanceDestroy(gi)) == NVML_ERRORS["NVML_ERROR_IN_USE"]  # has a CI
    ci = emu.nvmlGpuInstanceGetComputeInstanceById(gi, 0)
    emu.set_processes(0, emu.gi_id(0, "3g.20gb@0"), [4242])
    assert code_of(lambda: emu.nvmlComputeInstanceDestroy(ci)) == NVML_ERRORS["NVML_ERROR_IN_USE"]
    emu.set_processes(0, emu.gi_id(0, "3g.20gb@0"), [])
    emu.nvmlComputeInstanceDestroy(ci)
    emu.nvmlGpuInstanceDestroy(gi)
    assert emu.layout(0) == ""
    assert code_of(lambda: emu.nvmlGpuInstanceGetInfo(gi)) == NVML_ERRORS["NVML_ERROR_INVALID_ARGUMENT"]
    assert code_of(lambda: emu.nvmlDeviceGetGpuInstanceById(device, 1)) == NVML_ERRORS["NVML_ERROR_NOT_FOUND"]


def test_processes_carry_their_instance_ids(emu):
    gi_id = emu.gi_id(0, "3g.20gb@0")
    emu.set_processes(0, gi_id, [11, 12])
    rows = emu.nvmlDeviceGetComputeRunningProcesses(emu.nvmlDeviceGetHandleByIndex(0))
    assert [(r.pid, r.gpuInstanceId, r.computeInstanceId) for r in rows] == [(11, gi_id, 0), (12, gi_id, 0)]


def test_listing_needs_a_buffer_large_enough(emu):
    emu.set_layout(0, "1g.5gb@0,1g.5gb@1")
    device = emu.nvmlDeviceGetHandleByIndex(0)
    small, count = (emu.c_nvmlGpuInstance_t * 1)(), ctypes.c_uint()
    fill = lambda buffer: emu.nvmlDeviceGetGpuInstances(device, 19, buffer, ctypes.byref(count))  # noqa: E731
    assert code_of(lambda: fill(small)) == NVML_ERRORS["NVML_ERROR_INSUFFICIENT_SIZE"]
    fill((emu.c_nvmlGpuInstance_t * 7)())
    assert count.value == 2


@settings(max_examples=60)
@given(data=st.data())
def test_accepts_a_placement_exactly_when_the_reference_says_it_fits(data, gpu, reference, reference_layouts):
    # The emulator decides with the geometry core; the reference shares no code with it.
    current = list(data.draw(st.sampled_from(reference_layouts), label="layout"))
    placement = data.draw(st.sampled_from(reference.placements()), label="placement")
    emulator = NvmlEmulator([gpu], layouts=[canonical(current)])
    emulator.nvmlInit()
    geometry = migrator.Geometry.for_gpu(gpu)
    profile = geometry.profile(placement[0])
    wanted = emulator.c_nvmlGpuInstancePlacement_t(placement[1], profile.memory_slices)
    fits = placement not in current and reference.is_valid([*current, placement])
    device = emulator.nvmlDeviceGetHandleByIndex(0)
    try:
        emulator.nvmlDeviceCreateGpuInstanceWithPlacement(device, profile.id, ctypes.byref(wanted))
        accepted = True
    except emulator.NVMLError as exc:
        assert exc.value == NVML_ERRORS["NVML_ERROR_INSUFFICIENT_RESOURCES"]
        accepted = False
    assert accepted == fits


# -- ids -------------------------------------------------------------------------------------------


def test_gpu_instance_ids_follow_nvmls_size_ranges():
    # A100: the whole GPU 0, half-GPU instances 1-2, quarter 3-6, eighth 7-14 (see the module).
    emulator = NvmlEmulator(["A100-40GB", "A100-40GB"], layouts=["1g.5gb@0,1g.5gb@1,2g.10gb@2,3g.20gb@4", "7g.40gb@0"])
    ids = {p: emulator.gi_id(0, p) for p in emulator.layout(0).split(",")}
    assert ids == {"1g.5gb@0": 7, "1g.5gb@1": 8, "2g.10gb@2": 3, "3g.20gb@4": 1}
    assert emulator.gi_id(1, "7g.40gb@0") == 0


def test_kept_instances_keep_their_ids_and_new_ones_take_the_lowest_free(emu):
    emu.set_layout(0, "1g.5gb@0,1g.5gb@1,1g.5gb@2")
    before = {p: emu.gi_id(0, p) for p in ("1g.5gb@0", "1g.5gb@2")}
    device = emu.nvmlDeviceGetHandleByIndex(0)
    gi = emu.nvmlDeviceGetGpuInstanceById(device, emu.gi_id(0, "1g.5gb@1"))
    emu.nvmlComputeInstanceDestroy(emu.nvmlGpuInstanceGetComputeInstanceById(gi, 0))
    emu.nvmlGpuInstanceDestroy(gi)
    new = create(emu, 0, "1g.5gb", 5)
    assert {p: emu.gi_id(0, p) for p in before} == before
    assert emu.nvmlGpuInstanceGetInfo(new).id == 8  # the id the destroyed one freed
    ci = emu.nvmlGpuInstanceCreateComputeInstance(new, 0)
    assert emu.nvmlComputeInstanceGetInfo(ci).id == 0


# -- fault injection ---------------------------------------------------------------------------


def test_fail_makes_exactly_the_nth_mutating_call_fail_without_effect(emu):
    emu.fail(2, error=NVML_ERRORS["NVML_ERROR_INSUFFICIENT_RESOURCES"])
    gi = create(emu, 0, "1g.5gb", 4)  # first mutating call: fine
    emu.nvmlGpuInstanceGetInfo(gi)  # reads do not count
    assert code_of(lambda: emu.nvmlGpuInstanceCreateComputeInstance(gi, 0)) == 23
    assert emu.nvmlGpuInstanceGetInfo(gi).id > 0 and emu.layout(0) == "3g.20gb@0,1g.5gb@4"
    emu.nvmlGpuInstanceCreateComputeInstance(gi, 0)  # the fault fired once


def test_crash_lets_the_call_take_effect_then_kills_the_process(emu):
    emu.crash(1)
    with pytest.raises(EmulatedCrash):
        create(emu, 0, "1g.5gb", 4)
    assert emu.layout(0) == "3g.20gb@0,1g.5gb@4"  # the GPU keeps what was done
    assert code_of(emu.nvmlDeviceGetCount) == NVML_ERRORS["NVML_ERROR_UNINITIALIZED"]  # a new process
    assert not issubclass(EmulatedCrash, Exception)


def test_faults_can_target_any_call_and_reject_unknown_names(emu):
    emu.fail(1, calls={"nvmlDeviceGetCount"})
    assert code_of(emu.nvmlDeviceGetCount) == NVML_ERRORS["NVML_ERROR_UNKNOWN"]
    with pytest.raises(ValueError, match="nvmlNoSuchCall"):
        emu.fail(1, calls={"nvmlNoSuchCall"})
    with pytest.raises(ValueError, match=">= 1"):
        emu.crash(0)
    assert "nvmlDeviceCreateGpuInstanceWithPlacement" in MUTATING_CALLS


# -- state ------------------------------------------------------------------------------------------


def test_saved_state_round_trips_with_ids_and_processes(tmp_path, emu):
    emu.set_layout(1, "1g.10gb@0,3g.40gb@4")
    emu.set_processes(1, emu.gi_id(1, "3g.40gb@4"), [7])
    path = tmp_path / "emu.json"
    emu.save(path)
    again = NvmlEmulator.load(path)
    assert again.to_dict() == emu.to_dict()
    assert again.layout(1) == "1g.10gb@0,3g.40gb@4"


def uuids(emulator: NvmlEmulator) -> list[str]:
    emulator.nvmlInit()
    try:
        return [emulator.nvmlDeviceGetUUID(emulator.nvmlDeviceGetHandleByIndex(i))
                for i in range(emulator.nvmlDeviceGetCount())]
    finally:
        emulator.nvmlShutdown()


def test_emulated_machines_do_not_share_gpu_uuids(tmp_path):
    # Metrics are labelled by GPU UUID: two emulated nodes of a cluster must not collide.
    first, second = (NvmlEmulator(["A100-40GB"] * 2) for _ in range(2))
    assert len(set(uuids(first)) | set(uuids(second))) == 4
    assert all(u.startswith(f"GPU-{first.machine}-") for u in uuids(first))
    first.save(tmp_path / "emu.json")
    assert uuids(NvmlEmulator.load(tmp_path / "emu.json")) == uuids(first)


def test_a_state_file_without_a_machine_id_keeps_its_old_uuids(tmp_path):
    document = NvmlEmulator(["A100-40GB"]).to_dict()
    del document["machine"]  # as saved before machine ids
    assert uuids(NvmlEmulator.from_dict(document)) == ["GPU-00000000-0000-0000-0000-emulated0000"]


@pytest.mark.parametrize("machine", ["", "0000000", "0000000G", "ABCDEF01", 12345678, None])
def test_a_bad_machine_id_is_refused(machine):
    document = NvmlEmulator(["A100-40GB"]).to_dict()
    document["machine"] = machine
    with pytest.raises(ValueError, match="machine must be eight lowercase hex digits"):
        NvmlEmulator.from_dict(document)


def test_invalid_starting_layout_is_refused():
    with pytest.raises(migrator.errors.InvalidLayout):
        NvmlEmulator(["A100-40GB"], layouts=["3g.20gb@0,4g.20gb@0"])
    with pytest.raises(ValueError, match="MIG disabled"):
        NvmlEmulator(["A100-40GB"], layouts=["3g.20gb@0"], mig_enabled=False)


def test_random_walk_keeps_ids_unique_and_layout_valid():
    rng = random.Random(7)
    emulator = NvmlEmulator(["H100-80GB"])
    emulator.nvmlInit()
    geometry = migrator.Geometry.for_gpu("H100-80GB")
    device = emulator.nvmlDeviceGetHandleByIndex(0)
    for _ in range(200):
        layout = emulator.layout(0)
        addable = geometry.addable(layout)
        if addable and (not layout or rng.random() < 0.6):
            p = rng.choice(addable)
            create(emulator, 0, p.profile, p.start)
        else:
            victim = rng.choice(layout.split(","))
            gi = emulator.nvmlDeviceGetGpuInstanceById(device, emulator.gi_id(0, victim))
            emulator.nvmlComputeInstanceDestroy(emulator.nvmlGpuInstanceGetComputeInstanceById(gi, 0))
            emulator.nvmlGpuInstanceDestroy(gi)
            continue
        gi = emulator.nvmlDeviceGetGpuInstanceById(device, emulator.gi_id(0, str(p)))
        ci_profile = [1, 2, 3, 4, 7].index(geometry.profile(p.profile).compute_slices)  # nvml.h's order
        emulator.nvmlGpuInstanceCreateComputeInstance(gi, ci_profile)
        ids = [emulator.gi_id(0, q) for q in emulator.layout(0).split(",")]
        assert len(set(ids)) == len(ids)
        assert geometry.is_valid(emulator.layout(0))
