"""Scenario loading: the default, every field checked with its own error, arrival sources."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import migrator
from migrator.errors import ConfigError
from migrator.workload.scenario import Scenario
from migrator.workload.settings import PlannerConfig
from nvml_replay import NvmlReplay

BASE: dict[str, Any] = {
    "name": "t",
    "duration_s": 60,
    "gpus": [{"model": "A100-40GB", "count": 1}],
    "tenants": [
        {
            "name": "a",
            "model": "resnet50",
            "slo_ms": 100,
            "arrivals": {"synthetic": "poisson", "mean_rps": 50},
            "window_s": 30,
            "work_gpu_s": 5,
            "accuracy_before": 0.6,
            "accuracy_after": 0.8,
        }
    ],
}


def edited(path: str, value: Any) -> dict[str, Any]:
    """BASE with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    table = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = table
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return table


def test_default_scenario_is_several_tenants_on_a100s():
    s = Scenario.default()
    assert {g.model for g in s.gpus} == {"A100-40GB"} and len(s.gpus) >= 2
    assert len(s.tenants) >= 4 and all(t.retrains for t in s.tenants)
    assert {migrator.workload.models.builtin_models()[t.model].domain for t in s.tenants} == {"vision", "language"}
    assert s.slot_s == 1.0 and 60 <= s.tenants[0].window_s <= 600


def test_default_layouts_are_valid_and_canonical():
    for gpu in Scenario.default().gpus:
        assert gpu.geometry.canonical(gpu.layout) == gpu.layout


def test_arrivals_are_deterministic_per_seed():
    s = Scenario.default()
    a, b, c = s.arrivals(), s.arrivals(), s.arrivals(seed=1)
    assert a == b and a != c
    assert a.counts.shape == (len(s.tenants), s.n_slots)


def test_load_from_file_resolves_relative_csv(tmp_path: Path):
    migrator.workload.traces.synthetic("poisson", tenants=("x",), duration_s=60, mean_rps=7, seed=3).to_csv(tmp_path / "x.csv")
    table = edited("tenants.0.arrivals", {"csv": "x.csv", "column": "x", "scale": 2.0})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(table))
    s = Scenario.load(tmp_path / "s.yaml")
    expected = migrator.workload.traces.load_csv(tmp_path / "x.csv").tenant("x") * 2.0
    np.testing.assert_array_equal(s.arrivals().tenant("a"), expected)


def test_sample_arrivals():
    s = Scenario.from_dict(edited("tenants.0.arrivals", {"sample": "shift-2", "column": "t1"}))
    np.testing.assert_array_equal(s.arrivals().tenant("a"), migrator.workload.traces.sample("shift-2").tenant("t1")[:60])


def test_planner_settings_and_round_trip():
    s = Scenario.from_dict(edited("planner", {"horizon": 12, "forecaster": {"name": "last"}}))
    assert s.planner.horizon == 12
    again = Scenario.from_dict(s.to_dict())
    assert again.planner == s.planner and again.tenants == s.tenants


def test_discover_nvml_reads_the_device(data_dir: Path):
    replay = NvmlReplay.from_json(data_dir / "nvml_h100_80gb_hbm3.json")
    replay.nvmlInit = lambda: None  # type: ignore[attr-defined]
    replay.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    table = edited("gpus", [{"discover": "nvml"}])
    table["tenants"][0]["model"] = "resnet50"
    s = Scenario.from_dict(table, nvml=replay)
    assert [g.model for g in s.gpus] == ["H100-80GB"]


def test_discovered_gpus_carry_their_device_index(data_dir: Path):
    replay = NvmlReplay.from_json(data_dir / "nvml_h100_80gb_hbm3.json")
    replay.nvmlInit = lambda: None  # type: ignore[attr-defined]
    replay.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    table = edited("gpus", [{"discover": "nvml", "indices": [0]}])
    table["tenants"][0]["model"] = "resnet50"
    assert [g.device for g in Scenario.from_dict(table, nvml=replay).gpus] == [0]


def test_gpu_devices_are_kept_and_round_trip():
    s = Scenario.from_dict(edited("gpus", [{"model": "A100-40GB", "devices": [3, 1], "layout": "7g.40gb@0"},
                                           {"model": "H100-80GB", "count": 1, "devices": [0]}]))
    assert [(g.model, g.device, g.layout) for g in s.gpus] == [
        ("A100-40GB", 3, "7g.40gb@0"), ("A100-40GB", 1, "7g.40gb@0"), ("H100-80GB", 0, "")]
    assert [g.device for g in Scenario.from_dict(s.to_dict()).gpus] == [3, 1, 0]
    assert [g.device for g in Scenario.default().gpus] == [None, None]


def test_discover_without_nvml_is_a_config_error():
    class NoDriver:
        def nvmlInit(self) -> None:  # noqa: N802
            raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    with pytest.raises(ConfigError, match="gpus\\[0\\].*cannot discover"):
        Scenario.from_dict(edited("gpus", [{"discover": "nvml"}]), nvml=NoDriver())


BAD = {
    "unknown-top-key": ("colour", "red", "colour"),
    "slot-negative": ("slot_s", -1, "slot_s"),
    "duration-text": ("duration_s", "long", "duration_s"),
    "seed-negative": ("seed", -3, "seed"),
    "gpus-empty": ("gpus", [], "gpus"),
    "gpu-unknown": ("gpus.0.model", "Z9000", "gpus[0].model"),
    "gpu-count-zero": ("gpus.0.count", 0, "gpus[0].count"),
    "gpu-extra-key": ("gpus.0.memory", 3, "gpus[0].memory"),
    "gpu-bad-layout": ("gpus.0.layout", "3g.20gb@0,4g.20gb@0", "gpus[0].layout"),
    "gpu-devices-text": ("gpus.0.devices", "0,1", "gpus[0].devices"),
    "gpu-devices-negative": ("gpus.0.devices", [0, -1], "gpus[0].devices"),
    "gpu-devices-empty": ("gpus.0.devices", [], "gpus[0].devices"),
    "gpu-devices-count": ("gpus.0.devices", [0, 1, 2], "gpus[0].devices"),
    "gpu-devices-twice": ("gpus", [{"model": "A100-40GB", "devices": [1]}, {"model": "A100-40GB", "devices": [1]}], "gpus"),
    "gpu-devices-some": ("gpus", [{"model": "A100-40GB", "devices": [1]}, {"model": "A100-40GB"}], "gpus"),
    "gpu-layout-syntax": ("gpus.0.layout", "3g.20gb@zero", "gpus[0].layout"),
    "discover-other": ("gpus.0", {"discover": "dcgm"}, "gpus[0].discover"),
    "tenants-missing": ("tenants", ..., "tenants"),
    "tenant-no-name": ("tenants.0.name", ..., "tenants[0].name"),
    "tenant-unknown-key": ("tenants.0.priority", 1, "tenants[0].priority"),
    "tenant-unknown-model": ("tenants.0.model", "alexnet", "tenants[0].model"),
    "tenant-slo-zero": ("tenants.0.slo_ms", 0, "tenants[0].slo_ms"),
    "tenant-percentile": ("tenants.0.percentile", 100, "tenants[0].percentile"),
    "tenant-accuracy": ("tenants.0.accuracy_after", 1.5, "tenants[0].accuracy_after"),
    "tenant-window": ("tenants.0.window_s", -5, "tenants[0].window_s"),
    "tenant-work": ("tenants.0.work_gpu_s", -1, "tenants[0].work_gpu_s"),
    "tenant-max-batch": ("tenants.0.max_batch", 0, "tenants[0].max_batch"),
    "arrivals-none": ("tenants.0.arrivals", {}, "tenants[0].arrivals"),
    "arrivals-two": ("tenants.0.arrivals", {"sample": "shift-2", "csv": "x.csv"}, "tenants[0].arrivals"),
    "arrivals-kind": ("tenants.0.arrivals", {"synthetic": "zigzag"}, "tenants[0].arrivals.synthetic"),
    "arrivals-param": ("tenants.0.arrivals", {"synthetic": "poisson", "period_s": 5}, "tenants[0].arrivals.period_s"),
    "arrivals-rate": ("tenants.0.arrivals", {"synthetic": "poisson", "mean_rps": -2}, "tenants[0].arrivals"),
    "arrivals-sample": ("tenants.0.arrivals", {"sample": "nope"}, "tenants[0].arrivals"),
    "arrivals-column": ("tenants.0.arrivals", {"sample": "shift-2", "column": "zz"}, "tenants[0].arrivals.column"),
    "arrivals-short": ("duration_s", 6000, "tenants[0].arrivals"),
    "planner-key": ("planner", {"speed": "fast"}, "planner.speed"),
    "planner-horizon": ("planner", {"horizon": 0}, "planner.horizon"),
    "planner-workers": ("planner", {"workers": -1}, "planner.workers"),
    "planner-retrain-instances": ("planner", {"retrain_instances": 1.5}, "planner.retrain_instances"),
    "planner-forecaster": ("planner", {"forecaster": {"name": "oracle"}}, "planner.forecaster"),
    "models-missing": ("models", "no/such/table.yaml", "models"),
}


@pytest.mark.parametrize(("path", "value", "field"), BAD.values(), ids=list(BAD))
def test_each_bad_field_gets_its_own_error(path, value, field):
    table = edited(path, value)
    if path == "duration_s":
        table["tenants"][0]["arrivals"] = {"sample": "shift-2", "column": "t0"}
    with pytest.raises(ConfigError) as info:
        Scenario.from_dict(table)
    # The message names the field for a person; .field holds its path for a program.
    assert field in str(info.value) or info.value.field == field, str(info.value)
    assert info.value.field.startswith(field.split(".")[0].split("[")[0])


def test_allowed_values_are_listed():
    with pytest.raises(ConfigError) as info:
        Scenario.from_dict(edited("tenants.0.arrivals", {"synthetic": "zigzag"}))
    assert "poisson" in str(info.value) and "diurnal" in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        Scenario.load(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("tenants: [a, b\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Scenario.load(tmp_path / "bad.yaml")


def test_model_without_figures_for_the_gpu_names_both():
    table = edited("gpus.0.model", "B200")
    with pytest.raises(ConfigError, match="B200") as info:
        Scenario.from_dict(table)
    assert "tenants[0].model" in str(info.value)


def test_planner_config_validates_directly():
    with pytest.raises(ConfigError, match="planner.mip_gap"):
        PlannerConfig(mip_gap=-1)
    assert PlannerConfig().make_forecaster() is not None
