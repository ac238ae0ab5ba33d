"""Read-only checks against a real GPU, skipped where there is none.

Only NVML queries run here (names, memory, profile info, possible placements). Nothing
enables MIG or creates or destroys an instance: these GPUs may be shared.
"""

from __future__ import annotations

import pytest

import migrator

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def nvml():
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVIDIA driver: {exc}")
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            pytest.skip("no NVIDIA GPU")
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def _devices(nvml):
    return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]


def test_nvml_geometry_equals_the_built_in_table(nvml):
    checked = 0
    for handle in _devices(nvml):
        from_device = migrator.Geometry.from_nvml(handle, nvml)
        if from_device.name not in migrator.known_gpus():
            continue  # a GPU without a table: from_nvml alone is what works for it
        table = migrator.Geometry.for_gpu(from_device.name)
        assert from_device == table
        ids = {p.name: p.id for p in from_device.profiles}
        assert ids == {p.name: p.id for p in table.profiles}
        checked += 1
    if not checked:
        pytest.skip("no GPU here has a built-in table")


class ReadOnly:
    """nvidia-ml-py with every call that changes MIG state refused before it reaches NVML."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        from migrator.actuation.emulator import MUTATING_CALLS

        if name in MUTATING_CALLS or name.startswith(("nvmlDeviceCreate", "nvmlDeviceSet")) or "Destroy" in name:
            raise AssertionError(f"{name} must never run on a shared GPU")
        return getattr(self._module, name)


def test_backend_lists_mig_mode_and_instances_read_only(nvml):
    # Reads only (mode, instances, compute instances, processes); the module is wrapped so
    # that a call that would create, destroy or switch anything fails instead of running.
    from migrator.errors import NVMLCallError, NVMLUnavailable
    from migrator.actuation.nvml import NvmlBackend

    listed = 0
    with NvmlBackend(ReadOnly(nvml)) as backend:
        for index in range(backend.device_count()):
            try:
                state = backend.state(index)
            except NVMLUnavailable as exc:  # a GPU without MIG support
                if "no MIG" not in str(exc):
                    raise
                continue
            except NVMLCallError as exc:
                if exc.error == "NVML_ERROR_NO_PERMISSION":  # listing instances may need root
                    pytest.skip(f"not allowed to list MIG instances here: {exc}")
                raise
            geometry = backend.geometry(index)
            assert isinstance(state.mig_enabled, bool) and state.model == geometry.name
            assert state.mig_enabled or not state.instances
            assert geometry.is_valid(state.layout), state.layout
            assert len({i.id for i in state.instances}) == len(state.instances)
            listed += 1
    if not listed:
        pytest.skip("no MIG-capable GPU here")


def test_pci_device_ids_and_uuids_of_real_gpus(nvml):
    """The PCI id a real GPU reports names its built-in table (what mig-parted's device-filter
    matches), and the UUID the metrics label with is NVML's own."""
    from migrator.actuation.migparted import format_device_id, gpu_for_device_id
    from migrator.actuation.nvml import NvmlBackend
    from migrator.geometry.catalog import resolve_gpu

    checked = 0
    with NvmlBackend(ReadOnly(nvml)) as backend:
        for index, handle in enumerate(_devices(nvml)):
            device_id = backend.pci_device_id(index)
            assert device_id & 0xFFFF == 0x10DE  # NVIDIA's vendor id in the low 16 bits
            uuid = nvml.nvmlDeviceGetUUID(handle)
            assert backend.uuid(index) == (uuid.decode() if isinstance(uuid, bytes) else uuid)
            assert backend.uuid(index).startswith("GPU-")
            known = gpu_for_device_id(device_id)
            if known is None:
                continue  # a product without a table
            name = nvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else name
            assert resolve_gpu(name) == known, (format_device_id(device_id), name)
            checked += 1
    if not checked:
        pytest.skip("no GPU here has a PCI id in data/gpus/pci-device-ids.txt")
