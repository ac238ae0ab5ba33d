"""Geometry: the rule a bad layout breaks, table validation, GPU names, round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import migrator
from migrator import Engines, Geometry
from migrator.geometry import catalog
from migrator.errors import GeometryError, InvalidLayout, UnknownGPU

# -- validate: one row per rule -------------------------------------------------------------

# rule -> (layout on H100-80GB, pieces its message must name). Source of the limits: the
# H100-80GB table (tests/data, real H100 80GB HBM3).
H100_BREAKS = {
    "unknown_profile": ("9g.90gb@0", ["9g.90gb", "H100-80GB"]),
    "placement": ("3g.40gb@2", ["3g.40gb@2", "0, 4"]),
    "duplicate": ("1g.10gb@0,1g.10gb@0", ["1g.10gb@0"]),
    "memory_overlap": ("1g.10gb@1,2g.20gb@0", ["1g.10gb@1", "2g.20gb@0"]),
    "max_count": ("1g.10gb+me@0,1g.10gb+me@1", ["1g.10gb+me", "at most 1"]),
}

# No H100 layout gets past its profile counts to the compute or engine totals; the toy
# table (conftest) does.
TOY_BREAKS = {
    "compute_total": ("1g.a@0,1g.a@1,1g.a@2,1g.a@3", ["4 compute slices", "TOY-4", "3"]),
    "engines": ("1g.a+me@0,1g.a+me@1", ["jpegs", "TOY-4"]),
}


def rows(breaks: dict[str, tuple[str, list[str]]]) -> list[Any]:
    return [pytest.param(rule, layout, named, id=rule) for rule, (layout, named) in breaks.items()]


@pytest.mark.parametrize(("rule", "layout", "named"), rows(H100_BREAKS))
def test_h100_layout_breaks_rule(h100: Geometry, rule: str, layout: str, named: list[str]) -> None:
    assert_breaks(h100, layout, rule, named)


@pytest.mark.parametrize(("rule", "layout", "named"), rows(TOY_BREAKS))
def test_toy_layout_breaks_rule(
    toy_table: dict[str, Any], rule: str, layout: str, named: list[str]
) -> None:
    assert_breaks(Geometry.from_dict(toy_table), layout, rule, named)


def assert_breaks(geometry: Geometry, layout: str, rule: str, named: list[str]) -> None:
    with pytest.raises(InvalidLayout) as info:
        geometry.validate(layout)
    assert info.value.rule == rule
    for piece in named:
        assert piece in str(info.value)
    assert not geometry.is_valid(layout)


@pytest.mark.parametrize(
    "layout",
    [
        "",
        "7g.80gb@0",
        "1g.10gb@0,1g.10gb@1,2g.20gb@2,3g.40gb@4",  # DESIGN.md's example
        "4g.40gb@0,3g.40gb@4",
        "1g.10gb+me@6,1g.10gb@0,1g.10gb@1,1g.10gb@2,1g.10gb@3,1g.10gb@4,1g.10gb@5",
    ],
)
def test_h100_accepts(h100: Geometry, layout: str) -> None:
    assert h100.is_valid(layout)


def test_engine_totals_default_to_the_largest_profile(toy_table: dict[str, Any]) -> None:
    del toy_table["engines"]
    geometry = Geometry.from_dict(toy_table)
    assert geometry.engines == Engines(decoders=2, encoders=0, jpegs=1, ofas=0)
    assert_breaks(geometry, "1g.a@0,1g.a@1,1g.a@2", "engines", ["decoders"])


# Geometry.validate checks rule by rule over the whole layout, in its documented order,
# so an earlier rule wins even when a later placement breaks it.
@pytest.mark.parametrize(
    ("layout", "rule"),
    [
        ("3g.40gb@2,9g.90gb@6", "unknown_profile"),  # not: placement
        ("1g.10gb@0,2g.20gb@0,3g.40gb@4,3g.40gb@4", "duplicate"),  # not: memory_overlap
    ],
)
def test_documented_rule_order(h100: Geometry, layout: str, rule: str) -> None:
    with pytest.raises(InvalidLayout) as info:
        h100.validate(layout)
    assert info.value.rule == rule


def test_huge_start_is_a_placement_error(h100: Geometry) -> None:
    # Python ints are unbounded; nothing must overflow on the way to the core.
    with pytest.raises(InvalidLayout) as info:
        h100.validate("3g.40gb@99999999999999999999")
    assert info.value.rule == "placement"


# -- profile names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["1g.10gb", "MIG 1g.10gb", "mig 1G.10GB", " MIG 1g.10gb "])
def test_profile_lookup(h100: Geometry, name: str) -> None:
    assert h100.profile(name).name == "1g.10gb"


def test_profile_lookup_by_alias(toy_table: dict[str, Any]) -> None:
    assert Geometry.from_dict(toy_table).profile("MIG 1g.a-media").name == "1g.a+me"


def test_unknown_profile_lists_the_profiles(h100: Geometry) -> None:
    with pytest.raises(InvalidLayout) as info:
        h100.profile("MIG 9g.90gb")
    assert info.value.rule == "unknown_profile"
    assert all(p.name in str(info.value) for p in h100.profiles)


# -- GPU names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "H100-80GB",
        "h100-80gb",
        "H100",  # alias
        "H100-SXM5-80GB",  # alias
        "NVIDIA H100 80GB HBM3",  # NVML device name (tests/data)
        "nvidia h100 80gb hbm3",
        "  NVIDIA_H100 80GB-HBM3  ",
        "NVIDIA H100 PCIe",
    ],
)
def test_for_gpu_resolves_names(name: str) -> None:
    assert Geometry.for_gpu(name).name == "H100-80GB"


def test_every_name_of_a_table_resolves_to_it(gpu: str) -> None:
    table = catalog.load_table(gpu)
    for name in [gpu, *table.get("aliases", []), *table.get("device_names", [])]:
        assert catalog.resolve_gpu(name) == gpu, name


def test_no_name_is_shared_by_two_tables() -> None:
    # The catalogue keeps the first table for a shared name, so a clash would silently
    # send one GPU to another's geometry.
    owners: dict[str, str] = {}
    for key in migrator.known_gpus():
        table = catalog.load_table(key)
        for name in {
            catalog.normalize_name(n)
            for n in [key, *table.get("aliases", []), *table.get("device_names", [])]
        }:
            assert owners.setdefault(name, key) == key, f"{name!r}: {owners[name]} and {key}"


@pytest.mark.parametrize("name", ["H999-1TB", "", "NVIDIA GeForce RTX 4090"])
def test_unknown_gpu_lists_known_ones_and_mentions_nvml(name: str) -> None:
    with pytest.raises(UnknownGPU) as info:
        Geometry.for_gpu(name)
    message = str(info.value)
    assert all(key in message for key in migrator.known_gpus())
    assert "nvml" in message.lower()
    assert info.value.known == migrator.known_gpus()
    assert isinstance(info.value, LookupError)


# -- round trips ------------------------------------------------------------------------------


def test_to_dict_from_dict_round_trip(geometry: Geometry) -> None:
    table = geometry.to_dict()
    again = Geometry.from_dict(table)
    assert again == geometry
    assert again.to_dict() == table
    assert again.name == geometry.name


def test_from_yaml_equals_builtin(geometry: Geometry, tmp_path: Path) -> None:
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(geometry.to_dict()), encoding="utf-8")
    assert Geometry.from_yaml(path) == geometry


def test_from_yaml_reports_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(GeometryError, match="bad.yaml"):
        Geometry.from_yaml(path)


# -- from_dict: bad tables --------------------------------------------------------------------

DROP = object()  # as a value: delete the key
P0 = "profiles.0"  # the first profile (1g.10gb)

# name -> (where in a good H100 table, key, new value, text the error must contain: the field).
BAD_TABLES: dict[str, tuple[str, Any, Any, str]] = {
    "unknown-key": ("", "colour", "green", "'colour'"),
    "missing-name": ("", "name", DROP, "'name'"),
    "missing-profiles": ("", "profiles", DROP, "'profiles'"),
    "memory-slices-str": ("", "memory_slices", "8", "'memory_slices'"),
    "memory-slices-bool": ("", "memory_slices", True, "'memory_slices'"),
    "memory-slices-zero": ("", "memory_slices", 0, "memory_slices"),
    "memory-slices-65": ("", "memory_slices", 65, "memory_slices"),
    "compute-slices-zero": ("", "compute_slices", 0, "compute_slices"),
    "profiles-empty": ("", "profiles", [], "profiles"),
    "profiles-not-list": ("", "profiles", {}, "'profiles'"),
    "device-names-str": ("", "device_names", "NVIDIA H100", "'device_names'"),
    "description-int": ("", "description", 1, "'description'"),
    "engines-unknown-key": ("engines", "nvdec", 1, "'nvdec'"),
    "engines-str": ("engines", "ofas", "1", "'ofas'"),
    "engines-negative": ("engines", "ofas", -1, "engine"),
    "profile-not-mapping": ("profiles", 0, "1g.10gb", "profiles[0]"),
    "profile-unknown-key": (P0, "colour", 1, "'colour'"),
    "profile-missing-max-count": (P0, "max_count", DROP, "'max_count'"),
    "profile-missing-name": (P0, "name", DROP, "'name'"),
    "profile-name-int": (P0, "name", 5, "'name'"),
    "profile-id-str": (P0, "id", "19", "'id'"),
    "profile-compute-float": (P0, "compute_slices", 1.0, "'compute_slices'"),
    "profile-compute-too-many": (P0, "compute_slices", 8, "compute_slices"),
    "profile-memory-too-many": (P0, "memory_slices", 9, "memory_slices"),
    "profile-max-count-zero": (P0, "max_count", 0, "max_count"),
    "profile-engines-list": (P0, "engines", [1, 0, 1, 0], "'engines'"),
    "profile-engines-negative": (f"{P0}.engines", "jpegs", -1, "engine"),
    "placements-empty": (P0, "placements", [], "placements"),
    "placement-short": (P0, "placements", [[0]], "placements"),
    "placement-str": (P0, "placements", [["0", 1]], "placements"),
    "placement-outside": (P0, "placements", [[7, 2]], "(7, 2)"),
    "placement-negative": (P0, "placements", [[-1, 1]], "(-1, 1)"),
    "placement-twice": (P0, "placements", [[0, 1], [0, 1]], "start 0"),
    "profile-named-like-another": ("profiles.1", "name", "1g.10gb", "1g.10gb"),
    "profile-name-case-clash": ("profiles.1", "name", "1G.10GB", "1G.10GB"),
    "alias-is-another-profile": ("profiles.1", "aliases", ["1g.10gb"], "1g.10gb"),
}

# Accepted today (or failing with a bare AttributeError); each should be a GeometryError.
BAD_TABLES_ACCEPTED: dict[str, tuple[str, Any, Any, str]] = {
    "profile-alias-int": (P0, "aliases", [5], "aliases"),  # AttributeError from .strip()
    "gpu-alias-int": ("", "aliases", [5], "aliases"),
    "device-name-int": ("", "device_names", [5], "device_names"),
    "placement-size-mismatch": (P0, "placements", [[0, 2]], "memory_slices"),  # 1-slice profile
    "memory-mib-negative": ("", "memory_mib", -5, "memory_mib"),
    "profile-memory-mib-negative": (P0, "memory_mib", -5, "memory_mib"),
}


def edited_h100(where: str, key: Any, value: Any) -> dict[str, Any]:
    """The H100 table with ``key`` under the dotted path ``where`` set (or dropped)."""
    table = catalog.load_table("H100-80GB")
    node: Any = table
    for step in filter(None, where.split(".")):
        node = node[int(step)] if isinstance(node, list) else node[step]
    if value is DROP:
        del node[key]
    else:
        node[key] = value
    return table


@pytest.mark.parametrize(
    ("where", "key", "value", "field"), BAD_TABLES.values(), ids=list(BAD_TABLES)
)
def test_from_dict_rejects_bad_table(where: str, key: Any, value: Any, field: str) -> None:
    with pytest.raises(GeometryError) as info:
        Geometry.from_dict(edited_h100(where, key, value))
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("where", "key", "value", "field"), BAD_TABLES_ACCEPTED.values(), ids=list(BAD_TABLES_ACCEPTED)
)
def test_from_dict_rejects_inconsistent_values(where: str, key: Any, value: Any, field: str) -> None:
    with pytest.raises(GeometryError) as info:
        Geometry.from_dict(edited_h100(where, key, value))
    assert field in str(info.value)


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(GeometryError, match="mapping"):
        Geometry.from_dict([])  # type: ignore[arg-type]


def test_error_names_the_origin() -> None:
    with pytest.raises(GeometryError, match="my.yaml"):
        Geometry.from_dict(edited_h100("", "colour", 1), origin="my.yaml")
