"""The planner's analytic capacity against the request-level grader's (issue 17, item 1):
wherever the SLO is at least twice the batch-1 service time, analytic <= request-level and
analytic >= 0.9 x request-level, on every such cell of docs/goodput.md's calibration."""

from __future__ import annotations

import functools

import pytest

from migrator.evaluation.calibration import CalibrationRow, request_capacity, summary_markdown
from migrator.geometry.geometry import Geometry
from migrator.workload.goodput import slo_capacity
from migrator.workload.models import builtin_models

GPU = "A100-40GB"
SLOS = (25.0, 50.0, 100.0, 200.0)

# The cells the old fixed-batch model missed worst (0.09 for the language models on a 1g at
# 50 ms, 0.46 for resnet50), a cap-1 cell (M/D/1, the flattest late fraction: the noisiest
# request-level estimate) and a deep one (cap 64, the depth limit applies).
REPRESENTATIVE = [
    ("bert_base", "1g.5gb", 50.0),
    ("mpnet_base", "1g.5gb", 50.0),
    ("resnet50", "1g.5gb", 50.0),
    ("vit_b16", "2g.10gb", 25.0),
    ("minilm_l12", "7g.40gb", 200.0),
]


@functools.lru_cache(maxsize=None)
def _request_level(model: str, profile: str, slo_ms: float, n_requests: int) -> float:
    table = builtin_models()[model]
    return request_capacity(table.batch_sizes, table.inference_ms(GPU, profile), slo_ms, n_requests=n_requests)


def _covered_cells() -> list[tuple[str, str, float]]:
    geometry = Geometry.for_gpu(GPU)
    profiles = sorted(p.name for p in geometry.profiles if "+" not in p.name and "-" not in p.name)
    cells = []
    for name, table in sorted(builtin_models().items()):
        for profile in profiles:
            if table.fits(GPU, profile):
                s1 = float(table.inference_ms(GPU, profile)[0])
                cells += [(name, profile, slo) for slo in SLOS if slo >= 2 * s1]
    return cells


def assert_within_ten_per_cent_below(model: str, profile: str, slo_ms: float, n_requests: int) -> None:
    analytic = slo_capacity(model, profile, slo_ms, gpu=GPU)
    measured = _request_level(model, profile, slo_ms, n_requests)
    assert 0.9 * measured <= analytic <= measured, (model, profile, slo_ms, analytic / measured)


@pytest.mark.parametrize(("model", "profile", "slo_ms"), REPRESENTATIVE, ids=lambda v: str(v))
def test_capacity_is_within_ten_per_cent_below_the_request_level(model, profile, slo_ms):
    # 5e5 requests per rate: the estimate's spread over seeds is about 0.4 % (0.8 % at cap 1),
    # well inside the planner's 2 % margin.
    assert_within_ten_per_cent_below(model, profile, slo_ms, 500_000)


@pytest.mark.slow
def test_every_covered_calibration_cell_is_within_ten_per_cent_below():
    # 10^6 requests per rate, every covered cell of the A100-40GB table (1g.10gb and 1g.5gb
    # share their service times, so the cache measures them once).
    cells = _covered_cells()
    assert len(cells) == 142  # docs/goodput.md, section 4
    for cell in cells:
        assert_within_ten_per_cent_below(*cell, 1_000_000)


def test_cells_below_twice_the_batch1_time_are_not_covered():
    row = CalibrationRow("m", GPU, "1g.5gb", 20.0, 11.0, 5.0, 50.0, 1, 50.0, 1)
    assert not row.covered
    assert not row.meets  # 0.1 of the request level
    assert "0 of the 0 cells" in summary_markdown([row])
    ok = CalibrationRow("m", GPU, "1g.5gb", 22.0, 11.0, 48.0, 50.0, 1, 50.0, 1)
    assert ok.covered and ok.meets
    assert "1 of the 1 cells" in summary_markdown([ok])
