"""Issue 11 in a real browser: after a vocabulary-changing promotion with a challenger in
shadow, the pages say which model said what (headless Chromium, the scenario's store)."""

from __future__ import annotations

import re

import pytest

from tests.e2e import app_fixture, metric_value, open_page, screenshot, wait_idle
from tests.issue11_store import TOKEN

TIMEOUT_MS = 180_000


app = app_fixture("issue11_store", "issue11-app", env={"NUTRILEARN_ADMIN_TOKEN": TOKEN})


def _finished(page, name: str) -> str:
    """The page ran to the end without an exception, with the sidebar's tracking block (on
    every page, drawn after the page's own content); screenshot ``name``; the page's text."""
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.locator('[data-testid="stSidebar"]').get_by_text(re.compile(r"^Tracking")).first.wait_for()
    screenshot(page, name)
    return page.locator("body").inner_text()


@pytest.mark.food10
def test_analyze_names_the_version_and_shows_the_challenger(page, app, issue11_store, food10):
    photo = sorted((food10 / "test" / "beignets").glob("*.jpg"))[0]
    page.goto(app.url)
    page.get_by_text("No photos yet").wait_for()
    page.get_by_text(re.compile(r"this model knows 10 foods")).wait_for()
    page.locator("input[type=file]").set_input_files(str(photo))
    page.get_by_text(re.compile(r"Challenger \(model version 1\) (agrees|disagrees)")).wait_for()
    _finished(page, "issue11-analyze")


@pytest.mark.food10
def test_models_page_shows_the_vocabulary_difference(page, app, issue11_store):
    open_page(page, app, "Models")
    page.get_by_text(re.compile(r"The label sets differ")).wait_for()
    body = _finished(page, "issue11-models")
    assert f"version {issue11_store['v2']} knows 10 foods, version 1 knows 46" in body
    assert "coverage" in body.lower()


@pytest.mark.food10
def test_monitoring_counts_served_answers_and_marks_the_disagreement(page, app, issue11_store):
    open_page(page, app, "Monitoring")
    page.locator('[data-testid="stSidebar"]').get_by_text("Hide replayed traffic").click()  # the scenario's traffic is replayed
    # Wait for the rerun that shows replayed traffic: "challenger answers not counted" is
    # there before it too (the Analyze test's upload has a shadow answer), and a screenshot
    # taken then showed the live view's "Predictions with feedback 0".
    page.get_by_text(re.compile(r"\d+ replayed · served answers only \(\d+ challenger answers not counted\)")).wait_for()
    wait_idle(page)
    page.get_by_role("tab", name="Trends").click()
    # the scenario's shadow answers (and any photo the Analyze test added)
    page.get_by_text(re.compile(r"of \d+ photos .* got a different answer")).wait_for()
    assert metric_value(page, "Predictions with feedback") == f"{_served_feedback(issue11_store):,}"
    _finished(page, "issue11-monitoring-trends")


@pytest.mark.food10
def test_drift_page_leads_with_the_model_change(page, app, issue11_store):
    open_page(page, app, "Drift")
    # the defaults ask for more than the log holds, and say so
    page.get_by_text(re.compile(r"first 500: \d+ found")).first.wait_for()
    screenshot(page, "issue11-drift-asked-vs-found")
    for label, value in (("N (reference)", "60"), ("N (current)", "100")):
        box = page.get_by_label(label)
        box.fill(value)
        box.press("Enter")
        wait_idle(page)
    page.get_by_text(re.compile(r"The model changed")).first.wait_for()
    body = _finished(page, "issue11-drift")
    assert "first 60: 60 found" in body and "last 100: 100 found" in body
    assert "different mix of foods" not in body
    # "Over time" marks the promotion (the registry's alias history) in every signal's row
    page.get_by_role("tab", name="Over time").click()
    page.get_by_text(re.compile(r"Dashed lines: champion moves")).wait_for()
    _finished(page, "issue11-drift-over-time")


def _served_feedback(store) -> int:
    """Served answers of the last 7 days (Monitoring's default range) that feedback judged, in the store."""
    import pandas as pd

    from nutrilearn.tracking.reader import PredictionReader

    reader = PredictionReader(store["settings"])
    try:
        since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=7)
        served = reader.predictions(start=since, columns=("request_id",))
        served = served[~served["request_id"].str.endswith(".challenger")]
        judged = reader.feedback()["request_id"]
    finally:
        reader.close()
    return int(served["request_id"].isin(set(judged)).sum())


@pytest.mark.food10
def test_photos_page_shows_real_thumbnails_and_opens_a_disagreement(page, app, issue11_store):
    """Issue 14: the Photos page over the scenario's replayed food10 traffic (version 1 in
    shadow): real thumbnails decoded by the browser, and a disagreement's record."""
    page.set_viewport_size({"width": 1400, "height": 2200})  # the grid in one screenshot (the app scrolls inside)
    open_page(page, app, "Photos")
    page.locator('[data-testid="stSidebar"]').get_by_text("Hide replayed traffic").click()
    wait_idle(page)
    page.get_by_role("tab", name="Least confident").wait_for()
    images = page.locator('[data-testid="stImage"] img')
    images.first.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                           ".every(i => i.complete)")
    sizes = page.evaluate("() => [...document.querySelectorAll('[data-testid=stImage] img')]"
                          ".map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) >= 24, sizes  # four galleries of real photos
    assert all(0 < w <= 128 and 0 < h <= 128 and max(w, h) == 128 for w, h in sizes), sizes
    page.get_by_role("tab", name="Champion vs challenger").click()
    panel = page.locator('[role="tabpanel"]:visible')
    panel.get_by_text(re.compile(r"^v\d+: .* · v1: ")).first.wait_for()
    screenshot(page, "issue14-photos-disagreements")
    panel.get_by_role("button", name="Record").first.click()
    try:
        dialog = page.get_by_role("dialog")
        dialog.locator("p", has_text=re.compile(r"^Record [0-9a-f]{32}$")).first.wait_for()
        dialog.get_by_text("challenger answer", exact=True).first.wait_for()
        wait_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        screenshot(page, "issue14-photos-record")
