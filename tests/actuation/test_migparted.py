"""mig-parted configs: export keeps each GPU's instance counts, import places them again.

The checks follow mig-parted's own schema rules (NVIDIA/mig-parted api/spec/v1/spec.go):
``version: v1``, a non-empty ``mig-configs``, entries with required ``devices`` (``all`` or
indices) and ``mig-enabled``, ``mig-devices`` required when enabled and empty when not.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import migrator
from migrator.errors import ConfigError
from migrator.actuation.migparted import dump, export_layouts, export_plan, import_config, load_config

A100 = migrator.Geometry.for_gpu("A100-40GB")

# The shape of NVIDIA's GPU-operator example (custom-mig-config): per-device entries, one with
# MIG off, one mixed.
OPERATOR_EXAMPLE = """
version: v1
mig-configs:
  custom-config:
    - devices: [0]
      mig-enabled: false
    - devices: [1]
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
    - devices: [2]
      mig-enabled: true
      mig-devices:
        "1g.5gb": 2
        "2g.10gb": 1
        "3g.20gb": 1
  all-3g.20gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "3g.20gb": 2
"""


def counts(layout: str) -> dict[str, int]:
    return dict(Counter(p.split("@")[0] for p in layout.split(",") if p))


def doc(entries: list[dict[str, Any]], name: str = "c") -> dict[str, Any]:
    return {"version": "v1", "mig-configs": {name: entries}}


def test_export_of_a_plan_keeps_each_gpus_counts():
    scenario = migrator.Scenario.default()
    plan = migrator.Planner(scenario, config=migrator.PlannerConfig(horizon=3, time_limit_s=0.5)).plan()
    document = export_plan(plan, slots=[0, 2])
    assert document == export_plan(plan.to_dict(), slots=[0, 2])  # the Plan or its JSON
    assert set(document["mig-configs"]) == {"migrator-slot-0", "migrator-slot-2"}
    for t in (0, 2):
        entries = document["mig-configs"][f"migrator-slot-{t}"]
        by_device = {d: e for e in entries for d in e["devices"]}
        assert sorted(by_device) == list(range(len(plan.gpus)))
        for g, gpu in enumerate(plan.gpus):
            assert by_device[g]["mig-enabled"] is True
            assert by_device[g]["mig-devices"] == counts(gpu.slots[t].layout)
    assert load_config(yaml.safe_load(dump(document))) == document
    with pytest.raises(ConfigError, match="slot 3"):
        export_plan(plan, slots=[3])


def test_gpus_with_the_same_counts_share_an_entry_and_empty_means_mig_on_without_instances():
    entries = export_layouts(["3g.20gb@0,3g.20gb@4", "", "3g.20gb@4,3g.20gb@0"])
    assert entries == [
        {"devices": [0, 2], "mig-enabled": True, "mig-devices": {"3g.20gb": 2}},
        {"devices": [1], "mig-enabled": True, "mig-devices": {}},
    ]


def test_dump_says_placements_are_not_kept():
    text = dump(doc(export_layouts(["1g.5gb@6"])))
    assert "not placements" in text and yaml.safe_load(text)["version"] == "v1"


@settings(max_examples=60)
@given(layouts=st.lists(st.sampled_from(A100.layouts()), min_size=1, max_size=3))
def test_round_trip_gives_back_the_layouts_when_the_gpus_hold_them(layouts):
    document = doc(export_layouts(layouts))
    targets = import_config(document, "c", [A100] * len(layouts), current=layouts)
    assert [t.layout for t in targets] == layouts


@settings(max_examples=60)
@given(layout=st.sampled_from(A100.layouts()))
def test_import_without_current_layouts_places_the_same_counts_validly(layout):
    (target,) = import_config(doc(export_layouts([layout])), "c", [A100])
    assert A100.is_valid(target.layout) and counts(target.layout) == counts(layout)
    assert target.counts == counts(layout)


def test_import_prefers_the_arrangement_that_keeps_current_instances():
    document = doc([{"devices": [0], "mig-enabled": True, "mig-devices": {"1g.5gb": 1, "3g.20gb": 1}}])
    (first,) = import_config(document, "c", [A100])
    (kept,) = import_config(document, "c", [A100], current=["3g.20gb@4,1g.5gb@2"])
    assert first.layout == A100.layouts()[[counts(x) for x in A100.layouts()].index(counts(first.layout))]
    assert kept.layout == "1g.5gb@2,3g.20gb@4"


def test_the_operator_example_imports(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(OPERATOR_EXAMPLE)
    targets = import_config(path, "custom-config", [A100] * 4)
    assert [t.index for t in targets] == [0, 1, 2]  # device 3 is left alone
    assert (targets[0].mig_enabled, targets[0].layout) == (False, "")
    assert targets[1].layout == ",".join(f"1g.5gb@{i}" for i in range(7))
    assert counts(targets[2].layout) == {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}
    assert [t.layout for t in import_config(path, "all-3g.20gb", [A100] * 2)] == ["3g.20gb@0,3g.20gb@4"] * 2


def test_whole_gpu_compute_instance_profiles_are_accepted_smaller_ones_refused():
    (target,) = import_config(doc([{"devices": [0], "mig-enabled": True, "mig-devices": {"3c.3g.20gb": 2}}]),
                              "c", [A100])
    assert target.layout == "3g.20gb@0,3g.20gb@4"
    with pytest.raises(ConfigError, match="one compute instance"):
        import_config(doc([{"devices": [0], "mig-enabled": True, "mig-devices": {"1c.3g.20gb": 1}}]), "c", [A100])


def test_device_filter_matches_the_device_ids():
    document = doc([{"devices": "all", "mig-enabled": True, "device-filter": ["0x20B010DE"],
                     "mig-devices": {"7g.40gb": 1}}])
    with pytest.raises(ConfigError, match="device ids") as info:
        import_config(document, "c", [A100, A100])
    assert info.value.field == "mig-configs.c[0].device-filter"
    # Two A100-40GB products: the SXM4 (0x20B0) and a PCIe one (0x20F1).
    targets = import_config(document, "c", [A100, A100], device_ids=["0x20b010de", 0x20F110DE])
    assert [(t.index, t.layout) for t in targets] == [(0, "7g.40gb@0")]


def test_a_geometry_without_a_table_takes_any_device_id():
    custom = migrator.Geometry.from_dict({**A100.to_dict(), "name": "Custom-A100", "aliases": [],
                                          "device_names": []})
    document = doc([{"devices": "all", "mig-enabled": True, "device-filter": "0x20B010DE",
                     "mig-devices": {"7g.40gb": 1}}])
    assert [t.layout for t in import_config(document, "c", [custom], device_ids=["0x20B010DE"])] == ["7g.40gb@0"]


@pytest.mark.parametrize("value", [[], ["20B0"], "0x20B010DE0", [5.5]], ids=["empty", "no-0x", "long", "float"])
def test_a_device_filter_that_is_no_pci_id_is_named(value):
    document = doc([{"devices": "all", "mig-enabled": True, "device-filter": value, "mig-devices": {}}])
    with pytest.raises(ConfigError) as info:
        load_config(document)
    assert info.value.field == "mig-configs.c[0].device-filter"


def test_export_writes_nvml_device_indices():
    entries = export_layouts(["3g.20gb@0,3g.20gb@4", "", "3g.20gb@4,3g.20gb@0"], devices=[5, 2, 3])
    assert entries == [
        {"devices": [3, 5], "mig-enabled": True, "mig-devices": {"3g.20gb": 2}},
        {"devices": [2], "mig-enabled": True, "mig-devices": {}},
    ]
    with pytest.raises(ConfigError, match="GPUs 0 and 1 both map to NVML device 4") as info:
        export_layouts(["", ""], devices=[4, 4])
    assert info.value.field == "devices"
    with pytest.raises(ConfigError, match="2 NVML device indices"):
        export_layouts(["", ""], devices=[1])


def test_export_of_a_scenario_plan_uses_the_scenarios_devices():
    scenario = migrator.Scenario.from_dict({**migrator.Scenario.default().to_dict(),
                                            "gpus": [{"model": "A100-40GB", "devices": [3, 1]}]})
    assert scenario.devices() == (3, 1)
    plan = migrator.Planner(scenario, config=migrator.PlannerConfig(horizon=2, time_limit_s=0.5)).plan()
    entries = export_plan(plan, devices=scenario.devices())["mig-configs"]["migrator-slot-0"]
    by_device = {d: e["mig-devices"] for e in entries for d in e["devices"]}
    assert by_device == {3: counts(plan.gpus[0].slots[0].layout), 1: counts(plan.gpus[1].slots[0].layout)}


@pytest.mark.parametrize(
    "document, field, words",
    [
        ({"version": "v2", "mig-configs": {"c": []}}, "version", "'v1'"),
        ({"version": "v1", "mig-configs": {}}, "mig-configs", "non-empty"),
        ({"version": "v1", "mig-configs": {"c": []}, "extra": 1}, "extra", "unexpected"),
        (doc([{"devices": "some", "mig-enabled": True, "mig-devices": {}}]), "mig-configs.c[0].devices", "'all'"),
        (doc([{"devices": [0], "mig-devices": {}}]), "mig-configs.c[0].mig-enabled", "missing"),
        (doc([{"devices": [0], "mig-enabled": True}]), "mig-configs.c[0].mig-devices", "required"),
        (doc([{"devices": [0], "mig-enabled": False, "mig-devices": {"1g.5gb": 1}}]),
         "mig-configs.c[0].mig-devices", "empty"),
        (doc([{"devices": [0], "mig-enabled": True, "mig-devices": {"1g.5gb": -1}}]),
         "mig-configs.c[0].mig-devices", ">= 0"),
        (doc([{"devices": [0], "mig-enabled": True, "mig-devices": {}, "color": "red"}]),
         "mig-configs.c[0].color", "unexpected"),
    ],
    ids=["version", "empty", "top-field", "devices", "mig-enabled", "mig-devices", "disabled-devices",
         "negative", "entry-field"],
)
def test_schema_errors_name_the_field(document, field, words):
    with pytest.raises(ConfigError) as info:
        load_config(document)
    assert info.value.field == field and words in str(info.value)


@pytest.mark.parametrize(
    "entries, config, words",
    [
        ([{"devices": [0], "mig-enabled": True, "mig-devices": {}}], "other", "unknown configuration 'other'"),
        ([{"devices": [5], "mig-enabled": True, "mig-devices": {}}], "c", "GPU 5 does not exist"),
        ([{"devices": [0], "mig-enabled": True, "mig-devices": {}},
          {"devices": "all", "mig-enabled": True, "mig-devices": {}}], "c", "already configured by entry 0"),
        ([{"devices": [0], "mig-enabled": True, "mig-devices": {"5g.99gb": 1}}], "c", "unknown profile"),
        ([{"devices": [0], "mig-enabled": True, "mig-devices": {"3g.20gb": 3}}], "c", "no valid arrangement"),
    ],
    ids=["config", "device", "twice", "profile", "impossible"],
)
def test_import_errors_say_what_is_wrong(entries, config, words):
    with pytest.raises(ConfigError, match=words):
        import_config(doc(entries), config, [A100])


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
