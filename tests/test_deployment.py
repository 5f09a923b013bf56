"""Beyond one process: two app servers share one MLflow server; an app killed -9 loses nothing.

Real processes on 127.0.0.1 only: `mlflow server`, `streamlit run app.py`, headless Chromium.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.e2e import StreamlitApp, metric_value, screenshot, upload_and_wait, wait_idle
from tests.pg_fixtures import create_database, postgres_server  # noqa: F401 (fixture)
from tests.tracking_fixtures import MlflowServer

TIMEOUT_MS = 120_000


def _monitoring_count(page, app_url: str, label: str, want: int, within_s: float = 90) -> str:
    """Refresh Monitoring until the metric reaches ``want`` (batches flush asynchronously)."""
    page.goto(app_url + "/monitoring")
    deadline = time.monotonic() + within_s
    value = ""
    while time.monotonic() < deadline:
        page.get_by_role("button", name=re.compile("Refresh")).click()
        wait_idle(page)
        if page.locator('[data-testid="stMetric"]', has_text=label).count():
            value = metric_value(page, label)
            if value.replace(",", "") == str(want):
                return value
        time.sleep(2)
    return value


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_app_processes_share_one_tracking_server(tmp_path, page, food10, backend, request):
    """The production shape: an ``mlflow server`` (sqlite, or PostgreSQL as in the README)
    and two app processes, each with its own spool and mirror."""
    if backend == "postgresql":
        base = request.getfixturevalue("postgres_server")
        store_uri = create_database(base, f"mlflow_{uuid.uuid4().hex[:10]}")
    else:
        store_uri = f"sqlite:///{tmp_path / 'server.db'}"
    server = MlflowServer(tmp_path, store_uri)
    server.start()
    env = {"MLFLOW_TRACKING_URI": server.uri}
    apps = [StreamlitApp(tmp_path / name, env, name) for name in ("app-a", "app-b")]
    try:
        for app in apps:
            app.start()
        photos = sorted((food10 / "test" / "breakfast_burrito").glob("*.jpg"))[:2]
        for app, photo in zip(apps, photos):
            assert "%" in upload_and_wait(page, app.url, photo)
        # Each process spools locally; app A sees B's prediction only through the server.
        assert _monitoring_count(page, apps[0].url, "Predictions", 2) == "2"
        screenshot(page, "monitoring-two-apps")
    finally:
        for app in apps:
            app.stop()
        server.stop()


def test_app_killed_mid_traffic_loses_no_acknowledged_prediction(tmp_path, page, food10):
    home = tmp_path / "home"
    env = {"NUTRILEARN_BATCH_MAX_AGE_S": "3600"}  # nothing flushes on its own: all in the spool
    app = StreamlitApp(home, env, "app").start()
    photos = sorted((food10 / "test" / "apple_pie").glob("*.jpg"))[:3]
    try:
        for photo in photos:
            upload_and_wait(page, app.url, photo)  # the user saw it: acknowledged
        app.stop(sig=9)
        app = StreamlitApp(home, env, "app-restarted").start()
        assert _monitoring_count(page, app.url, "Predictions", 3) == "3"
    finally:
        app.stop()
