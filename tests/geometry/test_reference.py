"""The C++ geometry core against the independent Python reference: every built-in GPU,
a hand-made toy table, and random small tables where every limit binds."""

from __future__ import annotations

from typing import Any, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrator import Geometry, Layout, Placement
from reference import ENGINE_KINDS, Reference, RefPlacement


def as_placements(layout: Iterable[RefPlacement]) -> list[Placement]:
    return [Placement(name, start) for name, start in layout]


def as_pairs(placements: Iterable[Placement]) -> set[RefPlacement]:
    return {(p.profile, p.start) for p in placements}


def positions(reference: Reference) -> st.SearchStrategy[RefPlacement]:
    """Mostly listed placements, sometimes a profile at a start it does not allow, so
    that the placement rule is exercised as well as the rules between placements."""
    anywhere = st.tuples(
        st.sampled_from(sorted(reference.profiles)), st.integers(0, reference.memory_slices)
    )
    return st.one_of(st.sampled_from(reference.placements()), anywhere)


# -- whole enumerations ---------------------------------------------------------------------


def test_placements_match_reference(geometry: Geometry, reference: Reference) -> None:
    got = [(p.profile, p.start) for p in geometry.placements()]
    assert got == reference.placements()


def test_layouts_match_reference(geometry: Geometry, reference: Reference) -> None:
    listed = geometry.layouts()
    assert len(listed) == len(set(listed)), "a layout is listed twice"
    assert set(listed) == reference.layouts()


def test_maximal_layouts_match_reference(geometry: Geometry, reference: Reference) -> None:
    listed = geometry.layouts(maximal=True)
    assert len(listed) == len(set(listed)), "a layout is listed twice"
    assert set(listed) == reference.layouts(maximal=True)


def test_empty_layout_is_listed(geometry: Geometry) -> None:
    assert "" in geometry.layouts()
    assert "" not in geometry.layouts(maximal=True)


def test_every_layout_validates_and_round_trips(geometry: Geometry) -> None:
    for text in geometry.layouts():
        assert str(geometry.validate(text)) == text
        assert str(Layout.parse(text)) == text


@pytest.mark.parametrize("gpu_engines", [True, False], ids=["gpu-engines", "engines-from-profiles"])
def test_toy_layouts_match_reference(toy_table: dict[str, Any], gpu_engines: bool) -> None:
    # The toy table reaches the compute and engine limits that built-in GPUs never do, and
    # without GPU totals both sides must fall back to the element-wise maximum.
    if not gpu_engines:
        del toy_table["engines"]
    reference = Reference(toy_table)
    geometry = Geometry.from_dict(toy_table)
    assert set(geometry.layouts()) == reference.layouts()
    assert set(geometry.layouts(maximal=True)) == reference.layouts(maximal=True)


@st.composite
def random_tables(draw: st.DrawFn) -> dict[str, Any]:
    """Small made-up geometries in the table schema, where the compute, count and engine
    limits bind in ways no built-in GPU reaches; GPU engine totals are sometimes left out.
    Engines are often absent so that they do not hide the other limits."""
    memory_slices = draw(st.integers(1, 6))
    compute_slices = draw(st.integers(1, 6))
    engines = st.fixed_dictionaries({kind: st.integers(0, 2) for kind in ENGINE_KINDS})
    profiles = []
    for i in range(draw(st.integers(1, 4))):
        size = draw(st.integers(1, memory_slices))
        starts = draw(st.sets(st.integers(0, memory_slices - size), min_size=1))
        profiles.append(
            {
                "name": f"p{i}",
                "compute_slices": draw(st.integers(1, compute_slices)),
                "memory_slices": size,
                "memory_mib": 1024 * size,
                "max_count": draw(st.integers(1, 2)),
                "placements": [[start, size] for start in sorted(starts)],
                "engines": draw(st.one_of(st.just({}), engines)),
            }
        )
    table = {
        "name": "RANDOM",
        "memory_slices": memory_slices,
        "compute_slices": compute_slices,
        "profiles": profiles,
    }
    if draw(st.booleans()):
        table["engines"] = draw(engines)
    return table


@given(random_tables())
def test_random_tables_match_reference(table: dict[str, Any]) -> None:
    geometry = Geometry.from_dict(table)
    reference = Reference(table)
    assert set(geometry.layouts()) == reference.layouts()
    assert set(geometry.layouts(maximal=True)) == reference.layouts(maximal=True)


# -- properties on random layouts -----------------------------------------------------------


def near_valid(
    reference: Reference, valid: list[tuple[RefPlacement, ...]]
) -> st.SearchStrategy[list[RefPlacement]]:
    """A valid layout plus up to two more positions: mostly one rule broken, by a little,
    where random lists would mostly collide on memory."""
    extra = st.lists(positions(reference), max_size=2)
    return st.builds(lambda base, more: list(base) + more, st.sampled_from(valid), extra)


@given(data=st.data())
def test_is_valid_agrees_with_reference(
    geometry: Geometry,
    reference: Reference,
    reference_layouts: list[tuple[RefPlacement, ...]],
    data: st.DataObject,
) -> None:
    # Lists, not sets: a placement drawn twice must break the duplicate rule.
    anything = st.lists(positions(reference), max_size=6)
    layout = data.draw(
        st.one_of(anything, near_valid(reference, reference_layouts)), label="layout"
    )
    assert geometry.is_valid(as_placements(layout)) == reference.is_valid(layout)


@given(data=st.data())
def test_addable_agrees_with_reference(
    geometry: Geometry,
    reference: Reference,
    reference_layouts: list[tuple[RefPlacement, ...]],
    data: st.DataObject,
) -> None:
    layout = data.draw(st.sampled_from(reference_layouts), label="layout")
    addable = geometry.addable(as_placements(layout))
    assert as_pairs(addable) == reference.addable(layout)
    assert addable == sorted(addable, key=Placement.sort_key), "not in canonical order"


@given(data=st.data())
def test_transition_agrees_with_reference(
    geometry: Geometry,
    reference: Reference,
    reference_layouts: list[tuple[RefPlacement, ...]],
    data: st.DataObject,
) -> None:
    a = set(data.draw(st.sampled_from(reference_layouts), label="current"))
    b = set(data.draw(st.sampled_from(reference_layouts), label="target"))
    t = geometry.transition(as_placements(a), as_placements(b))
    assert as_pairs(t.kept) == a & b
    assert as_pairs(t.destroyed) == a - b
    assert as_pairs(t.created) == b - a
    assert t.make_before_break == reference.is_valid(a | (b - a))
    # What the core creates before destroying must really fit beside the current layout.
    assert reference.is_valid(a | as_pairs(t.created_before_destroy))
