"""``nutrilearn drift`` over logged predictions (spooled, read back by the reader), its
MLflow run, exit status and alerts; folder comparison runs on real photos."""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import pytest

from nutrilearn.cli import main
from nutrilearn.tracking.synthetic import T0, make_record


def _log(records) -> None:
    from nutrilearn.config import Settings
    from nutrilearn.tracking.logger import PredictionLogger

    logger = PredictionLogger(Settings.from_env(), start=False)  # spooled: the reader sees pending rows
    for rec in records:
        assert logger.submit(rec)
    logger.spool.close()


def _records(n: int, darker_after: int | None = None):
    out = []
    for i in range(n):
        rec = make_record(i, error=False, when=T0 + timedelta(minutes=i))
        if darker_after is not None and i >= darker_after:
            rec.brightness *= 0.6
        out.append(rec)
    return out


@pytest.fixture
def logged_drift(home):
    _log(_records(600, darker_after=300))
    return home


def test_drift_on_logged_predictions_exits_1_logs_a_run_and_alerts(logged_drift, capsys, tmp_path):
    marker = tmp_path / "alert.json"
    hook = f"{sys.executable} -c \"import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())\" {marker}"
    code = main(["drift", "--reference", "first:300", "--current", "last:300", "--json", "--on-drift", hook,
                 "--every", "100"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["verdict"] == "drift" and "image" in out["drifted_signals"]
    assert out["reference"]["n"] == 300 and out["current"]["n"] == 300
    assert len(out["over_time"]) == 3 * 4  # three chunks of 100, four signals each
    perf = out["performance"]["current"]
    assert perf["n"] == 300 and 0 < perf["expected_accuracy"] < 1 and perf["labelled"] == 0
    alert = json.loads(marker.read_text())
    assert alert["run_id"] == out["run_id"] and alert["severity"] == out["severity"]

    from nutrilearn.config import Settings
    from nutrilearn.monitoring.drift_runs import EXPERIMENT, drift_history
    from nutrilearn.tracking import store

    settings = Settings.from_env()
    run = store.make_client(settings.tracking_uri).get_run(out["run_id"])
    assert run.data.tags["verdict"] == "drift" and run.data.params["reference.spec"] == "first:300"
    assert run.data.metrics["image.brightness.p_value"] < 0.05
    assert run.data.metrics["performance.current.expected_accuracy"] == pytest.approx(perf["expected_accuracy"])
    exp = store.make_client(settings.tracking_uri).get_experiment_by_name(EXPERIMENT)
    assert exp.artifact_location == settings.artifact_root.resolve().as_uri()
    history = drift_history(settings)
    assert list(history["run_id"]) == [out["run_id"]]


def test_no_drift_exits_0_and_fires_no_alert(home, capsys, tmp_path):
    _log(_records(400))
    marker = tmp_path / "alert"
    code = main(["drift", "--reference", "first:200", "--current", "last:200", "--no-log",
                 "--on-drift", f"touch {marker}"])
    text = capsys.readouterr().out
    assert code == 0 and text.startswith("NO DRIFT") and not marker.exists()
    assert "accuracy: reference" in text and "estimated" in text


def test_bad_windows_and_empty_stores_exit_2_with_a_reason(home, capsys):
    assert main(["drift", "--reference", "yesterday"]) == 2
    assert "last:N" in capsys.readouterr().err
    assert main(["drift", "--no-log"]) == 2
    assert "no successful predictions" in capsys.readouterr().err
    assert main(["drift", "--webhook", "file:///etc/passwd"]) == 2


@pytest.mark.food10
@pytest.mark.slow
def test_folders_of_different_foods_drift(home, food10, classifier, monkeypatch, capsys):
    monkeypatch.setattr("nutrilearn.serving.load_classifier", lambda settings: classifier)  # built once a session
    ref, cur = food10 / "test" / "bibimbap", food10 / "test" / "beignets"
    code = main(["drift", "--reference-dir", str(ref), "--current-dir", str(cur), "--json", "--no-log"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and {"food", "embedding"} <= set(out["drifted_signals"])
    assert out["reference"]["spec"] == f"dir:{ref}" and out["current"]["n"] == 50


def test_webhook_receives_the_json_report():
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from nutrilearn.cli.drift import alert

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append((self.headers["Content-Type"], json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    payload = {"verdict": "drift", "severity": "high", "drifted_signals": ["image"]}
    alert(payload, f"http://127.0.0.1:{server.server_port}/hook", None)
    thread.join(5)
    server.server_close()
    assert received == [("application/json", payload)]
