"""Enumerating every layout: the C++ core against the pure-Python reference, per GPU.

Each benchmark asserts that its result equals the other method's, so a fast wrong answer
fails. Smoke mode: ``pytest benchmarks --benchmark-disable``; timings:
``pytest benchmarks --benchmark-only --benchmark-json=bench.json``.
"""

from __future__ import annotations

import pytest

import migrator
from migrator import Geometry
from migrator.geometry import catalog
from reference import Reference

# One benchmark group per GPU, so each table compares the two methods on one geometry.
GPUS = [
    pytest.param(gpu, id=gpu, marks=pytest.mark.benchmark(group=f"enumerate-{gpu}"))
    for gpu in migrator.known_gpus()
]


def reference_of(gpu: str) -> Reference:
    return Reference(catalog.load_table(gpu))


# The reference runs first (file order), so the C++ benchmark can carry the ratio.
@pytest.mark.parametrize("gpu", GPUS)
def test_enumerate_reference(benchmark, timings, gpu: str) -> None:
    layouts = benchmark(reference_of(gpu).layouts)
    assert layouts == set(Geometry.for_gpu(gpu).layouts())
    timings.record(f"enumerate {gpu}", "reference", benchmark)


@pytest.mark.parametrize("gpu", GPUS)
def test_enumerate_cpp(benchmark, timings, gpu: str) -> None:
    layouts = benchmark(Geometry.for_gpu(gpu).layouts)
    assert len(layouts) == len(set(layouts)), "a layout is listed twice"
    assert set(layouts) == reference_of(gpu).layouts()
    timings.record(f"enumerate {gpu}", "fast", benchmark)
