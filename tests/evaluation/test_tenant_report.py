"""Per-tenant reporting (issue 17, item 4): each tenant's Goodput, SLO attainment and accuracy
add up to the aggregate, the worst tenant's SLO attainment is reported, and means over seeds
carry 95 % Student-t confidence intervals computed as by hand."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scenarios import small

from migrator.cli import main
from migrator.errors import ConfigError
from migrator.evaluation.comparison import GRADING_METRICS, METRICS, compare
from migrator.evaluation.requests import GRADERS
from migrator.evaluation.simulate import tenant_figures
from migrator.evaluation.stats import mean_ci, t_quantile_975
from migrator.workload.goodput import ScoreResult


@pytest.fixture(scope="module")
def comparison():
    return compare(small(duration_s=8), "static,paris", seeds=[1, 2, 3], decision_latency_s=0.2)


def test_per_tenant_figures_add_up_to_every_runs_aggregate(comparison):
    for runs in comparison.runs.values():
        for run in runs:
            for grader in GRADERS:
                score = run.gradings[grader]
                tenants = run.tenant_summary(grader)
                arrived = np.array([t["arrived"] for t in tenants.values()])
                within = np.array([t["within"] for t in tenants.values()])
                assert sum(t["goodput"] for t in tenants.values()) == pytest.approx(score.goodput)
                slo = np.array([t["slo_attainment"] for t in tenants.values()])
                accuracy = np.array([t["mean_accuracy"] for t in tenants.values()])
                assert (slo * arrived).sum() / arrived.sum() == pytest.approx(score.slo_attainment)
                assert (accuracy * within).sum() / within.sum() == pytest.approx(score.mean_accuracy)
                assert run.grading_summary()[grader]["worst_slo_attainment"] == min(slo)
            assert run.summary()["worst_slo_attainment"] == min(
                t["slo_attainment"] for t in run.tenant_summary().values())


def test_results_json_gives_each_tenant_and_the_worst(comparison):
    document = json.loads(comparison.to_json())
    for entry in document["policies"].values():
        tenants = entry["tenants"]
        assert set(tenants) == {"a", "b"}
        # Means over seeds are linear: the tenants' mean Goodputs add up to the policy's.
        assert sum(t["goodput"] for t in tenants.values()) == pytest.approx(entry["goodput"])
        per_seed_worst = [r["worst_slo_attainment"] for r in entry["per_seed"]]
        assert entry["worst_slo_attainment"] == pytest.approx(np.mean(per_seed_worst))
        assert entry["worst_tenant"] == min(tenants, key=lambda t: tenants[t]["slo_attainment"])
        for grader in GRADERS:
            graded = entry["gradings"][grader]
            assert sum(t["goodput"] for t in graded["tenants"].values()) == pytest.approx(graded["goodput"])
            assert "worst_slo_attainment" in graded and set(graded["ci95"]) >= set(GRADING_METRICS)
    assert "Student t" in document["interval"]


def test_the_intervals_are_student_t_as_by_hand(comparison):
    document = json.loads(comparison.to_json())
    entry = document["policies"]["paris"]
    goodputs = [r["goodput"] for r in entry["per_seed"]]
    mean = sum(goodputs) / 3
    s = math.sqrt(sum((g - mean) ** 2 for g in goodputs) / 2)
    assert entry["ci95"]["goodput"] == pytest.approx(4.302652730 * s / math.sqrt(3))
    a = [run.tenant_summary()["a"]["slo_attainment"] for run in comparison.runs["paris"]]
    mean_a = sum(a) / 3
    s_a = math.sqrt(sum((x - mean_a) ** 2 for x in a) / 2)
    assert entry["tenants"]["a"]["ci95"]["slo_attainment"] == pytest.approx(4.302652730 * s_a / math.sqrt(3))


def test_mean_ci_by_hand():
    # 1, 2, 3, 4: mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182446305.
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half == pytest.approx(3.182446305 * math.sqrt(5 / 3) / 2)
    assert mean_ci([7.0]) == (7.0, None)
    assert mean_ci([3.0, 3.0, 3.0]) == (3.0, 0.0)
    with pytest.raises(ConfigError, match="at least one value"):
        mean_ci([])


def _t_cdf(x: float, df: int) -> float:
    """Student's t CDF by Simpson's rule on its density (an independent check of the table)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    grid = np.linspace(0.0, x, 20001)
    density = c * (1 + grid**2 / df) ** (-(df + 1) / 2)
    h = grid[1] - grid[0]
    integral = h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    return 0.5 + integral


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 10, 29, 30, 31, 32, 45, 100, 999])
def test_the_t_quantile_is_where_the_t_distribution_reaches_0_975(df):
    assert _t_cdf(t_quantile_975(df), df) == pytest.approx(0.975, abs=1e-8)


def test_the_t_quantile_matches_scipy_where_it_is_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 400):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-7)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_a_bad_df_is_an_error(bad):
    with pytest.raises(ConfigError, match="df must be an integer >= 1"):
        t_quantile_975(bad)


def test_a_tenant_with_no_arrivals_attains_its_slo_and_one_never_served_has_no_accuracy():
    zero = np.zeros((2, 3))
    arrived = np.array([[0.0, 0, 0], [5, 5, 5]])
    score = ScoreResult(("idle", "starved"), arrived, zero, zero, arrived, np.full((2, 3), 0.8),
                        np.zeros((2, 3), dtype=np.bool_))
    figures = tenant_figures(score)
    assert figures["idle"]["slo_attainment"] == 1.0 and figures["starved"]["slo_attainment"] == 0.0
    assert figures["starved"]["mean_accuracy"] == 0.0 and figures["starved"]["arrived"] == 15


def test_results_csv_keeps_its_columns_and_appends_the_new_ones(comparison):
    rows = list(csv.reader(io.StringIO(comparison.to_csv())))
    header = rows[0]
    old = ["policy", *METRICS, *(f"{m}_std" for m in METRICS), "seeds", "grader",
           *(f"{m}_{g}" for g in GRADERS for m in GRADING_METRICS)]
    assert header[: len(old)] == old
    assert {"worst_slo_attainment", "goodput_ci95", "worst_slo_attainment_request"} <= set(header[len(old):])
    by_name = dict(zip(header, rows[2]))
    assert float(by_name["goodput_ci95"]) == pytest.approx(comparison.intervals()["paris"]["goodput"])


def test_the_markdown_tables_have_every_policy_and_tenant(comparison, tmp_path):
    path = comparison.write_markdown(tmp_path)
    text = path.read_text()
    assert "95 % CI (Student t)" in text and "worst tenant's SLO attainment" in text
    for name in ("static", "paris"):
        for tenant in ("a", "b"):
            assert f"| {name} | {tenant} |" in text


def test_simulate_prints_the_tenants_and_intervals(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small(duration_s=4).to_dict()))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["simulate", str(path), "--policies", "migrator,static", "--seeds", "2",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "per tenant" in result.output and "95 % CI (Student t)" in result.output
    assert "migrator vs static:" in result.output and "(95 % CI, Student t, 2 seeds)" in result.output
    assert (out / "results.md").exists()
