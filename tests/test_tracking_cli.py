"""``nutrilearn export-predictions`` / ``flush-predictions`` and predict's final flush (in-process)."""

from __future__ import annotations

import base64
import json

import pandas as pd
import pytest

from nutrilearn.cli import main
from nutrilearn.cli.tracking import final_flush
from tracking_fixtures import free_port, make_feedback, make_record

# Fixtures (mlflow_db, tracking, loggers) as a plugin: one session store shared by every module.
pytest_plugins = ["tracking_fixtures"]


@pytest.fixture
def logged(tracking, loggers):
    logger = loggers(tracking, batch_max_records=4, start=False)
    recs = [make_record(i, model_version="2" if i % 2 else "1", source="replay" if i == 5 else "cli")
            for i in range(10)]
    for rec in recs[:8]:
        logger.submit(rec)
    logger.submit_feedback(make_feedback(recs[0], label="bagel"))
    assert logger.flush(timeout=60)
    for rec in recs[8:]:  # still in the spool: exported too, unless --no-pending
        logger.submit(rec)
    return recs


def test_export_parquet_round_trip(tracking, logged, tmp_path, capsys):
    out = tmp_path / "preds.parquet"
    assert main(["export-predictions", "-o", str(out)]) == 0
    df = pd.read_parquet(out)
    assert len(df) == 10 and set(df["request_id"]) == {r.request_id for r in logged}
    assert str(df["timestamp"].dtype) == "datetime64[us, UTC]"
    assert "wrote 10 prediction(s)" in capsys.readouterr().err
    assert main(["export-predictions", "-o", str(out), "--no-pending"]) == 0
    assert len(pd.read_parquet(out)) == 8


def test_export_csv_and_json_with_filters(tracking, logged, tmp_path):
    csv = tmp_path / "v2.csv"
    assert main(["export-predictions", "--format", "csv", "-o", str(csv), "--model-version", "2",
                 "--exclude-replayed", "--since", "2026-11-27T09:00:02"]) == 0
    df = pd.read_csv(csv)
    expected = {r.request_id for i, r in enumerate(logged) if i % 2 and i != 5 and i >= 2}
    assert set(df["request_id"]) == expected
    ok = df[df["status"] == "ok"].iloc[0]
    assert len(json.loads(ok["top5_labels"])) == 5 and len(base64.b64decode(ok["embedding"])) == 256
    js = tmp_path / "u.json"
    assert main(["export-predictions", "-o", str(js), "--user", "analyst1", "--until", "2026-11-27 09:00:05"]) == 0
    rows = [json.loads(line) for line in js.read_text().splitlines()]
    assert {r["request_id"] for r in rows} == {logged[1].request_id, logged[4].request_id}
    assert all(r["timestamp"].endswith("Z") for r in rows)


def test_export_feedback_and_bad_time(tracking, logged, tmp_path, capsys):
    out = tmp_path / "fb.csv"
    assert main(["export-predictions", "--feedback", "-o", str(out)]) == 0
    fb = pd.read_csv(out)
    assert list(fb["label"]) == ["bagel"] and list(fb["kind"]) == ["corrected"]
    assert main(["export-predictions", "-o", str(out), "--since", "yesterday-ish"]) == 2
    assert "not a time" in capsys.readouterr().err


def test_flush_predictions_sends_the_spool(tracking, logged, capsys):
    assert main(["flush-predictions", "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    assert "sent: 2 record(s); waiting: 0" in out


def test_final_flush_says_where_records_wait_when_mlflow_is_down(tracking, loggers, capsys):
    logger = loggers(tracking, tracking_uri=f"http://127.0.0.1:{free_port()}")
    logger.submit(make_record(0))
    assert final_flush(logger, timeout=5) == (False, [])
    err = capsys.readouterr().err
    assert "unreachable" in err and "1 prediction record(s) are safe in the spool" in err
    assert "nutrilearn flush-predictions" in err


def test_status_lines_never_show_a_tracking_password():
    from nutrilearn.tracking.store import display_uri

    assert display_uri("http://alice:s3cret@tracking:5000") == "http://alice:***@tracking:5000"
    assert "s3cret" not in display_uri("postgresql://mlflow:s3cret@db-host/mlflow")
    assert display_uri("sqlite:////srv/mlruns/mlflow.db") == "sqlite:////srv/mlruns/mlflow.db"
