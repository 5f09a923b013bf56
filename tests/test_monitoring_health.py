"""System health: latency, errors, request rate and the thresholds behind the status."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from nutrilearn.monitoring import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    Filters,
    HealthThresholds,
    assess_health,
    errors_by_type,
    filter_predictions,
    latency_summary,
    prepare,
    rate_frequency,
    request_rate,
    traffic,
)
from tests.test_monitoring_stats import LIVE, at, frame, pred


@pytest.fixture
def live():
    return filter_predictions(frame(LIVE))


def test_latency_summary_matches_numpy_percentiles(live):
    summary = latency_summary(live).set_index("stage")
    ok = [r for r in LIVE if r.status == "ok"]  # failed requests stop early: not counted
    for stage in ("decode", "preprocess", "inference", "total"):
        values = np.array([getattr(r, f"{stage}_ms") for r in ok])
        row = summary.loc[stage]
        assert row["count"] == len(values) == 8
        assert row["mean"] == pytest.approx(values.mean())
        for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
            assert row[name] == pytest.approx(np.percentile(values, q))


def test_errors_by_type(live):
    table = errors_by_type(live)
    assert table["error_type"].tolist() == ["model_error", "not_an_image"]  # 1 each: by name on ties
    assert table["errors"].tolist() == [1, 1]
    assert table["rate"].tolist() == pytest.approx([0.1, 0.1])
    assert table["share"].tolist() == pytest.approx([0.5, 0.5])


def test_request_rate_and_traffic():
    records = [pred(i, at(0, 8, m), "u", label="pizza", conf=0.9) for i, m in enumerate([0, 0, 0, 1, 3, 3])]
    df = filter_predictions(frame(records))
    rate = request_rate(df, "1min")
    assert rate["requests"].tolist() == [3, 1, 0, 2]  # the quiet minute is a zero, not a gap
    assert rate["per_minute"].tolist() == [3.0, 1.0, 0.0, 2.0]
    rate15 = request_rate(df, "15min")
    assert rate15["requests"].tolist() == [6] and rate15["per_minute"].tolist() == [pytest.approx(6 / 15)]
    t = traffic(df)
    assert (t.requests, t.span_minutes, t.peak_rpm) == (6, 3.0, 3)
    assert t.mean_rpm == pytest.approx(2.0) and t.peak_minute == pd.Timestamp(at(0, 8))
    assert traffic(df.iloc[:0]).requests == 0 and request_rate(df.iloc[:0]).empty


def test_rate_frequency_grows_with_the_span():
    assert rate_frequency(pd.Timedelta(hours=1)) == "1min"
    assert rate_frequency(pd.Timedelta(days=2)) == "15min"
    assert rate_frequency(pd.Timedelta(days=30)) == "1h"


def _traffic(n: int, errors: dict[str, int] | None = None, ms=(5.0, 10.0, 20.0)):
    """n requests a minute apart, the first ones failing with the given error types."""
    kinds = [k for k, c in (errors or {}).items() for _ in range(c)]
    records = []
    for i in range(n):
        when = at(0, 0) + timedelta(minutes=i)
        if i < len(kinds):
            records.append(pred(i, when, "u", status="error", error_type=kinds[i], ms=(2.0, 0, 0)))
        else:
            records.append(pred(i, when, "u", label="pizza", conf=0.9, ms=ms))
    return filter_predictions(frame(records))


T = HealthThresholds(p95_latency_ms_degraded=100, p95_latency_ms_unhealthy=400, error_rate_degraded=0.05,
                     error_rate_unhealthy=0.20, min_requests=20)


@pytest.mark.parametrize("n_errors, status", [(0, HEALTHY), (4, HEALTHY), (5, DEGRADED), (19, DEGRADED),
                                              (20, UNHEALTHY), (60, UNHEALTHY)])
def test_error_rate_thresholds_are_inclusive(n_errors, status):
    report = assess_health(_traffic(100, {"not_an_image": n_errors}), T)
    assert report.status == status
    assert report.error_rate == pytest.approx(n_errors / 100)
    if status == HEALTHY:
        assert report.problems == ()
    else:
        (problem,) = report.problems
        assert problem.check == "error_rate" and problem.severity == status
        assert problem.detail.startswith(f"error rate {n_errors / 100:.1%} ({n_errors} of 100) is at or above")
        assert "not_an_image" in problem.recommendation and "accepted formats" in problem.recommendation


def test_recommendation_covers_each_major_error_type():
    report = assess_health(_traffic(100, {"model_error": 8, "file_too_large": 3, "empty_file": 1}), T)
    rec = report.problems[0].recommendation
    assert report.status == DEGRADED
    assert "roll back" in rec and "NUTRILEARN_MAX_UPLOAD_BYTES" in rec  # 8/12 and 3/12 of errors
    assert "empty_file" not in rec  # 1/12 is under the 10% mention bar
    assert rec.index("model_error") < rec.index("file_too_large")  # biggest first


def test_few_requests_do_not_judge_the_error_rate():
    report = assess_health(_traffic(10, {"model_error": 5}), T)
    assert report.status == HEALTHY and report.problems == ()
    assert any("judged from 20" in n for n in report.notes)


@pytest.mark.parametrize("inference_ms, status", [(20.0, HEALTHY), (85.0, DEGRADED), (385.0, UNHEALTHY)])
def test_p95_latency_thresholds(inference_ms, status):
    report = assess_health(_traffic(40, ms=(5.0, 10.0, inference_ms)), T)
    assert report.status == status
    if status != HEALTHY:
        (problem,) = report.problems
        assert problem.check == "latency" and "CPU contention" in problem.recommendation
        limit = 400 if status == UNHEALTHY else 100
        assert problem.detail == f"p95 latency {limit} ms is at or above the {status} threshold {limit} ms"


def test_slow_decoding_gets_decoding_advice():
    report = assess_health(_traffic(40, ms=(300.0, 10.0, 20.0)), T)
    assert report.status == DEGRADED
    assert "Decoding dominates" in report.problems[0].recommendation


def test_worst_rule_wins():
    report = assess_health(_traffic(100, {"not_an_image": 5}, ms=(5.0, 10.0, 500.0)), T)
    assert report.status == UNHEALTHY
    assert {p.check: p.severity for p in report.problems} == {"error_rate": DEGRADED, "latency": UNHEALTHY}


def test_no_traffic_is_healthy_with_notes():
    report = assess_health(_traffic(0), T)
    assert report.status == HEALTHY and report.requests == 0 and len(report.notes) == 2


def test_thresholds_from_environment():
    env = {"NUTRILEARN_HEALTH_P95_MS_DEGRADED": "250", "NUTRILEARN_HEALTH_ERROR_RATE_UNHEALTHY": "0.3",
           "NUTRILEARN_HEALTH_MIN_REQUESTS": "50", "NUTRILEARN_HEALTH_P95_MS_UNHEALTHY": ""}
    t = HealthThresholds.from_env(env)
    assert t == HealthThresholds(p95_latency_ms_degraded=250.0, error_rate_unhealthy=0.3, min_requests=50)
    assert isinstance(t.min_requests, int)
    assert HealthThresholds.from_env({}) == HealthThresholds()
    with pytest.raises(ValueError, match="NUTRILEARN_HEALTH_MIN_REQUESTS"):
        HealthThresholds.from_env({"NUTRILEARN_HEALTH_MIN_REQUESTS": "many"})
    with pytest.raises(ValueError):
        HealthThresholds.from_env({"NUTRILEARN_HEALTH_ERROR_RATE_DEGRADED": "0.5"})  # above unhealthy 0.10


def test_errors_by_type_counts_an_untyped_error_as_unknown():
    """prepare makes error_type a category without "unknown": filling it in must not raise."""
    records = [pred(0, at(0, 8), "u", label="pizza", conf=0.9),
               pred(1, at(0, 9), "u", status="error", error_type="not_an_image"),
               pred(2, at(0, 10), "u", status="error", error_type=None),
               pred(3, at(0, 11), "u", status="error", error_type=None)]
    records.append(pred(4, at(0, 12), "other", status="error", error_type="model_error"))
    live = filter_predictions(prepare(frame(records)), Filters(users=("u",)))  # model_error: no row in view
    assert isinstance(live["error_type"].dtype, pd.CategoricalDtype)
    table = errors_by_type(live)
    assert table["error_type"].tolist() == ["unknown", "not_an_image"]
    assert table["errors"].tolist() == [2, 1]
    assert table["rate"].tolist() == pytest.approx([0.5, 0.25])
    assert table["share"].tolist() == pytest.approx([2 / 3, 1 / 3])
