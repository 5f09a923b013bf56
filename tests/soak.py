"""Soak: the real app in headless Chromium, page load after page load, while the app
process's open files, threads and memory are read from /proc.

Shared by ``bench/bench_soak.py`` (1,000+ loads, the bars of issue 13) and
``tests/test_soak.py`` (a short one in the suite). The app server and Chromium come from
``tests/e2e.py``; this module only adds the load loop and the /proc sampling.

A "page load" is a browser navigation to one page's URL (a new Streamlit session: the
script runs in a new thread, as for a person pressing F5), waited for until the script
has finished. Pages are visited round-robin; every ``upload_every``-th Analyze load
uploads a real photo, so predictions are made and logged while the other pages read them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tests.e2e import CHROMIUM, CHROMIUM_FLAGS, ROOT, StreamlitApp

# (url path, a text the finished page shows); "" is the app's first page (Analyze).
PAGES: dict[str, tuple[str, str]] = {
    "Analyze": ("", "No photos yet"),
    "Meals": ("meals", "Meals"),
    "Monitoring": ("monitoring", "Monitoring"),
    "Drift": ("drift", "Drift"),
    "Models": ("models", "Models"),
}


STREAMLIT_SESSION_TTL_S = 120  # Streamlit's default server.disconnectedSessionTTL


@dataclass
class Sample:
    loads: int
    open_files: int
    threads: int
    rss_mb: float
    elapsed_s: float
    note: str = ""


def sample(pid: int, loads: int, started: float, note: str = "") -> Sample:
    """Open file descriptors, threads and resident memory of process ``pid`` (Linux /proc)."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    threads = int(status["Threads"].strip())
    rss_kb = int(status["VmRSS"].split()[0])
    return Sample(loads, fds, threads, round(rss_kb / 1024, 1), round(time.monotonic() - started, 1), note)


def open_file_names(pid: int) -> dict[str, int]:
    """What the open descriptors point at, counted (for finding what leaks)."""
    counts: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":[")[0]
        key = f"{kind}:[]" if kind in ("socket", "pipe") else target  # sockets and pipes by kind
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


@dataclass
class SoakResult:
    loads: int
    uploads: int
    page_errors: int
    start: Sample
    end: Sample
    samples: list[Sample] = field(default_factory=list)
    settle_s: float = 0.0
    loads_by_page: dict[str, int] = field(default_factory=dict)
    start_files: dict[str, int] = field(default_factory=dict)
    end_files: dict[str, int] = field(default_factory=dict)

    @property
    def delta(self) -> dict[str, float]:
        return {"open_files": self.end.open_files - self.start.open_files,
                "threads": self.end.threads - self.start.threads,
                "rss_mb": round(self.end.rss_mb - self.start.rss_mb, 1)}

    def grown_files(self, top: int = 8) -> dict[str, int]:
        """The descriptor targets whose count grew most between start and end."""
        grown = {k: v - self.start_files.get(k, 0) for k, v in self.end_files.items()}
        return dict(sorted(((k, d) for k, d in grown.items() if d > 0), key=lambda kv: -kv[1])[:top])

    @property
    def peak(self) -> Sample:
        """The sample with the most open files (during the loads: disconnected sessions
        waiting out their reconnect window included)."""
        return max(self.samples, key=lambda s: s.open_files)

    def as_dict(self) -> dict:
        return {"loads": self.loads, "uploads": self.uploads, "page_errors": self.page_errors,
                "loads_by_page": self.loads_by_page, "start": asdict(self.start), "end": asdict(self.end),
                "peak": asdict(self.peak), "settle_s": self.settle_s,
                "delta": self.delta, "grown_open_files": self.grown_files(),
                "samples": [asdict(s) for s in self.samples]}


def seed_home(home: Path, photos: Path | None, n: int, env: dict[str, str] | None = None) -> None:
    """Register version 1 (so Models has a version) and replay ``n`` real predictions (so
    Monitoring and Drift have figures), through the CLI, before the app starts."""
    home.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "NUTRILEARN_HOME": str(home), "NUTRILEARN_MODELS_DIR": str(ROOT / "models"),
                 "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    cli = [sys.executable, "-c", "import sys; from nutrilearn.cli import main; sys.exit(main())"]
    with open(home / "seed.log", "ab") as log:
        subprocess.run([*cli, "setup"], cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT, check=True)
        if photos is not None and n > 0:
            subprocess.run([*cli, "replay", "--photos", str(photos), "--n", str(n), "--days", "7", "--users", "4",
                            "--feedback-share", "0.2"], cwd=ROOT, env=child_env, stdout=log,
                           stderr=subprocess.STDOUT, check=True)


class Soak:
    """Drives one app with one browser page; ``run(loads)`` does the loads and samples."""

    def __init__(self, app: StreamlitApp, page, photos: list[Path] | None = None, upload_every: int = 5,
                 timeout_ms: int = 120_000):
        self.app, self.page, self.photos = app, page, photos or []
        self.upload_every, self.timeout_ms = upload_every, timeout_ms
        self.loads = self.uploads = self.page_errors = self._analyze_loads = 0
        self.by_page: dict[str, int] = {name: 0 for name in PAGES}
        page.set_default_timeout(timeout_ms)

    @property
    def pid(self) -> int:
        assert self.app.proc is not None, "the app is not running"
        return self.app.proc.pid

    def load(self, name: str, count: bool = True) -> None:
        """One page load: navigate, wait for the page's text and for the script to finish."""
        path, ready = PAGES[name]
        page = self.page
        page.goto(f"{self.app.url}/{path}")
        page.get_by_text(ready).first.wait_for()
        if name == "Analyze" and self.photos:
            self._analyze_loads += 1
            if self._analyze_loads % self.upload_every == 1 or self.upload_every == 1:
                photo = self.photos[self.uploads % len(self.photos)]
                page.locator("input[type=file]").set_input_files(str(photo))
                page.locator("h3", has_text="%").first.wait_for()
                self.uploads += 1
        self._wait_idle()
        if page.locator('[data-testid="stException"]').count():
            self.page_errors += 1
        if count:
            self.loads += 1
            self.by_page[name] += 1

    def _wait_idle(self) -> None:
        page = self.page
        page.wait_for_timeout(150)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=self.timeout_ms)

    def warm_up(self, rounds: int = 2) -> None:
        """A few loads of every page (and an upload) before the start is measured: caches,
        the model's trace and the first thread pools are not leaks."""
        for _ in range(rounds):
            for name in PAGES:
                self.load(name)

    def _check_alive(self, loads: int, patience_s: float = 60.0) -> None:
        """The app process is running and answers its health check (a busy machine may
        take a while: only a dead process or a minute of silence is a failure)."""
        deadline = time.monotonic() + patience_s
        while True:
            if self.app.proc is None or self.app.proc.poll() is not None:
                raise RuntimeError(f"the app exited after {loads} loads: {self.app.log_tail()}")
            if self.app.healthy():
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the app stopped answering after {loads} loads: {self.app.log_tail()}")
            time.sleep(1.0)

    def settle(self, seconds: float) -> None:
        """Let every disconnected session outlive Streamlit's reconnect window and be dropped,
        so that both ends of a soak are measured without them.

        A browser that leaves a page leaves its session stored for
        ``server.disconnectedSessionTTL`` seconds, each holding its own asyncio loop
        (3 descriptors). Streamlit drops expired sessions only when it next stores one,
        that is at the next disconnect: so after the wait one page is loaded and left
        (its disconnect reaps the expired sessions) and another is loaded. Measured in
        the app with a referrer dump: the loops still open before that disconnect are
        all held by Streamlit's session storage, and it closes them. The peak during the
        loads is reported beside the settled ends."""
        if seconds > 0:
            self.page.goto("about:blank")  # close this tab's session too
            time.sleep(seconds)
            self.load("Meals", count=False)
            self.load("Meals", count=False)  # leaving the first one stores it: Streamlit reaps the expired

    def run(self, loads: int, every: int = 100, report: Callable[[Sample], None] | None = None,
            settle_s: float = 0.0) -> SoakResult:
        """``loads`` page loads round-robin over PAGES, sampled every ``every``; with
        ``settle_s`` (the session TTL plus a margin), start and end are measured settled."""
        self.settle(settle_s)
        started = time.monotonic()
        first = sample(self.pid, 0, started, "start" + (" (settled)" if settle_s else ""))
        start_files = open_file_names(self.pid)
        done0, uploads0, errors0 = self.loads, self.uploads, self.page_errors
        by_page0 = dict(self.by_page)
        samples = [first]
        if report:
            report(first)
        names = list(PAGES)
        for i in range(loads):
            self.load(names[i % len(names)])
            if (i + 1) % every == 0 or i + 1 == loads:
                self._check_alive(i + 1)
                s = sample(self.pid, i + 1, started)
                if s.loads != samples[-1].loads:
                    samples.append(s)
                    if report:
                        report(s)
        if settle_s > 0:
            self.settle(settle_s)
            samples.append(sample(self.pid, loads, started, "end (settled)"))
            if report:
                report(samples[-1])
        return SoakResult(loads=self.loads - done0, uploads=self.uploads - uploads0, settle_s=settle_s,
                          page_errors=self.page_errors - errors0, start=first, end=samples[-1], samples=samples,
                          loads_by_page={k: v - by_page0[k] for k, v in self.by_page.items()},
                          start_files=start_files, end_files=open_file_names(self.pid))


def launch_browser():
    """(playwright, browser) on Debian's Chromium; the caller stops both."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
