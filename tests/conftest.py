"""Shared fixtures: one parameter per built-in GPU, so a table added to ``data/gpus``
is covered by every cross-check without touching the tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import migrator
from migrator.geometry import catalog

# --import-mode=importlib puts no test folder on sys.path; the helpers beside this file
# (reference.py, nvml_replay.py) are plain modules the tests import by name.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from reference import Reference, canonical  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"

# Property tests run against every GPU; a moderate budget keeps the suite fast on 2 cores,
# and no deadline because the first call on a fresh GPU builds its caches.
settings.register_profile("migrator", max_examples=100, deadline=None)
settings.load_profile("migrator")


@pytest.fixture(scope="session", params=migrator.known_gpus(), ids=str)
def gpu(request: pytest.FixtureRequest) -> str:
    """Key of one built-in GPU table (``"H100-80GB"``, …)."""
    return request.param


@pytest.fixture(scope="session")
def geometry(gpu: str) -> migrator.Geometry:
    """The built-in geometry of ``gpu`` (C++ core behind it)."""
    return migrator.Geometry.for_gpu(gpu)


@pytest.fixture(scope="session")
def reference(gpu: str) -> Reference:
    """The pure-Python reference of ``gpu``, built from the raw table."""
    return Reference(catalog.load_table(gpu))


@pytest.fixture(scope="session")
def reference_layouts(reference: Reference) -> list[tuple[tuple[str, int], ...]]:
    """Every valid layout of ``gpu`` per the reference, in a stable order for sampling."""
    return sorted(reference.valid_layouts(), key=canonical)


@pytest.fixture(scope="session")
def h100() -> migrator.Geometry:
    """The GPU whose table was checked against a real device (tests/data)."""
    return migrator.Geometry.for_gpu("H100-80GB")


@pytest.fixture
def toy_table() -> dict[str, Any]:
    """A small hand-made table that can break the compute and media-engine rules, which
    no built-in GPU can (its profile counts stop first). A fresh copy per test."""
    return {
        "name": "TOY-4",
        "memory_slices": 4,
        "compute_slices": 3,
        "engines": {"decoders": 4, "encoders": 0, "jpegs": 1, "ofas": 0},
        "profiles": [
            {
                "name": "1g.a",
                "compute_slices": 1,
                "memory_slices": 1,
                "memory_mib": 1024,
                "max_count": 4,
                "placements": [[0, 1], [1, 1], [2, 1], [3, 1]],
                "engines": {"decoders": 1},
            },
            {
                "name": "1g.a+me",
                "aliases": ["1g.a-media"],
                "compute_slices": 1,
                "memory_slices": 1,
                "memory_mib": 1024,
                "max_count": 2,
                "placements": [[0, 1], [1, 1], [2, 1], [3, 1]],
                "engines": {"decoders": 1, "jpegs": 1},
            },
            {
                "name": "2g.b",
                "compute_slices": 2,
                "memory_slices": 2,
                "memory_mib": 2048,
                "max_count": 2,
                "placements": [[0, 2], [2, 2]],
                "engines": {"decoders": 2},
            },
        ],
    }


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
