"""Reading geometry from NVML, against replays of real GPUs and nvidia-smi's own text.

tests/data holds what a real NVIDIA H100 80GB HBM3 and a real H200 (driver 580.159.04)
answered to read-only queries, replayed by ``nvml_replay``; for the H100 also the text of
``nvidia-smi mig -lgip`` / ``-lgipp``, a second source that shares no code with NVML's
Python binding or with ours.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from migrator import Engines, Geometry
from migrator.errors import NVMLUnavailable
from nvml_replay import (
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NvmlReplay,
    error_from_record,
)

# Dumps recorded read-only on real GPUs (driver 580.159.04) -> the built-in table each
# device must resolve to.
DUMPS = {"nvml_h100_80gb_hbm3.json": "H100-80GB", "nvml_h200.json": "H200-141GB"}
H100_DUMP = "nvml_h100_80gb_hbm3.json"
DEVICE_NAME = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def replay(data_dir: Path) -> NvmlReplay:
    """The H100 recording, the one the error cases below are built on."""
    return NvmlReplay.from_json(data_dir / H100_DUMP)


def replay_with(replay: NvmlReplay, **options: Any) -> NvmlReplay:
    """The same recording with other options (``fail=``, ``bytes_names=``)."""
    return NvmlReplay(replay.devices, **options)


def read(nvml: NvmlReplay) -> Geometry:
    return Geometry.from_nvml(nvml.nvmlDeviceGetHandleByIndex(0), nvml=nvml)


# -- the recorded devices ---------------------------------------------------------------------


@pytest.mark.parametrize("dump", DUMPS)
@pytest.mark.parametrize("bytes_names", [True, False], ids=["bytes-names", "str-names"])
def test_from_nvml_equals_builtin(data_dir: Path, dump: str, bytes_names: bool) -> None:
    # nvidia-ml-py gives profile names as bytes (a ctypes char array); accept str too.
    geometry = read(NvmlReplay.from_json(data_dir / dump, bytes_names=bytes_names))
    builtin = Geometry.for_gpu(DUMPS[dump])
    assert geometry == builtin
    assert geometry.name == DUMPS[dump]
    assert set(geometry.layouts()) == set(builtin.layouts())


@pytest.mark.parametrize("dump", DUMPS)
def test_from_nvml_reads_memory_and_ids(data_dir: Path, dump: str) -> None:
    nvml = NvmlReplay.from_json(data_dir / dump)
    device = nvml.devices[0]
    geometry = read(nvml)
    builtin = Geometry.for_gpu(DUMPS[dump])
    assert geometry.memory_mib == device["memory_total_bytes"] // 2**20 == builtin.memory_mib
    assert geometry.device_names == (device["name"],)
    assert {p.name: p.id for p in geometry.profiles} == {p.name: p.id for p in builtin.profiles}


def test_every_profile_index_is_asked(replay: NvmlReplay) -> None:
    # The recorded NOT_SUPPORTED / INVALID_ARGUMENT answers must be skipped, not end the read.
    read(replay)
    asked = replay.calls.count("nvmlDeviceGetGpuInstanceProfileInfo")
    assert asked == replay.NVML_GPU_INSTANCE_PROFILE_COUNT


def test_replay_raises_what_the_device_raised(replay: NvmlReplay) -> None:
    handle = replay.nvmlDeviceGetHandleByIndex(0)
    errors = replay.devices[0]["profile_errors"]
    assert errors, "the dump records the device's errors for unsupported indices"
    for index, text in errors.items():
        with pytest.raises(replay.NVMLError) as info:
            replay.nvmlDeviceGetGpuInstanceProfileInfo(handle, int(index))
        assert info.value.value == error_from_record(text).value


def test_unknown_device_is_named_after_itself(replay: NvmlReplay, h100: Geometry) -> None:
    # A GPU newer than our tables must still work, read from the device alone.
    devices = copy.deepcopy(replay.devices)
    devices[0]["name"] = "NVIDIA H100 Engineering Sample"
    geometry = read(NvmlReplay(devices))
    assert geometry.name == "NVIDIA H100 Engineering Sample"
    assert geometry == h100
    assert geometry.engines == Engines(decoders=7, encoders=0, jpegs=7, ofas=1)
    assert str(geometry.validate("3g.40gb@4,MIG 1g.10gb@0")) == "1g.10gb@0,3g.40gb@4"
    assert set(geometry.layouts()) == set(h100.layouts())


def test_device_without_mig_raises(replay: NvmlReplay) -> None:
    devices = copy.deepcopy(replay.devices)
    devices[0]["profiles"] = []
    devices[0]["profile_errors"] = {
        str(i): "NVMLError_NotSupported: Not Supported"
        for i in range(replay.NVML_GPU_INSTANCE_PROFILE_COUNT)
    }
    with pytest.raises(NVMLUnavailable, match="no MIG") as info:
        read(NvmlReplay(devices))
    assert DEVICE_NAME in str(info.value)


def test_skippable_error_is_not_reported(replay: NvmlReplay) -> None:
    # NOT_SUPPORTED on every profile call is "no such profile here", not a failure to report.
    with pytest.raises(NVMLUnavailable, match="no MIG"):
        read(
            replay_with(
                replay, fail={"nvmlDeviceGetGpuInstanceProfileInfo": NVML_ERROR_NOT_SUPPORTED}
            )
        )


@pytest.mark.parametrize(
    "call",
    [
        "nvmlDeviceGetName",
        "nvmlDeviceGetMemoryInfo",
        "nvmlDeviceGetGpuInstanceProfileInfo",
        "nvmlDeviceGetGpuInstancePossiblePlacements",
    ],
)
def test_nvml_error_is_reported_naming_the_call(replay: NvmlReplay, call: str) -> None:
    nvml = replay_with(replay, fail={call: NVML_ERROR_NO_PERMISSION})
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(NVMLUnavailable) as info:
        Geometry.from_nvml(handle, nvml=nvml)
    assert isinstance(info.value.__cause__, nvml.NVMLError)
    assert "Insufficient Permissions" in str(info.value)
    assert call in str(info.value)


# -- nvidia-smi's text: a second, independent source ------------------------------------------

LGIPP_LINE = re.compile(
    r"GPU\s+\d+\s+Profile ID\s+(?P<id>\d+)\s+Placements?\s*:\s*\{(?P<starts>[\d,]*)\}:(?P<size>\d+)"
)
# "|   0  MIG 1g.10gb   19   7/7   9.75   No   16   1   0   |" then "|   1   1   0   |"
LGIP_ROW = re.compile(
    r"\|\s*\d+\s+MIG\s+(?P<name>\S+)\s+(?P<id>\d+)\s+\d+/(?P<total>\d+)\s+(?P<gib>[\d.]+)"
    r"\s+\w+\s+\d+\s+(?P<dec>\d+)\s+(?P<enc>\d+)\s*\|"
)
LGIP_SECOND_ROW = re.compile(r"\|\s+(?P<ce>\d+)\s+(?P<jpeg>\d+)\s+(?P<ofa>\d+)\s*\|")


def parse_lgipp(text: str) -> dict[int, list[tuple[int, int]]]:
    """Profile id -> placements (start, size), from ``nvidia-smi mig -lgipp``."""
    out = {}
    for m in LGIPP_LINE.finditer(text):
        size = int(m["size"])
        out[int(m["id"])] = [(int(s), size) for s in m["starts"].split(",") if s]
    return out


def parse_lgip(text: str) -> dict[str, dict[str, Any]]:
    """Profile name -> id, instance total, memory GiB and engines, from ``-lgip``."""
    lines = text.splitlines()
    out = {}
    for first, second in zip(lines, lines[1:]):
        m = LGIP_ROW.search(first)
        if m is None:
            continue
        engines = LGIP_SECOND_ROW.search(second)
        assert engines is not None, f"no CE/JPEG/OFA line after {first!r}"
        out[m["name"]] = {
            "id": int(m["id"]),
            "max_count": int(m["total"]),
            "memory_gib": float(m["gib"]),
            "engines": Engines(
                int(m["dec"]), int(m["enc"]), int(engines["jpeg"]), int(engines["ofa"])
            ),
        }
    return out


@pytest.fixture(scope="module")
def smi(data_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[int, list[tuple[int, int]]]]:
    lgip = parse_lgip((data_dir / "nvidia_smi_lgip_h100_80gb_hbm3.txt").read_text(encoding="utf-8"))
    lgipp = parse_lgipp(
        (data_dir / "nvidia_smi_lgipp_h100_80gb_hbm3.txt").read_text(encoding="utf-8")
    )
    return lgip, lgipp


def test_nvidia_smi_placements_match_builtin(smi: Any, h100: Geometry) -> None:
    lgip, lgipp = smi
    assert set(lgip) == {p.name for p in h100.profiles}
    assert set(lgipp) == {row["id"] for row in lgip.values()}
    for name, row in lgip.items():
        assert sorted(lgipp[row["id"]]) == sorted(h100.profile(name).placements), name


def test_nvidia_smi_profiles_match_builtin(smi: Any, h100: Geometry) -> None:
    lgip, _ = smi
    for name, row in lgip.items():
        profile = h100.profile(name)
        assert (profile.id, profile.max_count, profile.engines) == (
            row["id"],
            row["max_count"],
            row["engines"],
        ), name
        # nvidia-smi prints GiB with two decimals.
        assert profile.memory_mib / 1024 == pytest.approx(row["memory_gib"], abs=0.01), name
