"""Real processes for end-to-end tests: a Streamlit app server and a headless Chromium.

Only loopback addresses are used. Chromium is Debian's (/usr/bin/chromium), driven by the
playwright package; nothing is downloaded. Where Chromium is absent, tests skip and say so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitApp:
    """``streamlit run app.py`` on 127.0.0.1 with its own environment."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, name: str = "app",
                 args: list[str] | None = None):
        self.home, self.name = home, name
        self.args = list(args or [])  # more `streamlit run` options, e.g. --secrets.files PATH
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "NUTRILEARN_HOME": str(home), "NUTRILEARN_MODELS_DIR": str(ROOT / "models"),
                    "NUTRILEARN_BATCH_MAX_AGE_S": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "StreamlitApp":
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *self.args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit did not come up: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self) -> str:
        path = self.home / f"{self.name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, sig: int = 15) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        self.proc = None


def app_fixture(store: str, name: str, env: dict[str, str] | None = None):
    """A module-scoped ``app`` fixture: the app served over the home of the session store
    fixture named ``store`` (one server a test module; the store is built once a session)."""
    @pytest.fixture(scope="module")
    def app(request) -> Iterator[StreamlitApp]:
        server = StreamlitApp(request.getfixturevalue(store)["home"], env=env, name=name).start()
        yield server
        server.stop()

    return app


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; `make test` does it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture
def page(browser, request):
    """A fresh browser context (1400 x 1000) and page for each test; every wait is bounded
    by the test module's ``TIMEOUT_MS`` (120 s when it sets none)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(getattr(request.module, "TIMEOUT_MS", 120_000))
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # what the page showed when the test failed
        try:
            shot = screenshot(page, f"failed-{request.node.name}"[:120])
            print(f"failure screenshot: {shot}\npage text:\n{page.locator('body').inner_text()[:3000]}")
        except Exception as exc:  # a page that crashed: the test's own error says enough
            print(f"no failure screenshot: {exc}")
    context.close()


def wait_idle(page, timeout_ms: int = 120_000) -> None:
    """Wait until Streamlit has finished running the script (its status widget is gone)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=timeout_ms)


def open_page(page, app: StreamlitApp, title: str) -> None:
    """Open a page the way people do: the app, then its entry in the sidebar's navigation."""
    page.goto(app.url)
    page.get_by_text("No photos yet").wait_for()
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=re.compile(title)).first.wait_for()


def upload_and_wait(page, app_url: str, photo: Path) -> str:
    """Upload one photo on Analyze; return the prediction heading the user sees."""
    page.goto(app_url)
    page.get_by_text("No photos yet").wait_for()
    page.locator("input[type=file]").set_input_files(str(photo))
    heading = page.locator("h3", has_text="%").first
    heading.wait_for()
    return heading.inner_text()


def metric_value(page, label: str) -> str:
    """The value of an st.metric by its label."""
    metric = page.locator('[data-testid="stMetric"]', has_text=label).first
    metric.wait_for()
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
