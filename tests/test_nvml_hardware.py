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

