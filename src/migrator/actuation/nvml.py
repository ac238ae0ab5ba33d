"""The NVML backend: read and change the MIG state of GPUs through nvidia-ml-py.

:class:`NvmlBackend` talks to an object with nvidia-ml-py's call surface (``pynvml``): the real
module on a machine with GPUs, or :class:`migrator.actuation.emulator.NvmlEmulator` in tests and
simulations. Both run this same code, so what the tests exercise is what runs on hardware.

What it uses, by nvidia-ml-py name (checked against nvidia-ml-py 12.560.30 and 13.615.71):

* reading: ``nvmlDeviceGetCount``, ``nvmlDeviceGetHandleByIndex``, ``nvmlDeviceGetName``,
  ``nvmlDeviceGetUUID``, ``nvmlDeviceGetPciInfo`` (``pciDeviceId``), ``nvmlDeviceGetMigMode``, ``nvmlDeviceGetGpuInstances`` (caller's array of
  ``c_nvmlGpuInstance_t`` and a count by reference), ``nvmlGpuInstanceGetInfo`` (``id``,
  ``profileId``, ``placement.start``/``size``), ``nvmlGpuInstanceGetComputeInstanceProfileInfo``,
  ``nvmlGpuInstanceGetComputeInstances``, ``nvmlComputeInstanceGetInfo``,
  ``nvmlDeviceGetComputeRunningProcesses`` (``pid``, ``gpuInstanceId``,
  ``computeInstanceId``), and the geometry through :meth:`migrator.Geometry.from_nvml`;
* changing: ``nvmlDeviceCreateGpuInstanceWithPlacement`` (a ``c_nvmlGpuInstancePlacement_t``
  passed by reference), ``nvmlGpuInstanceCreateComputeInstance``,
  ``nvmlComputeInstanceDestroy``, ``nvmlGpuInstanceDestroy``; instances are addressed by id
  through ``nvmlDeviceGetGpuInstanceById`` / ``nvmlGpuInstanceGetComputeInstanceById``, since
  NVML handles do not outlive the instance.

Nothing here switches MIG mode (that resets the GPU): a GPU with MIG off is reported as such.
Every NVML error becomes :class:`~migrator.errors.NVMLCallError` naming the call and the
``NVML_ERROR_*`` code.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from ..errors import MigModeDisabled, NVMLCallError, NVMLUnavailable
from ..geometry._nvml_read import _text, default_nvml
from ..geometry.geometry import Geometry
from ..geometry.layout import Layout, LayoutLike, Placement

__all__ = [
    "ComputeInstance",
    "GpuInstance",
    "GpuState",
    "NvmlBackend",
    "error_name",
]

log = logging.getLogger(__name__)

# nvml.h's values, for a module that does not carry every NVML_ERROR_* constant.
_ERROR_NAMES = {
    1: "NVML_ERROR_UNINITIALIZED",
    2: "NVML_ERROR_INVALID_ARGUMENT",
    3: "NVML_ERROR_NOT_SUPPORTED",
    4: "NVML_ERROR_NO_PERMISSION",
    6: "NVML_ERROR_NOT_FOUND",
    7: "NVML_ERROR_INSUFFICIENT_SIZE",
    9: "NVML_ERROR_DRIVER_NOT_LOADED",
    12: "NVML_ERROR_LIBRARY_NOT_FOUND",
    13: "NVML_ERROR_FUNCTION_NOT_FOUND",
    15: "NVML_ERROR_GPU_IS_LOST",
    19: "NVML_ERROR_IN_USE",
    23: "NVML_ERROR_INSUFFICIENT_RESOURCES",
    999: "NVML_ERROR_UNKNOWN",
}
# Profile indices a device or driver does not have answer with one of these.
_ABSENT = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_INVALID_ARGUMENT", "NVML_ERROR_NOT_FOUND")
_MIG_ENABLE = 1  # NVML_DEVICE_MIG_ENABLE


def error_name(nvml: Any, code: int) -> str:
    """The ``NVML_ERROR_*`` name of an error value, as the module (or nvml.h) spells it."""
    for name in dir(nvml):
        if name.startswith("NVML_ERROR_") and getattr(nvml, name) == code:
            return name
    return _ERROR_NAMES.get(code, f"NVML error {code}")


# -- what a GPU holds, as values ----------------------------------------------------------------


@dataclass(frozen=True)
class ComputeInstance:
    """A compute instance inside a GPU instance: NVML id, profile id, and its compute
    slices (``start``, ``size``) within the GPU instance."""

    id: int
    profile_id: int
    start: int
    size: int


@dataclass(frozen=True)
class GpuInstance:
    """A GPU instance: NVML id, its placement (profile and first memory slice), the
    memory slices it spans, its compute instances and the processes running in it."""

    id: int
    profile_id: int
    placement: Placement
    size: int
    compute_instances: tuple[ComputeInstance, ...] = ()
    pids: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """Usable: it has a compute instance. A GPU instance without one is what an
        interrupted creation (or deletion) leaves behind."""
        return bool(self.compute_instances)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gi_id": self.id,
            "placement": str(self.placement),
            "profile_id": self.profile_id,
            "memory_slices": self.size,
            "compute_instances": [
                {"ci_id": c.id, "profile_id": c.profile_id, "start": c.start, "size": c.size}
                for c in self.compute_instances
            ],
            "pids": list(self.pids),
        }


@dataclass(frozen=True)
class GpuState:
    """What one GPU holds now: MIG mode and its GPU instances, sorted by placement; ``uuid``
    is NVML's (``GPU-...``; empty where NVML would not say)."""

    index: int
    name: str
    model: str
    mig_enabled: bool
    mig_pending: bool
    instances: tuple[GpuInstance, ...] = field(default=())
    uuid: str = ""

    @property
    def layout(self) -> Layout:
        """Every GPU instance's placement, complete or not."""
        return Layout.of(i.placement for i in self.instances)

    @property
    def incomplete(self) -> tuple[GpuInstance, ...]:
        return tuple(i for i in self.instances if not i.complete)

    def instance(self, placement: Placement) -> GpuInstance | None:
        return next((i for i in self.instances if i.placement == placement), None)

    def ids(self) -> dict[str, int]:
        """Placement text -> GPU instance id."""
        return {str(i.placement): i.id for i in self.instances}

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": f"gpu{self.index}",
            "uuid": self.uuid,
            "device": self.name,
            "model": self.model,
            "mig_enabled": self.mig_enabled,
            "mig_pending": self.mig_pending,
            "layout": str(self.layout),
            "instances": [i.to_dict() for i in self.instances],
        }


# -- the backend --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CiProfile:
    """A compute-instance profile of one GPU-instance profile."""

    index: int
    id: int
    slices: int
    count: int


class NvmlBackend:
    """Reads and changes MIG state through an object with nvidia-ml-py's call surface.

    Parameters
    ----------
    nvml : module, optional
        ``pynvml`` by default (install ``migrator[nvml]``); the project's emulator in tests.

    Use as a context manager (``nvmlInit`` / ``nvmlShutdown``) or call :meth:`open` and
    :meth:`close`. GPUs are addressed by NVML device index.
    """

    def __init__(self, nvml: Any = None) -> None:
        self.nvml = nvml if nvml is not None else default_nvml()
        self._open = False
        self._geometries: dict[int, Geometry] = {}
        self._uuids: dict[int, str] = {}
        self._ci_profiles: dict[tuple[int, int], tuple[_CiProfile, ...]] = {}

    # -- session ----------------------------------------------------------------------------

    def open(self) -> NvmlBackend:
        """``nvmlInit``; raises :class:`~migrator.errors.NVMLUnavailable` without a driver."""
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as exc:
            raise NVMLUnavailable(f"NVML could not start: {exc}") from exc
        self._open = True
        return self

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.nvml.nvmlShutdown()
            except self.nvml.NVMLError as exc:  # shutting down must not hide the real error
                log.debug("nvmlShutdown: %s", exc)

    def __enter__(self) -> NvmlBackend:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, function: str, *args: Any, what: str = "") -> Any:
        """Call one NVML function; an NVML error becomes NVMLCallError naming it."""
        try:
            return getattr(self.nvml, function)(*args)
        except self.nvml.NVMLError as exc:
            code = int(getattr(exc, "value", -1))
            name = error_name(self.nvml, code)
            where = f" ({what})" if what else ""
            raise NVMLCallError(
                f"{function}{where}: {name} ({exc})", call=function, code=code, error=name
            ) from exc

    # -- reading ----------------------------------------------------------------------------

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def handle(self, gpu: int) -> Any:
        return self._call("nvmlDeviceGetHandleByIndex", gpu, what=f"GPU {gpu}")

    def geometry(self, gpu: int) -> Geometry:
        """The device's MIG geometry read from NVML (cached: it does not change)."""
        if gpu not in self._geometries:
            self._geometries[gpu] = Geometry.from_nvml(self.handle(gpu), self.nvml)
        return self._geometries[gpu]

    def uuid(self, gpu: int) -> str:
        """The device's NVML UUID (cached: it does not change); empty where the NVML
        object has no such call or refuses it, since a UUID only labels metrics."""
        if gpu not in self._uuids:
            try:
                self._uuids[gpu] = _text(self._call("nvmlDeviceGetUUID", self.handle(gpu), what=f"GPU {gpu}"))
            except (AttributeError, NVMLCallError) as exc:
                log.debug("GPU %d: no UUID: %s", gpu, exc)
                return ""
        return self._uuids[gpu]

    def pci_device_id(self, gpu: int) -> int:
        """The device's PCI device id (``pciDeviceId``, e.g. 0x20B010DE): what mig-parted's
        ``device-filter`` matches."""
        return int(self._call("nvmlDeviceGetPciInfo", self.handle(gpu), what=f"GPU {gpu}").pciDeviceId)

    def mig_mode(self, gpu: int) -> tuple[bool, bool]:
        """(current, pending) MIG mode: True when enabled."""
        current, pending = self._call("nvmlDeviceGetMigMode", self.handle(gpu), what=f"GPU {gpu}")
        return int(current) == _MIG_ENABLE, int(pending) == _MIG_ENABLE

    def state(self, gpu: int) -> GpuState:
        """The GPU's MIG mode, GPU instances, compute instances and processes."""
        handle = self.handle(gpu)
        name = _text(self._call("nvmlDeviceGetName", handle, what=f"GPU {gpu}"))
        geometry = self.geometry(gpu)
        enabled, pending = self.mig_mode(gpu)
        instances: tuple[GpuInstance, ...] = ()
        if enabled:
            pids = self._processes(gpu, handle)
            instances = tuple(
                sorted(
                    (self._instance(gpu, geometry, gi, pids) for gi in self._gpu_instances(gpu, handle, geometry)),
                    key=lambda i: i.placement.sort_key(),
                )
            )
        return GpuState(gpu, name, geometry.name, enabled, pending, instances, self.uuid(gpu))

    def states(self) -> list[GpuState]:
        return [self.state(gpu) for gpu in range(self.device_count())]

    def _gpu_instances(self, gpu: int, handle: Any, geometry: Geometry) -> Iterator[Any]:
        for profile in geometry.profiles:
            # The buffer must hold every instance the profile allows (NVML's rule).
            buffer = (self.nvml.c_nvmlGpuInstance_t * max(1, profile.max_count))()
            count = ctypes.c_uint(0)
            self._call("nvmlDeviceGetGpuInstances", handle, profile.id, buffer, ctypes.byref(count),
                       what=f"GPU {gpu}, profile {profile.name}")
            yield from (buffer[i] for i in range(count.value))

    def _instance(self, gpu: int, geometry: Geometry, gi: Any, pids: Mapping[int, tuple[int, ...]]) -> GpuInstance:
        info = self._call("nvmlGpuInstanceGetInfo", gi, what=f"GPU {gpu}")
        profile = _profile_by_id(geometry, int(info.profileId))
        placement = Placement(profile.name, int(info.placement.start))
        return GpuInstance(
            id=int(info.id),
            profile_id=int(info.profileId),
            placement=placement,
            size=int(info.placement.size),
            compute_instances=self._compute_instances(gpu, gi, int(info.profileId), f"GPU {gpu}, {placement}"),
            pids=pids.get(int(info.id), ()),
        )

    def _compute_instances(self, gpu: int, gi: Any, gi_profile_id: int, what: str) -> tuple[ComputeInstance, ...]:
        out = []
        for profile in self._ci_profiles_of(gpu, gi, gi_profile_id):
            buffer = (self.nvml.c_nvmlComputeInstance_t * max(1, profile.count))()
            count = ctypes.c_uint(0)
            self._call("nvmlGpuInstanceGetComputeInstances", gi, profile.id, buffer, ctypes.byref(count), what=what)
            for i in range(count.value):
                info = self._call("nvmlComputeInstanceGetInfo", buffer[i], what=what)
                out.append(ComputeInstance(int(info.id), int(info.profileId), int(info.placement.start),
                                           int(info.placement.size)))
        return tuple(sorted(out, key=lambda c: c.id))

    def _ci_profiles_of(self, gpu: int, gi: Any, gi_profile_id: int) -> tuple[_CiProfile, ...]:
        """Compute-instance profiles a GPU instance of this profile offers (cached per profile)."""
        key = (gpu, gi_profile_id)
        if key not in self._ci_profiles:
            rows = []
            engines = self.nvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
            for index in range(int(self.nvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT)):
                try:
                    info = self._call("nvmlGpuInstanceGetComputeInstanceProfileInfo", gi, index, engines,
                                      what=f"GPU {gpu}")
                except NVMLCallError as exc:
                    if exc.error in _ABSENT:
                        continue
                    raise
                rows.append(_CiProfile(index, int(info.id), int(info.sliceCount), int(info.instanceCount)))
            self._ci_profiles[key] = tuple(rows)
        return self._ci_profiles[key]

    def _processes(self, gpu: int, handle: Any) -> dict[int, tuple[int, ...]]:
        """GPU instance id -> pids of the compute processes running in it.

        Read on the parent device, whose process list carries each process's
        ``gpuInstanceId`` when MIG is on (NVML's nvmlProcessInfo_t). Processes of other
        users are only visible to a privileged caller, as with nvidia-smi.
        """
        processes = self._call("nvmlDeviceGetComputeRunningProcesses", handle, what=f"GPU {gpu}")
        out: dict[int, list[int]] = {}
        for p in processes:
            out.setdefault(int(p.gpuInstanceId), []).append(int(p.pid))
        return {gi: tuple(sorted(pids)) for gi, pids in out.items()}

    def processes(self, gpu: int) -> dict[int, tuple[int, ...]]:
        """GPU instance id -> pids running in it, now."""
        return self._processes(gpu, self.handle(gpu))

    # -- changing ---------------------------------------------------------------------------

    def _require_mig(self, gpu: int) -> None:
        enabled, _ = self.mig_mode(gpu)
        if not enabled:
            raise MigModeDisabled(
                f"MIG mode is disabled on GPU {gpu}; migrator does not switch it (that resets the "
                f"GPU): enable it with `nvidia-smi -i {gpu} -mig 1`",
                gpu=gpu, action="check MIG mode",
            )

    def create_gpu_instance(self, gpu: int, placement: Placement) -> int:
        """Create a GPU instance at ``placement``; returns its NVML id."""
        geometry = self.geometry(gpu)
        profile = geometry.profile(placement.profile)
        wanted = self.nvml.c_nvmlGpuInstancePlacement_t()
        wanted.start = placement.start
        wanted.size = profile.memory_slices
        gi = self._call("nvmlDeviceCreateGpuInstanceWithPlacement", self.handle(gpu), profile.id,
                        ctypes.byref(wanted), what=f"GPU {gpu}, {placement}")
        return int(self._call("nvmlGpuInstanceGetInfo", gi, what=f"GPU {gpu}, {placement}").id)

    def create_compute_instance(self, gpu: int, gi_id: int) -> int:
        """Create the compute instance that spans the whole GPU instance; returns its id."""
        gi = self._gpu_instance(gpu, gi_id)
        info = self._call("nvmlGpuInstanceGetInfo", gi, what=f"GPU {gpu}, GPU instance {gi_id}")
        slices = _profile_by_id(self.geometry(gpu), int(info.profileId)).compute_slices
        profile = self._full_ci_profile(gpu, gi, int(info.profileId), slices)
        ci = self._call("nvmlGpuInstanceCreateComputeInstance", gi, profile.id,
                        what=f"GPU {gpu}, GPU instance {gi_id}")
        return int(self._call("nvmlComputeInstanceGetInfo", ci, what=f"GPU {gpu}, GPU instance {gi_id}").id)

    def _full_ci_profile(self, gpu: int, gi: Any, gi_profile_id: int, slices: int) -> _CiProfile:
        # The lowest index with every compute slice is the shared-engine default
        # (what `nvidia-smi mig -cgi ... -C` creates).
        for profile in self._ci_profiles_of(gpu, gi, gi_profile_id):
            if profile.slices == slices:
                return profile
        raise NVMLUnavailable(
            f"GPU {gpu}: no compute-instance profile with {slices} compute slices for GPU-instance "
            f"profile id {gi_profile_id}"
        )

    def destroy_compute_instance(self, gpu: int, gi_id: int, ci_id: int) -> None:
        gi = self._gpu_instance(gpu, gi_id)
        what = f"GPU {gpu}, GPU instance {gi_id}, compute instance {ci_id}"
        ci = self._call("nvmlGpuInstanceGetComputeInstanceById", gi, ci_id, what=what)
        self._call("nvmlComputeInstanceDestroy", ci, what=what)

    def destroy_gpu_instance(self, gpu: int, gi_id: int) -> None:
        gi = self._gpu_instance(gpu, gi_id)
        self._call("nvmlGpuInstanceDestroy", gi, what=f"GPU {gpu}, GPU instance {gi_id}")

    def _gpu_instance(self, gpu: int, gi_id: int) -> Any:
        return self._call("nvmlDeviceGetGpuInstanceById", self.handle(gpu), gi_id,
                          what=f"GPU {gpu}, GPU instance {gi_id}")

    def check_target(self, gpu: int, target: LayoutLike) -> Layout:
        """The canonical target layout for this GPU, MIG mode checked when it has instances."""
        layout = self.geometry(gpu).validate(target)
        if len(layout):
            self._require_mig(gpu)
        return layout


def _profile_by_id(geometry: Geometry, profile_id: int) -> Any:
    for profile in geometry.profiles:
        if profile.id == profile_id:
            return profile
    raise NVMLUnavailable(
        f"{geometry.name}: NVML reports GPU-instance profile id {profile_id}, which the geometry "
        f"does not have (ids: {', '.join(str(p.id) for p in geometry.profiles)})"
    )
