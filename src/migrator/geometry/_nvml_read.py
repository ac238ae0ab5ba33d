"""Read a GPU's MIG geometry from NVML into the built-in table schema (queries only).

Kept apart from ``geometry.py`` so that the NVML call surface we depend on is in one
short place; ``nvml.py`` (the actuator backend) will share it.
"""

from __future__ import annotations

import ctypes
from typing import Any

from ..errors import GeometryError, NVMLUnavailable

__all__ = ["default_nvml", "read_nvml_table"]

# Placements are one per start at most and a GPU has at most 64 memory slices.
_MAX_PLACEMENTS = 64


def default_nvml() -> Any:
    """The real nvidia-ml-py module, or a clear error saying how to get it."""
    try:
        import pynvml
    except ImportError as exc:
        raise NVMLUnavailable(
            "nvidia-ml-py is not installed: pip install 'migrator[nvml]'"
        ) from exc
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _skippable(nvml: Any, exc: Exception) -> bool:
    """Profile indices this device (or driver) does not have."""
    codes = {
        getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", None),
        getattr(nvml, "NVML_ERROR_INVALID_ARGUMENT", None),
        getattr(nvml, "NVML_ERROR_NOT_FOUND", None),
    }
    return getattr(exc, "value", None) in codes


def _placements(nvml: Any, handle: Any, profile_id: int) -> list[list[int]]:
    buffer = (nvml.c_nvmlGpuInstancePlacement_t * _MAX_PLACEMENTS)()
    count = ctypes.c_uint(_MAX_PLACEMENTS)
    nvml.nvmlDeviceGetGpuInstancePossiblePlacements(handle, profile_id, buffer, ctypes.byref(count))
    return [[int(buffer[i].start), int(buffer[i].size)] for i in range(count.value)]


def _profile_row(nvml: Any, handle: Any, index: int) -> dict[str, Any] | None:
    try:
        info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, index)
    except nvml.NVMLError as exc:
        if _skippable(nvml, exc):
            return None
        raise NVMLUnavailable(f"nvmlDeviceGetGpuInstanceProfileInfo({index}): {exc}") from exc
    name = _text(info.name).removeprefix("MIG ").strip()
    try:
        placements = _placements(nvml, handle, info.id)
    except nvml.NVMLError as exc:
        raise NVMLUnavailable(
            f"nvmlDeviceGetGpuInstancePossiblePlacements({name}, id {info.id}): {exc}"
        ) from exc
    if not placements:
        return None
    sizes = {size for _, size in placements}
    if len(sizes) != 1:
        raise GeometryError(f"NVML profile {name}: placements of different sizes {sorted(sizes)}")
    return {
        "name": name,
        "id": int(info.id),
        "compute_slices": int(info.sliceCount),
        "memory_slices": sizes.pop(),
        "memory_mib": int(info.memorySizeMB),
        "max_count": int(info.instanceCount),
        "placements": placements,
        "engines": {
            "decoders": int(info.decoderCount),
            "encoders": int(info.encoderCount),
            "jpegs": int(info.jpegCount),
            "ofas": int(info.ofaCount),
        },
    }


def read_nvml_table(handle: Any, nvml: Any = None) -> dict[str, Any]:
    """The geometry table of one device, in the schema of ``data/gpus/*.yaml``.

    The GPU's memory slices are the end of the furthest placement, its compute slices
    those of the largest profile, and its media engines the element-wise maximum over
    profiles (the full-GPU profile holds every engine).
    """
    nvml = nvml if nvml is not None else default_nvml()
    try:
        device_name = _text(nvml.nvmlDeviceGetName(handle))
    except nvml.NVMLError as exc:
        raise NVMLUnavailable(f"cannot read the device: nvmlDeviceGetName: {exc}") from exc
    try:
        memory_mib = int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024)
    except nvml.NVMLError as exc:
        raise NVMLUnavailable(f"cannot read {device_name}: nvmlDeviceGetMemoryInfo: {exc}") from exc
    rows = []
    seen: set[int] = set()
    for index in range(int(nvml.NVML_GPU_INSTANCE_PROFILE_COUNT)):
        row = _profile_row(nvml, handle, index)
        if row is not None and row["id"] not in seen:
            seen.add(row["id"])
            rows.append(row)
    if not rows:
        raise NVMLUnavailable(f"{device_name} reports no MIG GPU-instance profiles (no MIG support)")
    rows.sort(key=lambda r: (r["compute_slices"], r["memory_slices"], r["name"]))
    return {
        "name": device_name,
        "description": f"{device_name}, read from NVML",
        "device_names": [device_name],
        "memory_slices": max(start + size for row in rows for start, size in row["placements"]),
        "compute_slices": max(row["compute_slices"] for row in rows),
        "memory_mib": memory_mib,
        "source": "NVML: nvmlDeviceGetGpuInstanceProfileInfoV, nvmlDeviceGetGpuInstancePossiblePlacements",
        "profiles": rows,
    }
