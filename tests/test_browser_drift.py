"""The Drift page in headless Chromium over real predictions: its tabs are lazy (only the
open one runs), so what a person sees when they click a tab is checked here."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e import StreamlitApp, open_page, screenshot, wait_idle

PHOTOS = 160  # real food10 photos predicted into the app's store (first 80 vs the rest)


@pytest.fixture(scope="module")
def drift_app(tmp_path_factory, food10):
    home = tmp_path_factory.mktemp("browser-drift-home")
    server = StreamlitApp(home, name="drift-app")
    photos = sorted((food10 / "test").rglob("*.jpg"))[:PHOTOS]
    cli = [sys.executable, "-c", "import sys; from nutrilearn.cli import main; sys.exit(main())"]
    subprocess.run([*cli, "predict", "--flush-timeout", "60", *map(str, photos)], env=server.env, check=True,
                   capture_output=True, timeout=600)
    server.start()
    yield server
    server.stop()


def _set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def _drawn(page) -> None:
    """The open tab's chart and the signals table are drawn (not only mounted)."""
    page.locator('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg').first.wait_for()
    page.locator('[data-testid="stDataFrame"] canvas').first.wait_for()
    page.wait_for_timeout(500)  # the last layout pass


def test_drift_tabs_draw_what_they_show_when_opened(page, drift_app):
    open_page(page, drift_app, "Drift")
    _set_number(page, "N (reference)", PHOTOS // 2)
    _set_number(page, "N (current)", PHOTOS // 2)
    page.get_by_text(re.compile(r"^(NO DRIFT|DRIFT)")).first.wait_for()  # the verdict, whatever it is
    assert page.locator('[data-testid="stException"]').count() == 0
    _drawn(page)
    screenshot(page, "drift-foods")

    page.get_by_role("tab", name="Over time").click()
    wait_idle(page)
    page.get_by_text("Each chunk is tested against the reference").wait_for()
    _drawn(page)
    screenshot(page, "drift-over-time")

    page.get_by_role("tab", name="Photo clusters").click()
    wait_idle(page)
    page.get_by_text(re.compile("clusters \\(k-means, seeded\\)")).wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
    _drawn(page)
    screenshot(page, "drift-clusters")
