"""A person's view: the app in headless Chromium (Playwright), real photos, real servers."""

from __future__ import annotations

import re

import pytest

from tests.e2e import StreamlitApp, screenshot, wait_idle

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    server = StreamlitApp(tmp_path_factory.mktemp("browser-home")).start()
    yield server
    server.stop()


def _open_analyze(page, app) -> None:
    page.goto(app.url)
    page.get_by_text("No photos yet").wait_for()  # the first run is complete: widgets are live


def test_upload_a_photo_and_see_it_on_monitoring(page, app, food10):
    photo = sorted((food10 / "test" / "breakfast_burrito").glob("*.jpg"))[0]
    _open_analyze(page, app)
    page.locator("input[type=file]").set_input_files(str(photo))
    page.get_by_role("heading", name=re.compile(r"Burrito")).wait_for()  # sure ("Burrito — 62%") or not
    page.get_by_text("Energy").first.wait_for()
    screenshot(page, "analyze")

    page.goto(app.url + "/monitoring")
    page.get_by_role("heading", name=re.compile("Monitoring")).wait_for()
    page.get_by_role("button", name=re.compile("Refresh")).click()
    metric = page.locator('[data-testid="stMetric"]', has_text="Predictions").first
    metric.wait_for()
    assert re.search(r"Predictions\s*[1-9]", metric.inner_text())
    screenshot(page, "monitoring")


def test_a_text_file_gets_a_clear_error_and_the_app_stays_up(page, app, tmp_path):
    bogus = tmp_path / "shopping-list.txt"
    bogus.write_text("eggs, milk, bread\n")
    _open_analyze(page, app)
    page.locator("input[type=file]").set_input_files(str(bogus))
    page.get_by_text(re.compile("Could not use this file. .*not a photo we can read")).wait_for()
    screenshot(page, "analyze-error")
    assert app.healthy()
    page.reload()
    page.get_by_text("No photos yet").wait_for()


@pytest.mark.parametrize("path, heading", [("meals", "Meals"), ("drift", "Drift"), ("models", "Models"), ("photos", "Photos")])
def test_every_page_opens(page, app, path, heading):
    page.goto(f"{app.url}/{path}")
    page.get_by_role("heading", name=re.compile(heading)).first.wait_for()
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, path)
