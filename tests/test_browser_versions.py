"""Issue 11 in a real browser: after a vocabulary-changing promotion with a challenger in
shadow, the pages say which model said what (headless Chromium, the scenario's store)."""

from __future__ import annotations

import re

import pytest

from tests.e2e import StreamlitApp, screenshot, wait_idle
from tests.issue11_store import TOKEN

TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def app(issue11_store):
    server = StreamlitApp(issue11_store["home"], env={"NUTRILEARN_ADMIN_TOKEN": TOKEN}, name="issue11-app").start()
    yield server
    server.stop()


@pytest.fixture
def page(browser, app):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def _open(page, app, title: str) -> None:
    """Open a page the way people do: the app, then its entry in the sidebar's navigation."""
    page.goto(app.url)
    page.get_by_text("No photos yet").wait_for()
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=re.compile(title)).first.wait_for()


def _sidebar_has_tracking(page) -> None:
    """The sidebar's tracking block is on every page (drawn after the page's own content)."""
    page.locator('[data-testid="stSidebar"]').get_by_text(re.compile(r"^Tracking")).first.wait_for()


@pytest.mark.food10
def test_analyze_names_the_version_and_shows_the_challenger(page, app, issue11_store, food10):
    photo = sorted((food10 / "test" / "beignets").glob("*.jpg"))[0]
    page.goto(app.url)
    page.get_by_text("No photos yet").wait_for()
    page.get_by_text(re.compile(r"this model knows 10 foods")).wait_for()
    page.locator("input[type=file]").set_input_files(str(photo))
    page.get_by_text(re.compile(r"Challenger \(model version 1\) (agrees|disagrees)")).wait_for()
    wait_idle(page)
    _sidebar_has_tracking(page)
    screenshot(page, "issue11-analyze")


@pytest.mark.food10
def test_models_page_shows_the_vocabulary_difference(page, app, issue11_store):
    _open(page, app, "Models")
    page.get_by_text(re.compile(r"The label sets differ")).wait_for()
    wait_idle(page)
    body = page.locator("body").inner_text()
    assert f"version {issue11_store['v2']} knows 10 foods, version 1 knows 46" in body
    assert "coverage" in body.lower()
    assert page.locator('[data-testid="stException"]').count() == 0
    _sidebar_has_tracking(page)
    screenshot(page, "issue11-models")


@pytest.mark.food10
def test_monitoring_counts_served_answers_and_marks_the_disagreement(page, app, issue11_store):
    _open(page, app, "Monitoring")
    page.locator('[data-testid="stSidebar"]').get_by_text("Hide replayed traffic").click()  # the scenario's traffic is replayed
    page.get_by_text(re.compile(r"challenger answers not counted")).wait_for()
    page.get_by_role("tab", name="Trends").click()
    # the scenario's shadow answers (and any photo the Analyze test added)
    page.get_by_text(re.compile(r"of \d+ photos .* got a different answer")).wait_for()
    wait_idle(page)
    _sidebar_has_tracking(page)
    screenshot(page, "issue11-monitoring-trends")


@pytest.mark.food10
def test_drift_page_leads_with_the_model_change(page, app, issue11_store):
    _open(page, app, "Drift")
    # the defaults ask for more than the log holds, and say so
    page.get_by_text(re.compile(r"first 500: \d+ found")).first.wait_for()
    screenshot(page, "issue11-drift-asked-vs-found")
    for label, value in (("N (reference)", "60"), ("N (current)", "100")):
        box = page.get_by_label(label)
        box.fill(value)
        box.press("Enter")
        wait_idle(page)
    page.get_by_text(re.compile(r"The model changed")).first.wait_for()
    wait_idle(page)
    body = page.locator("body").inner_text()
    assert "first 60: 60 found" in body and "last 100: 100 found" in body
    assert "different mix of foods" not in body
    _sidebar_has_tracking(page)
    screenshot(page, "issue11-drift")
