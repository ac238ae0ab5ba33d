"""Layouts as values: parsing and printing the canonical text form.

A layout is the set of GPU-instance placements on one GPU, written sorted by start:
``"1g.10gb@0,1g.10gb@1,2g.20gb@2,3g.40gb@4"``. Parsing here is purely syntactic; whether
the profiles exist and the placements fit together is the geometry's business
(:meth:`migrator.Geometry.validate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Union

from ..errors import LayoutSyntaxError

__all__ = ["Layout", "LayoutLike", "Placement"]

_START = re.compile(r"[0-9]+")
# A profile name as NVML prints it, optionally after "MIG ": 3g.40gb, 1g.24gb+me.all, 1g.24gb-me.
_PROFILE = re.compile(r"(?:MIG\s+)?[A-Za-z0-9][A-Za-z0-9.+\-]*", re.IGNORECASE)
_EXAMPLE = "expected PROFILE@START, e.g. 3g.40gb@4"
# Digits of a start read as a number: far beyond any GPU's memory slices (8 today), so that a
# large start is the geometry's "placement" error; a longer one (int() refuses 4300 digits and
# more) is not read at all.
_MAX_START_DIGITS = 100


def _cut(text: str, limit: int = 60) -> str:
    """``repr(text)`` cut to ``limit`` characters: a token may be a whole file's worth."""
    written = repr(text)
    return written if len(written) <= limit else f"{written[: limit - 4]}...{written[-1]}"


@dataclass(frozen=True)
class Placement:
    """One GPU instance position: a profile name and its first memory slice."""

    profile: str
    start: int

    def sort_key(self) -> tuple[int, str]:
        """Canonical order: by start, then by profile name (as the C++ core sorts)."""
        return (self.start, self.profile)

    def __str__(self) -> str:
        return f"{self.profile}@{self.start}"

    @classmethod
    def parse(cls, token: str) -> Placement:
        """Parse ``"3g.40gb@4"``; raise :class:`LayoutSyntaxError` naming the token."""
        text = token.strip()
        profile, sep, start = text.partition("@")
        profile = profile.strip()
        start = start.strip()
        shown = _cut(text)
        if not sep or not profile:
            raise LayoutSyntaxError(f"bad layout token {shown}: {_EXAMPLE}", text)
        if not _PROFILE.fullmatch(profile):
            raise LayoutSyntaxError(
                f"bad layout token {shown}: {_cut(profile)} is not a profile name "
                f"(placements are separated by commas); {_EXAMPLE}",
                text,
            )
        if not _START.fullmatch(start):
            raise LayoutSyntaxError(
                f"bad layout token {shown}: start {_cut(start)} is not a "
                f"non-negative integer; {_EXAMPLE}",
                text,
            )
        if len(start) > _MAX_START_DIGITS:  # int() itself refuses 4300 digits and more
            raise LayoutSyntaxError(
                f"bad layout token {shown}: start has {len(start)} digits; a memory slice index "
                f"is read from at most {_MAX_START_DIGITS}",
                text,
            )
        return cls(profile=profile, start=int(start))


@dataclass(frozen=True)
class Layout:
    """An immutable, canonically ordered set of placements on one GPU."""

    placements: tuple[Placement, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "placements", tuple(sorted(self.placements, key=Placement.sort_key))
        )

    @classmethod
    def parse(cls, text: str) -> Layout:
        """Parse the text form; an empty or blank string is the empty layout.

        Raises
        ------
        LayoutSyntaxError
            When a comma-separated token is not ``PROFILE@START``.
        """
        if not isinstance(text, str):
            raise TypeError(f"layout text must be str, not {type(text).__name__}")
        if not text.strip():
            return cls()
        return cls(tuple(Placement.parse(token) for token in text.split(",")))

    @classmethod
    def of(cls, placements: Iterable[Placement]) -> Layout:
        return cls(tuple(placements))

    def __str__(self) -> str:
        return ",".join(str(p) for p in self.placements)

    def __iter__(self) -> Iterator[Placement]:
        return iter(self.placements)

    def __len__(self) -> int:
        return len(self.placements)


LayoutLike = Union[str, Layout, Iterable[Placement]]


def as_layout(value: LayoutLike) -> Layout:
    """Accept the text form, a :class:`Layout`, or an iterable of placements."""
    if isinstance(value, Layout):
        return value
    if isinstance(value, str):
        return Layout.parse(value)
    return Layout.of(value)
