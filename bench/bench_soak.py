"""Soak: the real app in headless Chromium for N page loads across every page.

Starts ``streamlit run app.py`` on a free 127.0.0.1 port with a temporary NUTRILEARN_HOME
(version 1 registered and ``--seed`` replayed predictions from the real photos, so Models,
Monitoring and Drift show real figures) and the built models (NUTRILEARN_MODELS_DIR), warms
every page up, then loads Analyze, Meals, Monitoring, Drift and Models round-robin, uploading
a real photo on every ``--upload-every``-th Analyze load. Every ``--every`` loads it reports
the app process's open files (/proc/PID/fd), threads and RSS; at the end the start/end
delta and PASS/FAIL against the bars of issue 13: open files within +30 of the start and
memory within +150 MB after 1,000 loads.

Start and end are measured settled: after Streamlit's reconnect window (``--session-ttl``,
its default 120 s, plus 45 s), then one page loaded and left and another loaded. A browser
that leaves a page leaves its session stored for that long, holding its own asyncio loop
(3 descriptors), and Streamlit drops expired sessions only at the next disconnect (at most
128 are stored). That is retention, bounded, not a leak; the peak during the loads is
reported too (``--no-settle`` measures without waiting).

    .venv/bin/python bench/bench_soak.py                 # 1,000 loads (about 30 min on 2 cores)
    .venv/bin/python bench/bench_soak.py --loads 200 --json

Exit status 0 on PASS, 1 on FAIL, 2 when it could not run (no Chromium, no photos).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e import CHROMIUM, StreamlitApp  # noqa: E402
from tests.soak import PAGES, STREAMLIT_SESSION_TTL_S, Soak, launch_browser, seed_home  # noqa: E402

FOOD10 = (ROOT.parent / "shared" / "data" / "food10").resolve()
MAX_OPEN_FILES_GROWTH = 30
MAX_RSS_GROWTH_MB = 150.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loads", type=int, default=1000, help="measured page loads (1000)")
    p.add_argument("--every", type=int, default=100, help="report every this many loads (100)")
    p.add_argument("--warm-up", type=int, default=2, metavar="ROUNDS", help="rounds of every page first (2)")
    p.add_argument("--photos", type=Path, default=FOOD10 / "test", help="class folders of real photos")
    p.add_argument("--seed", type=int, default=300, metavar="N", help="replayed predictions before start (300)")
    p.add_argument("--upload-every", type=int, default=5, metavar="K", help="upload a photo on every K-th Analyze load")
    p.add_argument("--max-open-files-growth", type=int, default=MAX_OPEN_FILES_GROWTH)
    p.add_argument("--max-rss-growth-mb", type=float, default=MAX_RSS_GROWTH_MB)
    p.add_argument("--session-ttl", type=int, default=STREAMLIT_SESSION_TTL_S, metavar="S",
                   help="Streamlit's server.disconnectedSessionTTL for the app (its default: 120)")
    p.add_argument("--no-settle", action="store_true",
                   help="measure start and end at once, not after the sessions' reconnect window")
    p.add_argument("--keep-home", action="store_true", help="keep the temporary NUTRILEARN_HOME (its path is printed)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end (progress goes to stderr)")
    args = p.parse_args(argv)

    if not CHROMIUM.exists():
        print(f"cannot run: {CHROMIUM} is absent (apt-get install chromium)", file=sys.stderr)
        return 2
    photos = sorted(args.photos.glob("*/*.jpg")) if args.photos.is_dir() else []
    if not photos:
        print(f"cannot run: no photos in {args.photos}/<class>/*.jpg", file=sys.stderr)
        return 2
    photos = photos[::7]  # a spread over the classes, each uploaded a few times at most

    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    tmp = tempfile.TemporaryDirectory(prefix="nutrilearn-soak-")
    home = Path(tmp.name)
    if args.keep_home:
        tmp._finalizer.detach()  # type: ignore[attr-defined]  # keep it for a look afterwards
    say(f"home: {home}; seeding (version 1, {args.seed} replayed predictions)...")
    seed_home(home, args.photos, args.seed)
    app = StreamlitApp(home, name="soak", env={"NUTRILEARN_BATCH_MAX_AGE_S": "5",
                                               "STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL": str(args.session_ttl)}).start()
    # Expired sessions are dropped at the TTL; the margin lets the garbage collector run too.
    settle_s = 0.0 if args.no_settle else args.session_ttl + 45.0
    pw, browser = launch_browser()
    try:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        soak = Soak(app, page, photos, upload_every=args.upload_every)
        say(f"app pid {app.proc.pid} on {app.url}; warm-up: {args.warm_up} round(s) of {', '.join(PAGES)}")
        soak.warm_up(args.warm_up)
        if settle_s:
            say(f"start and end are measured {settle_s:.0f} s after the last load (session TTL {args.session_ttl} s)")
        say(f"{'loads':>6} {'open files':>10} {'threads':>8} {'RSS MB':>8} {'elapsed s':>10}")
        result = soak.run(args.loads, every=args.every, settle_s=settle_s, report=lambda s: say(
            f"{s.loads:>6} {s.open_files:>10} {s.threads:>8} {s.rss_mb:>8.1f} {s.elapsed_s:>10.1f}  {s.note}"))
    finally:
        browser.close()
        pw.stop()
        app.stop()
    d = result.delta
    checks = {
        "open_files": d["open_files"] <= args.max_open_files_growth,
        "rss": d["rss_mb"] <= args.max_rss_growth_mb,
        "no_page_errors": result.page_errors == 0,
    }
    verdict = "PASS" if all(checks.values()) else "FAIL"
    out = {**result.as_dict(), "bars": {"open_files": args.max_open_files_growth, "rss_mb": args.max_rss_growth_mb},
           "checks": checks, "verdict": verdict,
           "home": str(home) if args.keep_home else None}
    if args.json:
        print(json.dumps(out))
    else:
        say(f"\n{result.loads} loads ({', '.join(f'{k} {v}' for k, v in result.loads_by_page.items())}), "
            f"{result.uploads} photo uploads, {result.page_errors} page(s) with an exception")
        say(f"open files {result.start.open_files} -> {result.end.open_files} ({d['open_files']:+d}; bar +"
            f"{args.max_open_files_growth}) {'ok' if checks['open_files'] else 'FAIL'}")
        say(f"           peak {result.peak.open_files} at {result.peak.loads} loads (sessions in their "
            f"{args.session_ttl} s reconnect window hold 3 each)")
        say(f"threads    {result.start.threads} -> {result.end.threads} ({d['threads']:+d})")
        say(f"RSS        {result.start.rss_mb:.0f} -> {result.end.rss_mb:.0f} MB ({d['rss_mb']:+.0f} MB; bar +"
            f"{args.max_rss_growth_mb:.0f}) {'ok' if checks['rss'] else 'FAIL'}")
        if result.grown_files():
            say("grown descriptors: " + ", ".join(f"{k} +{v}" for k, v in result.grown_files().items()))
        say(verdict)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
