"""An in-process NVML: the subset of nvidia-ml-py's call surface that migrator uses, with the
MIG state of each GPU kept in memory.

:class:`NvmlEmulator` stands where the ``pynvml`` module stands: same function names and
parameters, the same ctypes shapes (opaque handle pointers that callers store in their own
``c_nvmlGpuInstance_t`` arrays, placements passed by reference, counts by reference), and
``NVMLError`` subclasses carrying the real ``NVML_ERROR_*`` values. So
:class:`migrator.actuation.nvml.NvmlBackend` runs its real code against it, and tests exercise what
runs on hardware. Each GPU is built from one of migrator's geometry tables; what NVML would
accept is decided by that geometry.

What it answers like NVML (nvml.h's documented return codes):

* GPU-instance and compute-instance calls on a GPU with MIG off: ``NOT_SUPPORTED``;
* without privileges (``privileged=False``), every call nvml.h marks "Requires privileged
  user" answers ``NO_PERMISSION``: creating and destroying, but also listing GPU and compute
  instances (``nvmlDeviceGetGpuInstances``, ``...ById``, ``nvmlGpuInstanceGetComputeInstances``,
  ``...ById``) and ``nvmlDeviceGetGpuInstancePossiblePlacements``; and the process list of a
  MIG-enabled parent device, which nvml.h gives "only if the caller has appropriate
  privileges" (nvml.h of NVIDIA/go-nvml 2f9e261, gen/nvml/nvml.h). Profile information
  (``nvmlDeviceGetGpuInstanceProfileInfo``), the MIG mode and the device queries stay open;
* ``nvmlDeviceGetGpuInstanceProfileInfo`` takes nvidia-ml-py's ``NVML_GPU_INSTANCE_PROFILE_*``
  constants (``..._7_SLICE`` is 4, ``..._1_SLICE_REV1`` the ``+me`` profile, 7, ...) and reports
  the profile's NVML ``id`` (19 for ``1g.10gb`` on H100), as the recorded H100 and H200 dumps in
  ``tests/data`` show; a constant the GPU lacks is ``NOT_SUPPORTED``, one the recorded driver
  (580.159.04) does not know (17 and above) ``INVALID_ARGUMENT``. Compute-instance profiles
  likewise take ``NVML_COMPUTE_INSTANCE_PROFILE_*`` (count 9, as nvidia-ml-py defines it);
* a MIG mode change (``nvmlDeviceSetMigMode``) stays pending until the GPU is reset:
  ``nvmlDeviceGetMigMode`` returns ``[current, pending]`` and the call's activation status is
  ``NVML_ERROR_RESET_REQUIRED``; :meth:`NvmlEmulator.reset_gpu` is the reset (``nvidia-smi -r``),
  which applies the pending mode and, like a real reset, loses every instance. An emulator
  built with ``mig_enabled=True`` (the default) starts with MIG on, as a GPU that an
  administrator switched and reset before migrator ran;
* an unknown profile id, a placement the profile does not allow, a stale handle:
  ``INVALID_ARGUMENT``;
* a placement that does not fit beside the instances already there: ``INSUFFICIENT_RESOURCES``;
* destroying a GPU instance that still has compute instances, or a compute instance with
  running processes: ``IN_USE``;
* looking up an id that does not exist: ``NOT_FOUND``; any call before ``nvmlInit``:
  ``UNINITIALIZED``.

GPU-instance ids follow what NVML shows on A100/H100 (``nvidia-smi mig -lgi`` output in
NVIDIA/DCGM#138 and rapidsai/dask-cuda#583): each memory size has its own id range, like the
nodes of a binary tree over the memory slices (the whole GPU 0, halves 1-2, quarters 3-6,
eighths 7-14), and a new instance takes the lowest free id of its range. Compute-instance
ids start at 0 in each GPU instance. migrator never derives an id from a placement: it reads
ids back, and only relies on kept instances keeping theirs.

Fault injection, for testing what survives a failure: :meth:`NvmlEmulator.fail` makes the
n-th matching call raise an NVML error without effect; :meth:`NvmlEmulator.crash` lets the
n-th matching call take effect and then raises :class:`EmulatedCrash` (a ``BaseException``,
like the process dying: no ``except Exception`` handler runs). :meth:`set_processes` puts
processes in an instance, to test busy instances.
"""

from __future__ import annotations

import ctypes
import functools
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence, TypeVar

from .._files import write_atomically
from ..errors import ConfigError
from ..geometry.geometry import Geometry, Profile
from ..geometry.layout import Layout, LayoutLike, Placement

__all__ = ["EmulatedCrash", "MUTATING_CALLS", "NVMLError", "NvmlEmulator", "PersistedEmulator"]

# -- nvml.h values; texts as nvidia-ml-py's NVMLError.__str__ / nvmlErrorString give them ----------

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_IN_USE = 19
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_UNKNOWN = 999
_TEXTS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_IN_USE: "In use by another client",
    NVML_ERROR_INSUFFICIENT_RESOURCES: "Insufficient resources",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}
_ERROR_CODES = {name: value for name, value in globals().items() if name.startswith("NVML_ERROR_")}

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED = 0

# nvml.h / nvidia-ml-py 13.615.71: the GPU-instance profile constants that
# nvmlDeviceGetGpuInstanceProfileInfo takes (not the profile ids it reports).
NVML_GPU_INSTANCE_PROFILE_1_SLICE = 0
NVML_GPU_INSTANCE_PROFILE_2_SLICE = 1
NVML_GPU_INSTANCE_PROFILE_3_SLICE = 2
NVML_GPU_INSTANCE_PROFILE_4_SLICE = 3
NVML_GPU_INSTANCE_PROFILE_7_SLICE = 4
NVML_GPU_INSTANCE_PROFILE_8_SLICE = 5
NVML_GPU_INSTANCE_PROFILE_6_SLICE = 6
NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV1 = 7  # the media-extension "+me" profile
NVML_GPU_INSTANCE_PROFILE_2_SLICE_REV1 = 8
NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2 = 9  # one compute slice, twice the memory (1g.20gb on H100)
NVML_GPU_INSTANCE_PROFILE_1_SLICE_GFX = 10
NVML_GPU_INSTANCE_PROFILE_2_SLICE_GFX = 11
NVML_GPU_INSTANCE_PROFILE_4_SLICE_GFX = 12
NVML_GPU_INSTANCE_PROFILE_1_SLICE_NO_ME = 13
NVML_GPU_INSTANCE_PROFILE_2_SLICE_NO_ME = 14
NVML_GPU_INSTANCE_PROFILE_1_SLICE_ALL_ME = 15
NVML_GPU_INSTANCE_PROFILE_2_SLICE_ALL_ME = 16
NVML_GPU_INSTANCE_PROFILE_3_SLICE_GFX = 17
NVML_GPU_INSTANCE_PROFILE_COUNT = 18
# The recorded driver (580.159.04, tests/data/nvml_*.json) answers NOT_SUPPORTED for the
# constants below this that a GPU lacks and INVALID_ARGUMENT from here on (it predates 3_SLICE_GFX).
_DRIVER_GPU_INSTANCE_PROFILES = 17
# (compute slices, name variant) -> constant. A variant is the profile name's suffix
# ("+me", "-me", "+me.all", "+gfx"); "rev2" is a plain one-slice profile with more memory
# than the GPU's smallest (1g.20gb beside 1g.10gb).
_GPU_INSTANCE_PROFILE_CONSTANTS = {
    (1, ""): 0, (2, ""): 1, (3, ""): 2, (4, ""): 3, (7, ""): 4, (8, ""): 5, (6, ""): 6,
    (1, "+me"): 7, (2, "+me"): 8, (1, "rev2"): 9,
    (1, "+gfx"): 10, (2, "+gfx"): 11, (4, "+gfx"): 12, (3, "+gfx"): 17,
    (1, "-me"): 13, (2, "-me"): 14, (1, "+me.all"): 15, (2, "+me.all"): 16,
}

# nvml.h: NVML_COMPUTE_INSTANCE_PROFILE_{1,2,3,4,7,8,6}_SLICE are 0..6 (the id NVML reports
# for a compute-instance profile is its index); 7 is 1_SLICE_REV1 and 8 7_SLICE_NVL, which no
# emulated GPU offers (NOT_SUPPORTED).
_CI_SLICES = (1, 2, 3, 4, 7, 8, 6)
NVML_COMPUTE_INSTANCE_PROFILE_COUNT = 9

#: The calls that change MIG state: what fault injection counts by default.
MUTATING_CALLS = frozenset({
    "nvmlDeviceCreateGpuInstanceWithPlacement",
    "nvmlGpuInstanceCreateComputeInstance",
    "nvmlComputeInstanceDestroy",
    "nvmlGpuInstanceDestroy",
    "nvmlDeviceSetMigMode",
})

#: The machine id of state files saved before emulators had one: their GPUs keep their UUIDs.
LEGACY_MACHINE = "00000000"


def _machine_id(machine: Any) -> str:
    if not (isinstance(machine, str) and re.fullmatch(r"[0-9a-f]{8}", machine)):
        raise ValueError(f"machine must be eight lowercase hex digits, got {machine!r}")
    return machine


class NVMLError(Exception):
    """As nvidia-ml-py's: ``NVMLError(value)`` makes the subclass for that value
    (``NVMLError_InUse``, …); ``value`` is the ``NVML_ERROR_*`` code."""

    _value_class: dict[int, type[NVMLError]] = {}

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._value_class.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _TEXTS.get(self.value, f"NVML Error with code {self.value}")


def _error_class(name: str, value: int) -> type[NVMLError]:
    # nvidia-ml-py's naming: NVML_ERROR_IN_USE -> NVMLError_InUse.
    words = name.removeprefix("NVML_ERROR_").split("_")
    cls = type("NVMLError_" + "".join(w.capitalize() for w in words), (NVMLError,), {})
    NVMLError._value_class[value] = cls
    return cls


_ERROR_CLASSES = {cls.__name__: cls for cls in (_error_class(n, v) for n, v in _ERROR_CODES.items())}


class EmulatedCrash(BaseException):
    """The process "died" right after an NVML call took effect (fault injection).

    A BaseException, so that no ``except Exception`` clean-up runs, as none would after a
    real crash; the emulated GPUs keep their state, as real ones do.
    """


# -- ctypes shapes (nvidia-ml-py's names and fields) ----------------------------------------------


class c_nvmlGpuInstancePlacement_t(ctypes.Structure):  # noqa: N801 - nvidia-ml-py's names
    _fields_ = [("start", ctypes.c_uint), ("size", ctypes.c_uint)]


class c_nvmlComputeInstancePlacement_t(ctypes.Structure):  # noqa: N801
    _fields_ = [("start", ctypes.c_uint), ("size", ctypes.c_uint)]


class _DeviceRef(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint)]


class _GpuInstanceRef(ctypes.Structure):
    # `serial` tells a handle of a destroyed instance from one of a new instance with its id.
    _fields_ = [("device", ctypes.c_uint), ("id", ctypes.c_uint), ("serial", ctypes.c_uint)]


class _ComputeInstanceRef(ctypes.Structure):
    _fields_ = [("device", ctypes.c_uint), ("gpuInstanceId", ctypes.c_uint), ("id", ctypes.c_uint),
                ("serial", ctypes.c_uint)]


c_nvmlDevice_t = ctypes.POINTER(_DeviceRef)
c_nvmlGpuInstance_t = ctypes.POINTER(_GpuInstanceRef)
c_nvmlComputeInstance_t = ctypes.POINTER(_ComputeInstanceRef)


class c_nvmlGpuInstanceInfo_t(ctypes.Structure):  # noqa: N801
    _fields_ = [("device", c_nvmlDevice_t), ("id", ctypes.c_uint), ("profileId", ctypes.c_uint),
                ("placement", c_nvmlGpuInstancePlacement_t)]


class c_nvmlComputeInstanceInfo_t(ctypes.Structure):  # noqa: N801
    _fields_ = [("device", c_nvmlDevice_t), ("gpuInstance", c_nvmlGpuInstance_t), ("id", ctypes.c_uint),
                ("profileId", ctypes.c_uint), ("placement", c_nvmlComputeInstancePlacement_t)]


class c_nvmlGpuInstanceProfileInfo_v2_t(ctypes.Structure):  # noqa: N801
    _fields_ = [("version", ctypes.c_uint), ("id", ctypes.c_uint), ("isP2pSupported", ctypes.c_uint),
                ("sliceCount", ctypes.c_uint), ("instanceCount", ctypes.c_uint),
                ("multiprocessorCount", ctypes.c_uint), ("copyEngineCount", ctypes.c_uint),
                ("decoderCount", ctypes.c_uint), ("encoderCount", ctypes.c_uint),
                ("jpegCount", ctypes.c_uint), ("ofaCount", ctypes.c_uint),
                ("memorySizeMB", ctypes.c_ulonglong), ("name", ctypes.c_char * 96)]


class c_nvmlComputeInstanceProfileInfo_v2_t(ctypes.Structure):  # noqa: N801
    _fields_ = [("version", ctypes.c_uint), ("id", ctypes.c_uint), ("sliceCount", ctypes.c_uint),
                ("instanceCount", ctypes.c_uint), ("multiprocessorCount", ctypes.c_uint),
                ("sharedCopyEngineCount", ctypes.c_uint), ("sharedDecoderCount", ctypes.c_uint),
                ("sharedEncoderCount", ctypes.c_uint), ("sharedJpegCount", ctypes.c_uint),
                ("sharedOfaCount", ctypes.c_uint), ("name", ctypes.c_char * 96)]


class c_nvmlMemory_t(ctypes.Structure):  # noqa: N801
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class nvmlPciInfo_t(ctypes.Structure):  # noqa: N801 - nvidia-ml-py's name and fields
    _fields_ = [("busIdLegacy", ctypes.c_char * 16), ("domain", ctypes.c_uint), ("bus", ctypes.c_uint),
                ("device", ctypes.c_uint), ("pciDeviceId", ctypes.c_uint), ("pciSubSystemId", ctypes.c_uint),
                ("busId", ctypes.c_char * 32)]


@dataclass(frozen=True)
class ProcessInfo:
    """The fields of nvidia-ml-py's process objects that MIG code reads."""

    pid: int
    usedGpuMemory: int  # noqa: N815 - NVML's field names
    gpuInstanceId: int  # noqa: N815
    computeInstanceId: int  # noqa: N815


# -- the emulated GPUs --------------------------------------------------------------------------


@dataclass
class _ComputeInstance:
    id: int
    slices: int
    start: int
    serial: int
    pids: list[int] = field(default_factory=list)


@dataclass
class _GpuInstance:
    id: int
    profile: Profile
    start: int
    serial: int
    compute: dict[int, _ComputeInstance] = field(default_factory=dict)

    @property
    def placement(self) -> Placement:
        return Placement(self.profile.name, self.start)


@dataclass
class _Gpu:
    geometry: Geometry
    mig_enabled: bool  # the current MIG mode
    mig_pending: bool  # the mode after the next reset
    instances: dict[int, _GpuInstance] = field(default_factory=dict)
    by_constant: dict[int, Profile] = field(default_factory=dict)  # NVML_GPU_INSTANCE_PROFILE_* -> profile

    def __post_init__(self) -> None:
        self.by_constant = _profile_constants(self.geometry)

    @property
    def name(self) -> str:
        return self.geometry.device_names[0] if self.geometry.device_names else self.geometry.name

    def layout(self) -> Layout:
        return Layout.of(gi.placement for gi in self.instances.values())


@dataclass
class _Fault:
    countdown: int
    calls: frozenset[str]
    error: int | None  # None: crash after the call instead


_F = TypeVar("_F", bound=Callable[..., Any])


def _surface(function: _F) -> _F:
    """An NVML entry point: logged, checked for nvmlInit, subject to fault injection."""
    name = function.__name__

    @functools.wraps(function)
    def call(self: NvmlEmulator, *args: Any, **kwargs: Any) -> Any:
        crash = self._enter(name)
        result = function(self, *args, **kwargs)
        if crash:
            self._crash(name)
        return result

    return call  # type: ignore[return-value]


class NvmlEmulator:
    """In-memory MIG GPUs behind nvidia-ml-py's call surface.

    Parameters
    ----------
    gpus : sequence of Geometry or str
        One entry per GPU: a geometry or the name of a built-in one (``"A100-40GB"``).
    layouts : sequence of layout, optional
        Starting layouts (each GPU instance with one full compute instance); empty by default.
    mig_enabled : bool or sequence of bool
        MIG mode of each GPU, current and pending alike (on by default: a GPU whose MIG mode
        an administrator enabled and reset before). ``nvmlDeviceSetMigMode`` only makes a
        change pending; :meth:`reset_gpu` applies it.
    privileged : bool
        Whether the caller is root: without, the calls nvml.h marks "Requires privileged
        user" (changes, instance listings, placements) answer ``NO_PERMISSION``.
    machine : str, optional
        Eight hex digits naming the emulated machine, the first group of its GPUs' UUIDs
        (``GPU-<machine>-0000-0000-0000-emulated<index>``); a fresh random one by default, so
        that the emulated nodes of a cluster do not share GPU UUIDs (metrics are labelled by
        them). Kept by :meth:`save`.
    """

    NVMLError = NVMLError
    NVML_SUCCESS = NVML_SUCCESS
    NVML_DEVICE_MIG_DISABLE = NVML_DEVICE_MIG_DISABLE
    NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE
    NVML_GPU_INSTANCE_PROFILE_COUNT = NVML_GPU_INSTANCE_PROFILE_COUNT
    NVML_COMPUTE_INSTANCE_PROFILE_COUNT = NVML_COMPUTE_INSTANCE_PROFILE_COUNT
    NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED = NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
    c_nvmlDevice_t = c_nvmlDevice_t  # noqa: N815
    c_nvmlGpuInstance_t = c_nvmlGpuInstance_t  # noqa: N815
    c_nvmlComputeInstance_t = c_nvmlComputeInstance_t  # noqa: N815
    c_nvmlGpuInstancePlacement_t = c_nvmlGpuInstancePlacement_t  # noqa: N815
    c_nvmlComputeInstancePlacement_t = c_nvmlComputeInstancePlacement_t  # noqa: N815

    def __init__(
        self,
        gpus: Sequence[Geometry | str],
        *,
        layouts: Sequence[LayoutLike] | None = None,
        mig_enabled: bool | Sequence[bool] = True,
        privileged: bool = True,
        machine: str | None = None,
    ) -> None:
        geometries = [g if isinstance(g, Geometry) else Geometry.for_gpu(g) for g in gpus]
        for g in geometries:
            missing = [p.name for p in g.profiles if p.id is None]
            if missing:
                raise ValueError(f"{g.name}: profiles without an NVML id cannot be emulated: {missing}")
        modes = [mig_enabled] * len(geometries) if isinstance(mig_enabled, bool) else list(mig_enabled)
        if len(modes) != len(geometries):
            raise ValueError(f"mig_enabled has {len(modes)} entries for {len(geometries)} GPUs")
        self._gpus = [_Gpu(g, bool(m), bool(m)) for g, m in zip(geometries, modes)]
        self.privileged = privileged
        self.machine = secrets.token_hex(4) if machine is None else _machine_id(machine)
        self.calls: list[str] = []
        self._initialized = 0
        self._faults: list[_Fault] = []
        self._serial = 0
        # What handles point at, one structure per object: it must outlive every handle.
        self._refs: dict[tuple[Any, ...], ctypes.Structure] = {}
        for index, layout in enumerate(layouts or ()):
            self.set_layout(index, layout)

    @classmethod
    def from_scenario(cls, scenario: Any, **options: Any) -> NvmlEmulator:
        """One emulated GPU per GPU of a :class:`migrator.Scenario`, at its starting layout."""
        return cls([g.geometry for g in scenario.gpus], layouts=[g.layout for g in scenario.gpus], **options)

    # -- direct state access (not NVML; no faults, no call log) -----------------------------

    def set_layout(self, gpu: int, layout: LayoutLike) -> None:
        """Replace a GPU's instances by ``layout``, each with one full compute instance.

        Raises ``InvalidLayout`` when the GPU would not accept it.
        """
        state = self._gpus[gpu]
        canonical = state.geometry.validate(layout)
        if len(canonical) and not state.mig_enabled:
            raise ValueError(f"GPU {gpu} has MIG disabled; it cannot hold {canonical}")
        state.instances.clear()
        for placement in canonical:
            gi = self._new_gpu_instance(gpu, state.geometry.profile(placement.profile), placement.start)
            self._new_compute_instance(gi, gi.profile.compute_slices)

    def layout(self, gpu: int) -> str:
        """The canonical layout of every GPU instance on the GPU, complete or not."""
        return str(self._gpus[gpu].layout())

    def gi_id(self, gpu: int, placement: Placement | str) -> int:
        """The id of the GPU instance at a placement (KeyError when there is none)."""
        wanted = str(placement)
        for gi in self._gpus[gpu].instances.values():
            if str(gi.placement) == wanted:
                return gi.id
        raise KeyError(f"GPU {gpu} has no GPU instance at {wanted}")

    def set_processes(self, gpu: int, gi_id: int, pids: Iterable[int], ci_id: int | None = None) -> None:
        """Run processes ``pids`` in a GPU instance (its lowest compute instance by default);
        an empty list stops them."""
        gi = self._gpus[gpu].instances[gi_id]
        if not gi.compute:
            raise ValueError(f"GPU {gpu}, GPU instance {gi_id} has no compute instance to run processes in")
        ci = gi.compute[min(gi.compute) if ci_id is None else ci_id]
        ci.pids = [int(p) for p in pids]

    def set_mig_enabled(self, gpu: int, enabled: bool) -> None:
        """Switch MIG mode directly (an administrator with a GPU reset); instances are lost."""
        state = self._gpus[gpu]
        state.mig_enabled = state.mig_pending = bool(enabled)
        state.instances.clear()

    def reset_gpu(self, gpu: int) -> None:
        """A GPU reset (``nvidia-smi -r -i GPU``): the pending MIG mode becomes the current one
        and, as on hardware, every GPU and compute instance is gone. Refused (``IN_USE``, as
        ``nvidia-smi -r`` refuses) while processes run on the GPU."""
        state = self._gpus[gpu]
        if any(ci.pids for gi in state.instances.values() for ci in gi.compute.values()):
            raise NVMLError(NVML_ERROR_IN_USE)
        state.mig_enabled = state.mig_pending
        state.instances.clear()

    # -- fault injection --------------------------------------------------------------------

    def fail(self, at: int, error: int = NVML_ERROR_UNKNOWN, calls: Collection[str] = MUTATING_CALLS) -> None:
        """Make the ``at``-th call from now (1-based) among ``calls`` raise ``NVMLError(error)``
        without taking effect."""
        self._arm(at, calls, error)

    def crash(self, after: int, calls: Collection[str] = MUTATING_CALLS) -> None:
        """Let the ``after``-th call from now among ``calls`` take effect, then raise
        :class:`EmulatedCrash`; NVML is left uninitialised, as for a new process."""
        self._arm(after, calls, None)

    def clear_faults(self) -> None:
        self._faults.clear()

    def _arm(self, n: int, calls: Collection[str], error: int | None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"fault position must be an integer >= 1, got {n!r}")
        unknown = sorted(set(calls) - set(dir(self)))
        if unknown:
            raise ValueError(f"fault calls must be NVML functions of the emulator; unknown: {unknown}")
        self._faults.append(_Fault(n, frozenset(calls), error))

    def _enter(self, name: str) -> bool:
        """Log the call, fire a due fault; True when the process must crash after it."""
        self.calls.append(name)
        if name != "nvmlInit" and not self._initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        crash = False
        for fault in [f for f in self._faults if name in f.calls]:
            fault.countdown -= 1
            if fault.countdown:
                continue
            self._faults.remove(fault)
            if fault.error is not None:
                raise NVMLError(fault.error)
            crash = True
        return crash

    def _crash(self, name: str) -> None:
        self._initialized = 0
        raise EmulatedCrash(f"emulated crash after {name}")

    # -- persistence (for the command line: one emulated machine across commands) -----------

    def to_dict(self) -> dict[str, Any]:
        return {
            "privileged": self.privileged,
            "machine": self.machine,
            "gpus": [
                {
                    "model": g.geometry.name,
                    "mig_enabled": g.mig_enabled,
                    "mig_pending": g.mig_pending,
                    "instances": [
                        {
                            "id": gi.id, "profile": gi.profile.name, "start": gi.start,
                            "compute": [{"id": c.id, "slices": c.slices, "start": c.start, "pids": c.pids}
                                        for c in gi.compute.values()],
                        }
                        for gi in _gi_sorted(g)
                    ],
                }
                for g in self._gpus
            ],
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> NvmlEmulator:
        """Rebuild from :meth:`to_dict`'s document, ids included."""
        gpus = document["gpus"]
        # Files saved before machine ids existed keep the UUIDs their GPUs had then.
        emulator = cls([g["model"] for g in gpus], mig_enabled=[g["mig_enabled"] for g in gpus],
                       privileged=document.get("privileged", True),
                       machine=_machine_id(document.get("machine", LEGACY_MACHINE)))
        for index, (state, saved) in enumerate(zip(emulator._gpus, gpus)):
            state.mig_pending = bool(saved.get("mig_pending", saved["mig_enabled"]))  # older files lack it
            for row in saved["instances"]:
                gi = emulator._new_gpu_instance(index, state.geometry.profile(row["profile"]), row["start"], row["id"])
                for c in row["compute"]:
                    ci = emulator._new_compute_instance(gi, c["slices"], c["id"], c["start"])
                    ci.pids = list(c["pids"])
        return emulator

    def save(self, path: str | Path) -> None:
        """Write the state to ``path`` atomically (:func:`migrator._files.write_atomically`)."""
        write_atomically(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> NvmlEmulator:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    # -- internals --------------------------------------------------------------------------

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _new_gpu_instance(self, gpu: int, profile: Profile, start: int, gi_id: int | None = None) -> _GpuInstance:
        state = self._gpus[gpu]
        gi = _GpuInstance(gi_id if gi_id is not None else _free_gi_id(state, profile), profile, start,
                          self._next_serial())
        state.instances[gi.id] = gi
        return gi

    def _new_compute_instance(self, gi: _GpuInstance, slices: int, ci_id: int | None = None,
                              start: int | None = None) -> _ComputeInstance:
        if start is None:
            start = _free_ci_start(gi, slices)
            if start is None:  # the callers check first; a full GPU instance is NVML's error
                raise NVMLError(NVML_ERROR_INSUFFICIENT_RESOURCES)
        ci_id = ci_id if ci_id is not None else next(i for i in range(len(gi.compute) + 1) if i not in gi.compute)
        ci = _ComputeInstance(ci_id, slices, start, self._next_serial())
        gi.compute[ci.id] = ci
        return ci

    def _keep(self, kind: type[ctypes.Structure], *fields: int) -> Any:
        key = (kind, *fields)
        if key not in self._refs:
            self._refs[key] = kind(*fields)
        return ctypes.pointer(self._refs[key])

    def _gpu(self, device: Any) -> tuple[int, _Gpu]:
        if not isinstance(device, c_nvmlDevice_t) or not device:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        index = device.contents.index
        if not 0 <= index < len(self._gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return index, self._gpus[index]

    def _mig_gpu(self, device: Any) -> tuple[int, _Gpu]:
        index, state = self._gpu(device)
        if not state.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return index, state

    def _require_privilege(self) -> None:
        if not self.privileged:
            raise NVMLError(NVML_ERROR_NO_PERMISSION)

    def _gi(self, handle: Any) -> tuple[int, _GpuInstance]:
        if not isinstance(handle, c_nvmlGpuInstance_t) or not handle:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        ref = handle.contents
        state = self._gpus[ref.device] if ref.device < len(self._gpus) else None
        gi = state.instances.get(ref.id) if state is not None else None
        if state is None or gi is None or gi.serial != ref.serial:  # destroyed since the handle was made
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if not state.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return ref.device, gi

    def _ci(self, handle: Any) -> tuple[int, _GpuInstance, _ComputeInstance]:
        if not isinstance(handle, c_nvmlComputeInstance_t) or not handle:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        ref = handle.contents
        gi = self._gpus[ref.device].instances.get(ref.gpuInstanceId) if ref.device < len(self._gpus) else None
        ci = gi.compute.get(ref.id) if gi is not None else None
        if gi is None or ci is None or ci.serial != ref.serial:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return ref.device, gi, ci

    def _gi_handle(self, gpu: int, gi: _GpuInstance) -> Any:
        return self._keep(_GpuInstanceRef, gpu, gi.id, gi.serial)

    def _ci_handle(self, gpu: int, gi: _GpuInstance, ci: _ComputeInstance) -> Any:
        return self._keep(_ComputeInstanceRef, gpu, gi.id, ci.id, ci.serial)

    def _profile_by_id(self, state: _Gpu, profile_id: int) -> Profile:
        for profile in state.geometry.profiles:
            if profile.id == profile_id:
                return profile
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    # -- the call surface: library --------------------------------------------------------------

    @_surface
    def nvmlInit(self) -> None:  # noqa: N802 - NVML's names
        self._initialized += 1

    @_surface
    def nvmlShutdown(self) -> None:  # noqa: N802
        self._initialized -= 1

    # -- devices ----------------------------------------------------------------------------

    @_surface
    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self._gpus)

    @_surface
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:  # noqa: N802
        if not 0 <= index < len(self._gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self._keep(_DeviceRef, index)

    @_surface
    def nvmlDeviceGetName(self, handle: Any) -> str:  # noqa: N802
        return self._gpu(handle)[1].name

    @_surface
    def nvmlDeviceGetUUID(self, handle: Any) -> str:  # noqa: N802
        index, _ = self._gpu(handle)
        return f"GPU-{self.machine}-0000-0000-0000-emulated{index:04d}"

    @_surface
    def nvmlDeviceGetPciInfo(self, handle: Any) -> nvmlPciInfo_t:  # noqa: N802
        """The device's PCI identity: ``pciDeviceId`` is the first id of its geometry's table
        in ``data/gpus/pci-device-ids.txt`` (0 for a geometry without one); the emulated GPU
        ``i`` sits on bus ``i + 1``."""
        from .migparted import device_ids_for

        index, state = self._gpu(handle)
        device_id = next(iter(device_ids_for(state.geometry.name)), 0)
        bus_id = f"00000000:{index + 1:02X}:00.0".encode()
        return nvmlPciInfo_t(busIdLegacy=bus_id, domain=0, bus=index + 1, device=0, pciDeviceId=device_id,
                             pciSubSystemId=0, busId=bus_id)

    @_surface
    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> c_nvmlMemory_t:  # noqa: N802
        geometry = self._gpu(handle)[1].geometry
        total = (geometry.memory_mib or max(p.memory_mib for p in geometry.profiles)) * 2**20
        return c_nvmlMemory_t(total, total, 0)

    @_surface
    def nvmlDeviceGetMigMode(self, device: Any) -> list[int]:  # noqa: N802
        _, state = self._gpu(device)
        return [int(state.mig_enabled), int(state.mig_pending)]

    @_surface
    def nvmlDeviceSetMigMode(self, device: Any, mode: int) -> int:  # noqa: N802
        """Make ``mode`` pending; returns the activation status, as nvidia-ml-py does:
        ``NVML_ERROR_RESET_REQUIRED`` while the pending mode differs from the current one
        (the emulated GPU is never reset by this call), ``NVML_SUCCESS`` otherwise."""
        _, state = self._gpu(device)
        self._require_privilege()
        if mode not in (NVML_DEVICE_MIG_DISABLE, NVML_DEVICE_MIG_ENABLE):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if state.instances:
            raise NVMLError(NVML_ERROR_IN_USE)
        state.mig_pending = mode == NVML_DEVICE_MIG_ENABLE
        return NVML_SUCCESS if state.mig_pending == state.mig_enabled else NVML_ERROR_RESET_REQUIRED

    @_surface
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[ProcessInfo]:  # noqa: N802
        _, state = self._gpu(handle)
        if state.mig_enabled:  # nvml.h: aggregate over instances only for a privileged caller
            self._require_privilege()
        return [
            ProcessInfo(pid, 0, gi.id, ci.id)
            for gi in _gi_sorted(state) for ci in gi.compute.values() for pid in ci.pids
        ]

    # -- GPU-instance profiles --------------------------------------------------------------

    @_surface
    def nvmlDeviceGetGpuInstanceProfileInfo(  # noqa: N802
        self, device: Any, profile: int, version: int = 2
    ) -> c_nvmlGpuInstanceProfileInfo_v2_t:
        _, state = self._gpu(device)
        p = state.by_constant.get(profile)
        if p is None:
            known = 0 <= profile < _DRIVER_GPU_INSTANCE_PROFILES
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED if known else NVML_ERROR_INVALID_ARGUMENT)
        e = p.engines
        return c_nvmlGpuInstanceProfileInfo_v2_t(
            0x02000098, p.id, 0, p.compute_slices, p.max_count, 0, 0, e.decoders, e.encoders, e.jpegs, e.ofas,
            p.memory_mib, f"MIG {p.name}".encode(),
        )

    nvmlDeviceGetGpuInstanceProfileInfoV = nvmlDeviceGetGpuInstanceProfileInfo  # noqa: N815

    @_surface
    def nvmlDeviceGetGpuInstancePossiblePlacements(  # noqa: N802
        self, device: Any, profileId: Any, placementsRef: Any, countRef: Any  # noqa: N803
    ) -> int:
        _, state = self._gpu(device)
        self._require_privilege()
        placements = self._profile_by_id(state, profileId).placements
        count = _deref(countRef)
        capacity = count.value
        count.value = len(placements)
        if placementsRef is None:  # NVML's "how many?" form
            return NVML_SUCCESS
        if capacity < len(placements):
            raise NVMLError(NVML_ERROR_INSUFFICIENT_SIZE)
        for i, (start, size) in enumerate(placements):
            placementsRef[i].start = start
            placementsRef[i].size = size
        return NVML_SUCCESS

    # -- GPU instances ----------------------------------------------------------------------

    @_surface
    def nvmlDeviceCreateGpuInstanceWithPlacement(  # noqa: N802
        self, device: Any, profileId: int, placement: Any  # noqa: N803
    ) -> Any:
        index, state = self._gpu(device)
        self._require_privilege()
        if not state.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        profile = self._profile_by_id(state, profileId)
        # nvidia-ml-py hands `placement` to the C function as is: it must be a pointer
        # (ctypes.byref or ctypes.pointer), never a structure by value.
        wanted = _deref(placement, c_nvmlGpuInstancePlacement_t)
        if (wanted.start, wanted.size) not in profile.placements:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        new = Placement(profile.name, wanted.start)
        if not state.geometry.is_valid(Layout.of((*state.layout(), new))):
            raise NVMLError(NVML_ERROR_INSUFFICIENT_RESOURCES)
        return self._gi_handle(index, self._new_gpu_instance(index, profile, wanted.start))

    @_surface
    def nvmlDeviceGetGpuInstances(  # noqa: N802
        self, device: Any, profileId: int, gpuInstancesRef: Any, countRef: Any  # noqa: N803
    ) -> int:
        index, state = self._gpu(device)
        self._require_privilege()
        self._mig_gpu(device)
        self._profile_by_id(state, profileId)
        found = [gi for gi in _gi_sorted(state) if gi.profile.id == profileId]
        if len(gpuInstancesRef) < len(found):
            raise NVMLError(NVML_ERROR_INSUFFICIENT_SIZE)
        for i, gi in enumerate(found):
            gpuInstancesRef[i] = self._gi_handle(index, gi)
        _deref(countRef).value = len(found)
        return NVML_SUCCESS

    @_surface
    def nvmlDeviceGetGpuInstanceById(self, device: Any, gpuInstanceId: int) -> Any:  # noqa: N802, N803
        index, state = self._gpu(device)
        self._require_privilege()
        self._mig_gpu(device)
        gi = state.instances.get(gpuInstanceId)
        if gi is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return self._gi_handle(index, gi)

    @_surface
    def nvmlGpuInstanceGetInfo(self, gpuInstance: Any) -> c_nvmlGpuInstanceInfo_t:  # noqa: N802, N803
        index, gi = self._gi(gpuInstance)
        return c_nvmlGpuInstanceInfo_t(
            self._keep(_DeviceRef, index), gi.id, gi.profile.id,
            c_nvmlGpuInstancePlacement_t(gi.start, gi.profile.memory_slices),
        )

    @_surface
    def nvmlGpuInstanceDestroy(self, gpuInstance: Any) -> int:  # noqa: N802, N803
        index, gi = self._gi(gpuInstance)
        self._require_privilege()
        if gi.compute:
            raise NVMLError(NVML_ERROR_IN_USE)
        del self._gpus[index].instances[gi.id]
        return NVML_SUCCESS

    # -- compute instances ------------------------------------------------------------------

    @_surface
    def nvmlGpuInstanceGetComputeInstanceProfileInfo(  # noqa: N802
        self, device: Any, profile: int, engProfile: int, version: int = 2  # noqa: N803
    ) -> c_nvmlComputeInstanceProfileInfo_v2_t:
        _, gi = self._gi(device)  # nvidia-ml-py calls the GPU-instance handle `device` here
        if engProfile != NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED or not 0 <= profile < NVML_COMPUTE_INSTANCE_PROFILE_COUNT:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if profile >= len(_CI_SLICES) or _CI_SLICES[profile] not in _ci_sizes(gi.profile.compute_slices):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        slices = _CI_SLICES[profile]
        whole = slices == gi.profile.compute_slices
        name = gi.profile.name if whole else f"{slices}c.{gi.profile.name}"
        return c_nvmlComputeInstanceProfileInfo_v2_t(
            0x02000088, profile, slices, gi.profile.compute_slices // slices, 0, 0, 0, 0, 0, 0,
            f"MIG {name}".encode(),
        )

    nvmlGpuInstanceGetComputeInstanceProfileInfoV = nvmlGpuInstanceGetComputeInstanceProfileInfo  # noqa: N815

    @_surface
    def nvmlGpuInstanceCreateComputeInstance(self, gpuInstance: Any, profileId: int) -> Any:  # noqa: N802, N803
        index, gi = self._gi(gpuInstance)
        self._require_privilege()
        if not 0 <= profileId < NVML_COMPUTE_INSTANCE_PROFILE_COUNT:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if profileId >= len(_CI_SLICES) or _CI_SLICES[profileId] not in _ci_sizes(gi.profile.compute_slices):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        slices = _CI_SLICES[profileId]
        if _free_ci_start(gi, slices) is None:
            raise NVMLError(NVML_ERROR_INSUFFICIENT_RESOURCES)
        return self._ci_handle(index, gi, self._new_compute_instance(gi, slices))

    @_surface
    def nvmlGpuInstanceGetComputeInstances(  # noqa: N802
        self, gpuInstance: Any, profileId: int, computeInstancesRef: Any, countRef: Any  # noqa: N803
    ) -> int:
        index, gi = self._gi(gpuInstance)
        self._require_privilege()
        if not 0 <= profileId < NVML_COMPUTE_INSTANCE_PROFILE_COUNT:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if profileId >= len(_CI_SLICES):
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        found = [ci for ci in sorted(gi.compute.values(), key=lambda c: c.id) if ci.slices == _CI_SLICES[profileId]]
        if len(computeInstancesRef) < len(found):
            raise NVMLError(NVML_ERROR_INSUFFICIENT_SIZE)
        for i, ci in enumerate(found):
            computeInstancesRef[i] = self._ci_handle(index, gi, ci)
        _deref(countRef).value = len(found)
        return NVML_SUCCESS

    @_surface
    def nvmlGpuInstanceGetComputeInstanceById(  # noqa: N802
        self, gpuInstance: Any, computeInstanceId: int  # noqa: N803
    ) -> Any:
        index, gi = self._gi(gpuInstance)
        self._require_privilege()
        ci = gi.compute.get(computeInstanceId)
        if ci is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return self._ci_handle(index, gi, ci)

    @_surface
    def nvmlComputeInstanceGetInfo(self, computeInstance: Any) -> c_nvmlComputeInstanceInfo_t:  # noqa: N802, N803
        index, gi, ci = self._ci(computeInstance)
        return c_nvmlComputeInstanceInfo_t(
            self._keep(_DeviceRef, index), self._gi_handle(index, gi), ci.id, _CI_SLICES.index(ci.slices),
            c_nvmlComputeInstancePlacement_t(ci.start, ci.slices),
        )

    @_surface
    def nvmlComputeInstanceDestroy(self, computeInstance: Any) -> int:  # noqa: N802, N803
        _, gi, ci = self._ci(computeInstance)
        self._require_privilege()
        if ci.pids:
            raise NVMLError(NVML_ERROR_IN_USE)
        del gi.compute[ci.id]
        return NVML_SUCCESS


def _profile_constants(geometry: Geometry) -> dict[int, Profile]:
    """``NVML_GPU_INSTANCE_PROFILE_*`` -> profile of this geometry, from each profile's compute
    slices and name variant (see ``_GPU_INSTANCE_PROFILE_CONSTANTS``)."""
    variants = {}
    for p in geometry.profiles:
        match = re.fullmatch(r"\d+g\.\d+gb(.*)", p.name)
        variants[p.name] = match.group(1) if match else None
    plain_one = [p.memory_slices for p in geometry.profiles if p.compute_slices == 1 and variants[p.name] == ""]
    out: dict[int, Profile] = {}
    for p in geometry.profiles:
        variant = variants[p.name]
        if variant == "" and p.compute_slices == 1 and p.memory_slices > min(plain_one):
            variant = "rev2"
        constant = _GPU_INSTANCE_PROFILE_CONSTANTS.get((p.compute_slices, variant or ""))
        if variant is None or constant is None or constant in out:
            raise ValueError(f"{geometry.name}: profile {p.name} matches no NVML_GPU_INSTANCE_PROFILE_* constant "
                             "of its own; it cannot be emulated")
        out[constant] = p
    return out


def _gi_sorted(state: _Gpu) -> list[_GpuInstance]:
    return sorted(state.instances.values(), key=lambda gi: gi.placement.sort_key())


def _ci_sizes(gi_slices: int) -> set[int]:
    """Compute-instance sizes a GPU instance offers: the whole, and 1-4 slices within it."""
    return {gi_slices} | {s for s in (1, 2, 3, 4) if s < gi_slices}


def _free_ci_start(gi: _GpuInstance, slices: int) -> int | None:
    used = {s for ci in gi.compute.values() for s in range(ci.start, ci.start + ci.slices)}
    for start in range(0, gi.profile.compute_slices - slices + 1, slices):
        if not used & set(range(start, start + slices)):
            return start
    return None


def _free_gi_id(state: _Gpu, profile: Profile) -> int:
    """The lowest free id of the profile's memory-size range (see the module docstring)."""
    taken = set(state.instances)
    ratio, rest = divmod(state.geometry.memory_slices, profile.memory_slices)
    if rest == 0 and ratio & (ratio - 1) == 0:
        candidates: Iterable[int] = range(ratio - 1, 2 * ratio - 1)
    else:  # a geometry that is no binary tree: any unique id
        candidates = range(len(taken) + 1)
    return next(i for i in candidates if i not in taken)


def _deref(reference: Any, kind: type | None = None) -> Any:
    """The object behind ``ctypes.byref(x)`` or ``ctypes.pointer(x)``; INVALID_ARGUMENT for
    anything else (a structure passed by value would be garbage to the C library)."""
    target = getattr(reference, "_obj", None)  # byref()
    if target is None and isinstance(reference, ctypes._Pointer):
        target = reference.contents
    if target is None or (kind is not None and not isinstance(target, kind)):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return target


# nvidia-ml-py's module-level names, on the emulator too: NVML_ERROR_IN_USE, NVMLError_InUse, ...
_PROFILE_CONSTANTS = {n: v for n, v in globals().items() if n.startswith("NVML_GPU_INSTANCE_PROFILE_")}
for _name, _value in {**_ERROR_CODES, **_ERROR_CLASSES, **_PROFILE_CONSTANTS}.items():
    setattr(NvmlEmulator, _name, _value)


class PersistedEmulator:
    """An :class:`NvmlEmulator` whose MIG state survives its process.

    Every NVML call that changes MIG state rewrites ``path`` (atomically) after it ran,
    including a call interrupted by an emulated crash, as a real GPU keeps what was done
    to it. Everything else is the emulator's own call surface.
    """

    def __init__(self, path: str | Path, gpus: Sequence[Any] = (), layouts: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self._mutating = MUTATING_CALLS
        if self.path.exists():
            self.emulator = NvmlEmulator.load(self.path)
        elif gpus:
            self.emulator = NvmlEmulator(list(gpus), layouts=list(layouts) or None)
            self.save()
        else:
            raise ConfigError(f"emulator state {self.path} does not exist and no GPUs were given to create it",
                              field="emulator_state")

    def save(self) -> None:
        """Write the state to ``path`` atomically: never half a file."""
        self.emulator.save(self.path)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.emulator, name)
        if name not in self._mutating:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            finally:
                self.save()

        return call
