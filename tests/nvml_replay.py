"""A fake of the nvidia-ml-py call surface that replays a recorded NVML dump.

The dumps come from ``tools/nvml_dump.py`` on real GPUs (read-only queries). Only what
``migrator.geometry._nvml_read`` calls is implemented, with nvidia-ml-py's shapes: profile info as
an object with ``id``, ``sliceCount``, ``name`` (bytes, as the ctypes struct gives it) …;
placements written into a caller's ctypes array with the count passed by reference; errors
as ``NVMLError`` carrying the ``NVML_ERROR_*`` value the device raised.

Use ``NvmlReplay.from_json(path)``; ``fail={"nvmlDeviceGetName": NVML_ERROR_NO_PERMISSION}``
makes one call fail, to test how a caller reports it.
"""

from __future__ import annotations

import copy
import ctypes
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

# nvml.h values; texts as nvidia-ml-py's NVMLError.__str__ gives them.
NVML_SUCCESS = 0
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_UNKNOWN = 999

# nvidia-ml-py's exception class name (as the dump records it) -> (value, text).
_ERRORS = {
    "NVMLError_InvalidArgument": (NVML_ERROR_INVALID_ARGUMENT, "Invalid Argument"),
    "NVMLError_NotSupported": (NVML_ERROR_NOT_SUPPORTED, "Not Supported"),
    "NVMLError_NoPermission": (NVML_ERROR_NO_PERMISSION, "Insufficient Permissions"),
    "NVMLError_NotFound": (NVML_ERROR_NOT_FOUND, "Not Found"),
    "NVMLError_InsufficientSize": (NVML_ERROR_INSUFFICIENT_SIZE, "Insufficient Size"),
    "NVMLError_Unknown": (NVML_ERROR_UNKNOWN, "Unknown Error"),
}
_TEXTS = dict(_ERRORS.values())


class NVMLError(Exception):
    """Like nvidia-ml-py's: ``value`` is the NVML_ERROR_* code, ``str`` its text."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _TEXTS.get(self.value, f"NVML error {self.value}")


def error_from_record(text: str) -> NVMLError:
    """``"NVMLError_NotSupported: Not Supported"`` (the dump's form) -> the error."""
    name = text.split(":", 1)[0].strip()
    if name not in _ERRORS:
        raise ValueError(f"the replay does not know NVML error {name!r}; add it to _ERRORS")
    return NVMLError(_ERRORS[name][0])


class c_nvmlGpuInstancePlacement_t(ctypes.Structure):  # noqa: N801 - nvidia-ml-py's name
    _fields_ = [("start", ctypes.c_uint), ("size", ctypes.c_uint)]


@dataclass(frozen=True)
class MemoryInfo:
    total: int
    free: int
    used: int


@dataclass(frozen=True)
class GpuInstanceProfileInfo:
    """The fields of nvidia-ml-py's ``c_nvmlGpuInstanceProfileInfo_v2_t`` that we record."""

    id: int
    sliceCount: int  # noqa: N815 - NVML's field names
    instanceCount: int  # noqa: N815
    multiprocessorCount: int  # noqa: N815
    copyEngineCount: int  # noqa: N815
    decoderCount: int  # noqa: N815
    encoderCount: int  # noqa: N815
    jpegCount: int  # noqa: N815
    ofaCount: int  # noqa: N815
    memorySizeMB: int  # noqa: N815
    isP2pSupported: int  # noqa: N815
    name: bytes | str


@dataclass(frozen=True)
class Handle:
    index: int


def _info(row: Mapping[str, Any], bytes_names: bool) -> GpuInstanceProfileInfo:
    return GpuInstanceProfileInfo(
        id=row["id"],
        sliceCount=row["slice_count"],
        instanceCount=row["instance_count"],
        multiprocessorCount=row["multiprocessor_count"],
        copyEngineCount=row["copy_engine_count"],
        decoderCount=row["decoder_count"],
        encoderCount=row["encoder_count"],
        jpegCount=row["jpeg_count"],
        ofaCount=row["ofa_count"],
        memorySizeMB=row["memory_size_mb"],
        isP2pSupported=row["p2p"],
        name=row["name"].encode() if bytes_names else row["name"],
    )


class NvmlReplay:
    """Answers NVML queries from recorded devices (``devices`` of a dump)."""

    NVMLError = NVMLError
    c_nvmlGpuInstancePlacement_t = c_nvmlGpuInstancePlacement_t  # noqa: N815
    NVML_GPU_INSTANCE_PROFILE_COUNT = 18
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_ERROR_INSUFFICIENT_SIZE = NVML_ERROR_INSUFFICIENT_SIZE
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN

    def __init__(
        self,
        devices: list[dict[str, Any]],
        *,
        fail: Mapping[str, int] | None = None,
        bytes_names: bool = True,
    ) -> None:
        self.devices = copy.deepcopy(devices)
        self.fail = dict(fail or {})
        self.bytes_names = bytes_names
        self.calls: list[str] = []

    @classmethod
    def from_json(cls, path: str | Path, **options: Any) -> NvmlReplay:
        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["devices"], **options)

    def _enter(self, call: str) -> None:
        # Every call is logged and may be made to fail, as a driver or permission would.
        self.calls.append(call)
        if call in self.fail:
            raise NVMLError(self.fail[call])

    def _device(self, handle: Handle) -> dict[str, Any]:
        if not isinstance(handle, Handle) or not 0 <= handle.index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.devices[handle.index]

    # -- the call surface -----------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - NVML's names
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:  # noqa: N802
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return Handle(index)

    def nvmlDeviceGetName(self, handle: Handle) -> str:  # noqa: N802
        self._enter("nvmlDeviceGetName")
        return self._device(handle)["name"]

    def nvmlDeviceGetMemoryInfo(self, handle: Handle) -> MemoryInfo:  # noqa: N802
        self._enter("nvmlDeviceGetMemoryInfo")
        total = self._device(handle)["memory_total_bytes"]
        return MemoryInfo(total=total, free=total, used=0)

    def nvmlDeviceGetMigMode(self, handle: Handle) -> list[int]:  # noqa: N802
        self._enter("nvmlDeviceGetMigMode")
        return list(self._device(handle)["mig_mode"])  # [current, pending], as recorded

    def nvmlDeviceGetGpuInstanceProfileInfo(  # noqa: N802
        self, handle: Handle, profile: int, version: int = 2
    ) -> GpuInstanceProfileInfo:
        self._enter("nvmlDeviceGetGpuInstanceProfileInfo")
        device = self._device(handle)
        for row in device["profiles"]:
            if row["profile_index"] == profile:
                return _info(row, self.bytes_names)
        recorded = device.get("profile_errors", {}).get(str(profile))
        if recorded is not None:
            raise error_from_record(recorded)
        # Indices the dump never saw: what the real device said past its last profile.
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetGpuInstancePossiblePlacements(  # noqa: N802
        self, handle: Handle, profile_id: int, placements: Any, count_ref: Any
    ) -> int:
        self._enter("nvmlDeviceGetGpuInstancePossiblePlacements")
        row = next((r for r in self._device(handle)["profiles"] if r["id"] == profile_id), None)
        if row is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if "placements_error" in row:
            raise error_from_record(row["placements_error"])
        count = count_ref._obj  # what ctypes.byref(c_uint) wraps
        recorded = row["placements"]
        capacity = count.value
        count.value = len(recorded)
        if placements is None:  # NVML's "how many?" form
            return NVML_SUCCESS
        if capacity < len(recorded):
            raise NVMLError(NVML_ERROR_INSUFFICIENT_SIZE)
        for i, (start, size) in enumerate(recorded):
            placements[i].start = start
            placements[i].size = size
        return NVML_SUCCESS
