"""Drift drill-down on real photos (food10): clustering both windows' embeddings finds the
kind of photo that came in, ranks it first, and names its foods and examples; the drift
CLI's JSON carries the clusters. Predictions are cached like test_drift_proof's pool."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from nutrilearn.monitoring import scenarios
from nutrilearn.monitoring.clusters import ClusterDrift, choose_k, cluster_drift

pytestmark = [pytest.mark.food10]

OTHER_FOOD = "baby_back_ribs"  # the "other food": looks unlike the other nine in embedding space


@pytest.fixture(scope="module")
def pool(request, tmp_path_factory, food10, classifier, models_dir) -> pd.DataFrame:
    """Predictions for all 1,500 food10 photos (true label beside), cached across runs."""
    from nutrilearn.config import Settings
    from nutrilearn.serving import build_analyzer

    analyzer = build_analyzer(Settings.from_env(), classifier)
    cache = (request.config.cache.mkdir("nutrilearn-drift") if getattr(request.config, "cache", None)
             else tmp_path_factory.mktemp("nutrilearn-drift"))
    model_file = next(iter(sorted(models_dir.glob("*.keras"))), None)
    frame = scenarios.predict_files(analyzer, scenarios.labelled_files(food10), cache_dir=cache, model_file=model_file)
    assert len(frame) == 1500 and (frame["status"] == "ok").all()
    return frame


def _other_food_windows(pool: pd.DataFrame, seed: int, n: int = 150):
    classes = sorted(pool["true_label"].unique())
    return scenarios.class_split(pool, n, [c for c in classes if c != OTHER_FOOD], np.random.default_rng(seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_window_of_another_food_puts_its_cluster_first(pool, seed):
    reference, current = _other_food_windows(pool, seed)
    report = ClusterDrift(seed=0).fit(reference).compare(current)
    first = report.clusters[0]
    truth = pool.set_index("request_id")["true_label"]
    assert first.change >= 0.3, [round(c.change, 2) for c in report.clusters]
    assert first.current_share > first.reference_share  # it grew: the new kind of photo
    new_members = [r for r in first.members if r in set(current["request_id"])]
    assert (truth.loc[new_members] == OTHER_FOOD).mean() >= 0.9  # and it is the other food
    ribs_said = current["label"].value_counts().index[:3].tolist()
    assert first.top_foods and set(first.top_foods) & set(ribs_said)  # foods the model named in it
    assert first.examples and set(first.examples) <= set(first.members)
    assert all(truth.loc[r] == OTHER_FOOD for r in first.examples[:3])  # the new photos come first
    changes = [abs(c.change) for c in report.clusters]
    assert changes == sorted(changes, reverse=True)
    assert sum(c.reference_share for c in report.clusters) == pytest.approx(1.0)
    assert sum(c.current_share for c in report.clusters) == pytest.approx(1.0)


def test_no_shift_moves_no_cluster_much_and_is_repeatable(pool):
    reference, current = scenarios.null_split(pool, 200, np.random.default_rng(5))
    one, two = cluster_drift(reference, current, seed=3), cluster_drift(reference, current, seed=3)
    assert abs(one.clusters[0].change) < 0.12, [round(c.change, 2) for c in one.clusters]
    assert one.to_list() == two.to_list()  # seeded: the same clusters every time
    assert one.k == choose_k(400) == 4 and set(one.points["window"]) == {"reference", "current"}


def test_k_follows_the_data_within_bounds():
    assert choose_k(50) == 4 and choose_k(1000) == 10 and choose_k(5000) == 12 and choose_k(3) == 3


def _log_pool_rows(rows: pd.DataFrame, start) -> None:
    from nutrilearn.config import Settings
    from nutrilearn.tracking.logger import PredictionLogger
    from nutrilearn.tracking.records import PREDICTION_FIELDS, PredictionRecord

    logger = PredictionLogger(Settings.from_env(), start=False)  # spooled: the reader sees pending rows
    for i, row in enumerate(rows.to_dict("records")):
        fields = {k: row[k] for k in PREDICTION_FIELDS if k in row}  # the cache may predate new fields
        fields.update(timestamp=start + timedelta(minutes=i), top5_labels=list(row["top5_labels"]),
                      top5_probs=[float(p) for p in row["top5_probs"]])
        assert logger.submit(PredictionRecord(**fields))
    logger.spool.close()


def test_drift_json_lists_clusters_sorted_by_share_change(pool, home, capsys):
    from nutrilearn.cli import main
    from nutrilearn.tracking.synthetic import T0

    reference, current = _other_food_windows(pool, 0, n=120)
    _log_pool_rows(pd.concat([reference, current]), T0)
    code = main(["drift", "--reference", "first:120", "--current", "last:120", "--json", "--no-log"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and "embedding" in out["drifted_signals"]
    clusters = out["clusters"]
    assert clusters and {"id", "reference_share", "current_share", "top_foods", "examples"} <= set(clusters[0])
    changes = [abs(c["current_share"] - c["reference_share"]) for c in clusters]
    assert changes == sorted(changes, reverse=True) and changes[0] >= 0.3
    assert set(clusters[0]["examples"]) <= set(current["request_id"]) | set(reference["request_id"])
    assert all(isinstance(f, str) for c in clusters for f in c["top_foods"])
    code = main(["drift", "--reference", "first:120", "--current", "last:120", "--no-log"])
    text = capsys.readouterr().out
    assert "photo clusters that moved most" in text and f"cluster {clusters[0]['id']}:" in text
