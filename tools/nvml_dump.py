"""Read-only NVML dump of every GPU's MIG geometry, as JSON.

Only query calls are made: names, memory, MIG mode, GPU-instance profile info and
possible placements. Nothing here enables MIG or creates/destroys instances.
Usage: python tools/nvml_dump.py > nvml.json
"""
from __future__ import annotations

import ctypes
import json
import sys

import pynvml as nv


def _err(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def _placements(handle, profile_id: int, capacity: int) -> list[list[int]]:
    n = max(capacity, 1) * 16
    buf = (nv.c_nvmlGpuInstancePlacement_t * n)()
    count = ctypes.c_uint(n)
    nv.nvmlDeviceGetGpuInstancePossiblePlacements(handle, profile_id, buf, ctypes.byref(count))
    return [[buf[i].start, buf[i].size] for i in range(count.value)]


def _profile(handle, index: int) -> dict:
    info = nv.nvmlDeviceGetGpuInstanceProfileInfo(handle, index)
    name = info.name.decode() if isinstance(info.name, bytes) else str(info.name)
    row = {
        "profile_index": index,
        "id": info.id,
        "name": name,
        "slice_count": info.sliceCount,
        "instance_count": info.instanceCount,
        "multiprocessor_count": info.multiprocessorCount,
        "copy_engine_count": info.copyEngineCount,
        "decoder_count": info.decoderCount,
        "encoder_count": info.encoderCount,
        "jpeg_count": info.jpegCount,
        "ofa_count": info.ofaCount,
        "memory_size_mb": info.memorySizeMB,
        "p2p": info.isP2pSupported,
    }
    try:
        row["placements"] = _placements(handle, info.id, info.instanceCount)
    except nv.NVMLError as exc:
        row["placements_error"] = _err(exc)
    return row


def _device(i: int) -> dict:
    h = nv.nvmlDeviceGetHandleByIndex(i)
    name = nv.nvmlDeviceGetName(h)
    dev: dict = {"index": i, "name": name.decode() if isinstance(name, bytes) else name}
    mem = nv.nvmlDeviceGetMemoryInfo(h)
    dev["memory_total_bytes"] = mem.total
    try:
        dev["mig_mode"] = nv.nvmlDeviceGetMigMode(h)
    except nv.NVMLError as exc:
        dev["mig_mode_error"] = _err(exc)
    profiles, errors = [], {}
    for index in range(nv.NVML_GPU_INSTANCE_PROFILE_COUNT):
        try:
            profiles.append(_profile(h, index))
        except nv.NVMLError as exc:
            errors[index] = _err(exc)
    dev["profiles"] = profiles
    dev["profile_errors"] = errors
    return dev


def main() -> int:
    nv.nvmlInit()
    try:
        out = {
            "driver": nv.nvmlSystemGetDriverVersion(),
            "nvml_py": getattr(nv, "__version__", None),
            "devices": [_device(i) for i in range(nv.nvmlDeviceGetCount())],
        }
    finally:
        nv.nvmlShutdown()
    json.dump(out, sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
