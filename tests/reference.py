"""An independent, pure-Python reference of MIG layout validity and enumeration.

It reads the raw table dict (``migrator.geometry.catalog.load_table``, the ``data/gpus/*.yaml``
schema) and never touches ``migrator.Geometry`` or ``migrator._core``: the point is to
disagree with the C++ core whenever either is wrong. Enumeration deliberately uses a
different algorithm from the core's depth-first search over sorted slots: it walks the
memory slices left to right (each slice is left empty or is the first slice of one
placement), which yields every memory-disjoint set exactly once, then filters the other
rules.

A placement is a ``(profile_name, start)`` pair; a layout is any iterable of them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

ENGINE_KINDS = ("decoders", "encoders", "jpegs", "ofas")

RefPlacement = tuple[str, int]


def _engine_vector(row: Mapping[str, Any] | None) -> tuple[int, ...]:
    row = row or {}
    return tuple(int(row.get(kind, 0)) for kind in ENGINE_KINDS)


@dataclass(frozen=True)
class _Profile:
    compute_slices: int
    max_count: int
    sizes: Mapping[int, int]  # start -> size, as the table lists its placements
    engines: tuple[int, ...]


def canonical(placements: Iterable[RefPlacement]) -> str:
    """Canonical text: sorted by (start, profile name), ``name@start`` joined by commas."""
    ordered = sorted(placements, key=lambda p: (p[1], p[0]))
    return ",".join(f"{name}@{start}" for name, start in ordered)


class Reference:
    """Validity and enumeration of layouts for one raw geometry table."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.name: str = table["name"]
        self.memory_slices: int = table["memory_slices"]
        self.compute_slices: int = table["compute_slices"]
        self.profiles: dict[str, _Profile] = {
            row["name"]: _Profile(
                compute_slices=row["compute_slices"],
                max_count=row["max_count"],
                sizes={start: size for start, size in row["placements"]},
                engines=_engine_vector(row.get("engines")),
            )
            for row in table["profiles"]
        }
        # Without GPU totals the full-GPU profile is taken to hold every engine.
        if table.get("engines") is not None:
            self.engine_totals = _engine_vector(table["engines"])
        else:
            vectors = [p.engines for p in self.profiles.values()]
            self.engine_totals = tuple(max(column) for column in zip(*vectors))

    # -- placements ---------------------------------------------------------------------

    def placements(self) -> list[RefPlacement]:
        """Every listed placement, in canonical order."""
        every = [(name, start) for name, p in self.profiles.items() for start in p.sizes]
        return sorted(every, key=lambda p: (p[1], p[0]))

    def _exists(self, placement: RefPlacement) -> bool:
        name, start = placement
        return name in self.profiles and start in self.profiles[name].sizes

    def memory_of(self, placement: RefPlacement) -> range:
        name, start = placement
        return range(start, start + self.profiles[name].sizes[start])

    def _starting_at(self, start: int) -> list[RefPlacement]:
        return [(name, start) for name, p in self.profiles.items() if start in p.sizes]

    # -- validity -----------------------------------------------------------------------

    def is_valid(self, layout: Iterable[RefPlacement]) -> bool:
        """Whether every rule holds; a duplicate placement counts as a memory clash."""
        layout = list(layout)
        if not all(self._exists(p) for p in layout):
            return False
        return self._memory_disjoint(layout) and self._within_budgets(layout)

    def _memory_disjoint(self, layout: list[RefPlacement]) -> bool:
        used = [s for p in layout for s in self.memory_of(p)]
        return len(used) == len(set(used))

    def _within_budgets(self, layout: list[RefPlacement]) -> bool:
        counts = Counter(name for name, _ in layout)
        if any(n > self.profiles[name].max_count for name, n in counts.items()):
            return False
        if sum(self.profiles[name].compute_slices for name, _ in layout) > self.compute_slices:
            return False
        for kind in range(len(ENGINE_KINDS)):
            used = sum(self.profiles[name].engines[kind] for name, _ in layout)
            if used > self.engine_totals[kind]:
                return False
        return True

    # -- enumeration --------------------------------------------------------------------

    def _memory_disjoint_sets(self) -> Iterator[tuple[RefPlacement, ...]]:
        # Left to right over memory slices: slice i is either empty, or the first slice of
        # one placement that covers i..i+size-1, after which the walk resumes past it. Every
        # memory-disjoint set has exactly one such walk, so none is produced twice.
        def walk(i: int, chosen: tuple[RefPlacement, ...]) -> Iterator[tuple[RefPlacement, ...]]:
            if i >= self.memory_slices:
                yield chosen
                return
            yield from walk(i + 1, chosen)
            for placement in self._starting_at(i):
                yield from walk(i + len(self.memory_of(placement)), chosen + (placement,))

        return walk(0, ())

    def valid_layouts(self) -> list[tuple[RefPlacement, ...]]:
        """Every valid layout (the empty one included), each as a tuple of placements."""
        return [s for s in self._memory_disjoint_sets() if self._within_budgets(list(s))]

    def addable(self, layout: Iterable[RefPlacement]) -> set[RefPlacement]:
        """Placements that keep ``layout`` valid when added to it."""
        layout = list(layout)
        return {p for p in self.placements() if self.is_valid(layout + [p])}

    def is_maximal(self, layout: Iterable[RefPlacement]) -> bool:
        return not self.addable(layout)

    def layouts(self, maximal: bool = False) -> set[str]:
        """Canonical texts of all valid layouts, or only of those nothing can be added to."""
        found = self.valid_layouts()
        if maximal:
            found = [layout for layout in found if self.is_maximal(layout)]
        return {canonical(layout) for layout in found}
