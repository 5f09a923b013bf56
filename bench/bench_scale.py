"""Scale bench: monitoring over millions of predictions (issue 12).

Builds (or extends) a store of N realistic predictions through the real write path (spool
rows -> ``BatchWriter.write``: the record checks, one MLflow run per batch with its
Parquet), leaves it in DIR with an ``env`` file to source, then times, each in a new
process with the mirror up to date:

* ``nutrilearn monitor --days 7 --json`` and ``nutrilearn monitor --json`` (all history):
  wall time and peak memory (max RSS of the process);
* in one warm process (the app's case): every Monitoring/Drift question the pages ask,
  and picking up 1,000 new predictions (sync + overview).

    .venv/bin/python bench/bench_scale.py --n 1000000 --dir /tmp/scale          # build + time
    .venv/bin/python bench/bench_scale.py --n 3000000 --dir /tmp/scale          # extends to 3M
    .venv/bin/python bench/bench_scale.py --dir /tmp/scale --only-time          # time what is there
    .venv/bin/python bench/bench_scale.py --dir /tmp/scale --only-interactions  # the warm app's page reruns
    .venv/bin/python bench/bench_scale.py --dir /tmp/scale --only-interactions --monitoring-only  # that page alone
    .venv/bin/python bench/bench_scale.py --dir /tmp/scale --only-interactions --drift-only  # or this one
    git archive REV nutrilearn | tar -x -C /tmp/base                            # an older version...
    .venv/bin/python bench/bench_scale.py --dir /tmp/scale --only-time --baseline /tmp/base  # ...timed alongside

The store is timed as it is (a subset cannot be timed: grow it in steps, timing each).
``--baseline DIR`` runs an older ``nutrilearn`` package (DIR/nutrilearn) on the same store
right after each timed run, alternating, and prints the ratio of the medians: on a shared,
loaded machine the ratio is the figure to trust.

Records spread over ``--days`` (default 120) ending now, with meal-time peaks, 60 users,
three model versions (promotions along the way), 2% errors, 5% replayed. Batches hold
``--batch`` records (default 5,000: NUTRILEARN_BATCH_MAX_RECORDS for a busy deployment;
the write path is the same at 500).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NUTRILEARN = str(Path(sys.executable).with_name("nutrilearn"))
LABELS = ["pizza", "hamburger", "sushi", "apple_pie", "burrito", "ice_cream", "bagel", "espresso",
          "guacamole", "carbonara", "hotdog", "pretzel", "cheeseburger", "strawberry", "banana"]


def env_for(directory: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{directory / 'mlruns' / 'mlflow.db'}",
            "NUTRILEARN_HOME": str(directory), "NUTRILEARN_SPOOL_DIR": str(directory / "mlruns" / "spool"),
            "NUTRILEARN_MIRROR_DIR": str(directory / "mlruns" / "mirror")}


def _embeddings(labels, rng) -> list[str]:
    """Compact embeddings as the records carry them (128 float16, base64): one centre per
    food plus noise, so windows with other foods differ as real photos' embeddings do."""
    import base64

    import numpy as np

    centres = np.random.default_rng(1234).standard_normal((len(LABELS), 128))
    values = (centres[labels] + rng.standard_normal((len(labels), 128))).astype("<f2")
    return [base64.b64encode(v.tobytes()).decode() for v in values]


def _payloads(start: int, n: int, days: float, total: int, seed: int,
              embeddings: bool = False) -> list[tuple[str, bytes]]:
    """``n`` realistic records numbered ``start..`` of ``total``, as spool payloads (JSON);
    with ``embeddings``, each successful record carries a compact embedding."""
    import numpy as np

    rng = np.random.default_rng(seed + start)
    now = time.time()
    # Record k of total sits at a time proportional to k: history grows oldest to newest.
    base = now - days * 86400 + (np.arange(start, start + n) / max(total, 1)) * days * 86400
    hour_jitter = rng.normal(0, 1800, n)
    ts = np.minimum(base + hour_jitter, now - 1)
    out = []
    labels = rng.choice(len(LABELS), n, p=np.linspace(2, 0.5, len(LABELS)) / np.linspace(2, 0.5, len(LABELS)).sum())
    conf = rng.beta(5, 2, n)
    errors = rng.random(n) < 0.02
    users = rng.integers(0, 60, n)
    replayed = rng.random(n) < 0.05
    latency = rng.gamma(4, 8, n)
    vectors = _embeddings(labels, rng) if embeddings else [None] * n
    for k in range(n):
        frac = (start + k) / max(total, 1)
        version = "1" if frac < 0.3 else "2" if frac < 0.75 else "3"
        rid = uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | (start + k)).hex
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts[k])) + f".{int(ts[k] % 1 * 1e6):06d}+00:00"
        ok = not errors[k]
        label = LABELS[labels[k]]
        row = {
            "request_id": rid, "timestamp": when, "user": f"analyst{users[k]:02d}",
            "model_name": "nutrilearn-food-classifier", "model_version": version, "model_alias": "champion",
            "status": "ok" if ok else "error", "source": "replay" if replayed[k] else "app",
            "filename": f"photo{start + k}.jpg", "error_type": None if ok else "UnreadableImage",
            "error_message": None if ok else "not an image", "label": label if ok else None,
            "confidence": float(conf[k]) if ok else None, "is_food": True if ok else None,
            "top5_labels": [label, "pizza", "bagel", "sushi", "banana"] if ok else [],
            "top5_probs": [float(conf[k]), 0.1, 0.05, 0.02, 0.01] if ok else [],
            "decode_ms": 3.0, "preprocess_ms": 2.0, "inference_ms": float(latency[k]),
            "total_ms": float(latency[k]) + 5.0, "image_width": 640, "image_height": 480,
            "image_format": "JPEG", "image_bytes": 90_000, "brightness": 0.5, "contrast": 0.2,
            "saturation": 0.4, "sharpness": 0.1, "aspect": 1.33, "embedding": vectors[k] if ok else None,
        }
        out.append((rid, json.dumps(row, separators=(",", ":")).encode()))
    return out


def _write_worker(args) -> int:
    directory, start, count, batch, days, total, seed = args
    os.environ.update(env_for(Path(directory)))
    from nutrilearn.config import Settings
    from nutrilearn.tracking.logger import _GROUP_SEP
    from nutrilearn.tracking.spool import Batch, SpooledRow, WritePosition, batch_id_for
    from nutrilearn.tracking.store import artifact_location
    from nutrilearn.tracking.writer import BatchWriter

    settings = Settings.from_env()
    writer = BatchWriter(settings.tracking_uri, settings.predictions_experiment,
                         artifact_location(settings, settings.tracking_uri))
    writer_id = uuid.uuid4().hex  # one numbering per worker, as one spool numbers its batches
    meta_path = Path(directory) / "scale.json"
    embeddings = meta_path.exists() and json.loads(meta_path.read_text()).get("embeddings", False)
    seq = 0
    for lo in range(start, start + count, batch):
        rows = _payloads(lo, min(batch, start + count - lo), days, total, seed, embeddings)
        grp = _GROUP_SEP.join(("nutrilearn-food-classifier", json.loads(rows[0][1])["model_version"],
                               "champion", json.loads(rows[0][1])["source"]))
        spooled = tuple(SpooledRow(k, rid, payload) for k, (rid, payload) in enumerate(rows))
        seq += 1
        writer.write(Batch(batch_id_for("predictions", grp, [r for r, _ in rows]), "predictions", grp, spooled),
                     WritePosition(writer_id, seq, seq))
    return count


def _init_store(directory: Path) -> None:
    os.environ.update(env_for(directory))
    from nutrilearn.config import Settings
    from nutrilearn.tracking import store

    settings = Settings.from_env()
    client = store.make_client(settings.tracking_uri)
    store.get_experiment_id(client, settings.predictions_experiment,
                            store.artifact_location(settings, settings.tracking_uri), True)


def build(directory: Path, n: int, batch: int, days: float, seed: int, embeddings: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "mlruns").mkdir(exist_ok=True)
    meta_path = directory / "scale.json"
    meta = (json.loads(meta_path.read_text()) if meta_path.exists()
            else {"n": 0, "days": days, "total": n, "embeddings": embeddings})
    meta_path.write_text(json.dumps(meta))  # the workers read whether to write embeddings
    have = meta["n"]
    if have >= n:
        print(f"store already holds {have:,} predictions", flush=True)
        return
    # Records keep their place on a timeline sized for the largest N asked for so far.
    total = max(n, meta.get("total", n))
    lines = "\n".join(f"export {k}={v}" for k, v in env_for(directory).items())
    (directory / "env").write_text(lines + "\n")
    _init_store(directory)  # MLflow migrates a new sqlite store: once, before the workers race to
    todo = n - have
    workers = 2
    share = -(-todo // workers)
    share = -(-share // batch) * batch
    jobs = [(str(directory), have + i * share, min(share, n - have - i * share), batch, meta["days"], total, seed)
            for i in range(workers) if have + i * share < n]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(len(jobs)) as pool:
        done = sum(pool.map(_write_worker, jobs))
    meta.update(n=have + done, total=total)
    meta_path.write_text(json.dumps(meta))
    print(f"wrote {done:,} predictions ({done // batch:,} batch runs) in {time.perf_counter() - t0:.0f} s; "
          f"store holds {meta['n']:,}", flush=True)


def mark_finished_writers(directory: Path) -> int:
    """Give writers listed before run marks existed (bare host name tags) their newest run's
    mark, as their next write would. Only for this bench's store, whose writers (the build's
    worker processes) are all gone: a live older writer would not re-mark its tag."""
    os.environ.update(env_for(directory))
    from nutrilearn.config import Settings
    from nutrilearn.tracking import store
    from nutrilearn.tracking.runs import WRITE_SEQ_METRIC, RunFinder

    settings = Settings.from_env()
    finder = RunFinder(settings.tracking_uri, settings.predictions_experiment)
    marked = 0
    for writer, mark in finder.writer_marks().items():
        if store.is_run_mark(mark):
            continue
        newest = finder.client.search_runs([finder.experiment_id()], max_results=1,
                                           filter_string=f"tags.`{store.TAG_WRITER}` = '{writer}'",
                                           order_by=[f"metrics.`{WRITE_SEQ_METRIC}` DESC"])
        if newest:
            finder.client.set_experiment_tag(finder.experiment_id(), store.writer_tag(writer),
                                             store.writer_mark(mark, newest[0].info.run_id))
            marked += 1
    return marked


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of ``cmd`` in a new process."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "w = time.perf_counter() - t; "
               "print(p.stdout); print(p.stderr[-2000:], file=sys.stderr); "
               "print('@@', w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)")
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env)
    tail = p.stdout.strip().splitlines()[-1].split()
    assert tail[0] == "@@" and tail[3] == "0", p.stdout[-2000:] + p.stderr[-2000:]
    return float(tail[1]), int(tail[2]) / 1024, p.stdout


def time_store(directory: Path, repeats: int, baseline: Path | None = None) -> dict:
    env = dict(os.environ, **env_for(directory))
    out: dict = {}
    t, rss, _ = timed([NUTRILEARN, "monitor", "--json"], env)  # brings the mirror up to date
    out["first_sync_and_overview_s"] = round(t, 2)
    # The baseline answers from the mirror as it is (--no-sync: it never writes to it); -P:
    # not this checkout from the working directory, the baseline from PYTHONPATH.
    base_cmd = [sys.executable, "-P", "-c", "import sys; from nutrilearn.cli import main; sys.exit(main())"]
    base_env = dict(env, PYTHONPATH=str(baseline)) if baseline else None
    for name, extra in (("week", ["--days", "7"]), ("all", [])):
        walls, peaks, base = [], [], []
        for _ in range(repeats):
            t, rss, stdout = timed([NUTRILEARN, "monitor", "--json", *extra], env)
            walls.append(t)
            peaks.append(rss)
            if base_env is not None:
                base.append(timed([*base_cmd, "monitor", "--json", "--no-sync", *extra], base_env)[0])
        count = json.loads(stdout[: stdout.rindex("}") + 1])["count"]
        out[name] = {"median_s": round(statistics.median(walls), 2), "max_s": round(max(walls), 2),
                     "peak_rss_mb": round(max(peaks)), "count": count}
        if base:
            out[name]["baseline_median_s"] = round(statistics.median(base), 2)
            out[name]["ratio_to_baseline"] = round(statistics.median(walls) / statistics.median(base), 3)
    out["warm"] = warm_questions(directory)
    return out


def warm_questions(directory: Path) -> dict:
    """A warm process (the app): each page question over the last 7 days and over everything."""
    code = f"""
import json, os, sys, time
sys.path.insert(0, {str(ROOT)!r})
os.environ.update({env_for(directory)!r})
from datetime import datetime, timedelta, timezone
from nutrilearn.config import Settings
from nutrilearn.monitoring.history import History
from nutrilearn.monitoring.stats import Filters
from nutrilearn.tracking.mirror import Mirror
s = Settings.from_env(); m = Mirror(s); m.sync(); h = History(m, s.spool_dir)
out = {{}}
for name, f in (("week", Filters(start=datetime.now(timezone.utc) - timedelta(days=7), hide_replayed=False)),
                ("all", Filters(hide_replayed=False))):
    h.overview(f)  # warm
    times = {{}}
    for q, fn in (("overview", lambda: h.overview(f)), ("top_foods", lambda: h.top_foods(f)),
                  ("daily", lambda: h.daily(f)), ("by_user", lambda: h.counts_by("user", f)),
                  ("by_version", lambda: h.counts_by("model_version", f)),
                  ("recent_200", lambda: h.rows(f, limit=200, newest_first=True)),
                  ("drift_sample_1000", lambda: h.sample(f, 1000, ("label", "confidence", "brightness")))):
        t = time.perf_counter(); fn(); times[q] = round(time.perf_counter() - t, 3)
    out[name] = times
    # One rerun of the Monitoring page: every figure it draws, as the page asks them.
    from dataclasses import replace
    from nutrilearn.monitoring import aggregates as agg, drift_data
    fb = h.feedback(Filters(start=f.start))
    def page():
        every = Filters(start=f.start, hide_replayed=False, include_shadow=True)
        opts = agg.filter_options(h, every); ov = agg.overview(h, f)
        agg.join_feedback(h, f, fb); agg.top_foods(h, f, 10); agg.daily_volume(h, f); agg.by_user(h, f)
        agg.recent_rows(h, f, 200); agg.recent_count(h, f); agg.confidence_summary(h, f)
        agg.confidence_histogram(h, f, 20); agg.confidence_by_version(h, f); agg.assess_health(h, f)
        agg.request_rate(h, f, "1h"); agg.daily_trends(h, f, fb)
    t = time.perf_counter(); page(); out[name]["monitoring_page_rerun"] = round(time.perf_counter() - t, 3)
# The Drift page's data path: reference first 500, current last 500, the over-time sample.
t = time.perf_counter()
ref = drift_data.select(h, "first:500", "reference"); cur = drift_data.select(h, "last:500", "current")
out["drift_windows_s"] = round(time.perf_counter() - t, 3)
t = time.perf_counter(); drift_data.later(h, ref); out["drift_later_sample_s"] = round(time.perf_counter() - t, 3)
t = time.perf_counter(); drift_data.select(h, "days:7", "current"); out["drift_days7_s"] = round(time.perf_counter() - t, 3)
print(json.dumps(out))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


INTERACTIONS = r"""
import json, os, sys, time
sys.path.insert(0, ROOT)
os.environ.update(ENV)
os.environ.setdefault("NUTRILEARN_MODELS_DIR", os.path.join(ROOT, "models"))
from streamlit.testing.v1 import AppTest
from nutrilearn.monitoring.stats import TIME_RANGES
try:  # app.py calls it after a page's first run; AppTest runs a page alone
    from nutrilearn_app.state import settle_heap
except ImportError:  # an older version timed alongside (before settle_heap)
    def settle_heap(page):
        pass

KINDS = ("toggle", "selectbox", "multiselect", "text_input", "slider", "number_input", "select_slider", "date_input")


def widget(at, key):
    return next(w for kind in KINDS for w in at.get(kind) if getattr(w, "key", None) == key)


def step(at, out, name, **values):
    # One interaction: set widgets as a person would, then the rerun it triggers.
    for key, value in values.items():
        try:
            widget(at, key).set_value(value)
        except StopIteration:  # not drawn yet (another choice in the same step shows it)
            at.session_state[key] = value
    t = time.perf_counter(); at.run(); out[name] = round(time.perf_counter() - t, 3)
    assert not at.exception, (name, [e.message for e in at.exception])


out = {"monitoring": {}, "drift": {}}
if PAGES_MONITORING:
    m = AppTest.from_file(os.path.join(ROOT, "pages", "monitoring.py"), default_timeout=900)
    step(m, out["monitoring"], "first load (cold)")
    settle_heap("monitoring")
    step(m, out["monitoring"], "rerun, nothing changed")
    for period in TIME_RANGES:
        if period != "Last 7 days":
            step(m, out["monitoring"], f"window: {period}", mon_period=period)
    for period in ("Last 7 days", "All time"):
        step(m, out["monitoring"], f"[{period}] back to it", mon_period=period)
        step(m, out["monitoring"], f"[{period}] version 2", mon_versions=["2"])
        step(m, out["monitoring"], f"[{period}] + user analyst07", mon_users=["analyst07"])
        step(m, out["monitoring"], f"[{period}] filters cleared", mon_versions=[], mon_users=[])
        step(m, out["monitoring"], f"[{period}] food search pizza", mon_search="pizza")
        step(m, out["monitoring"], f"[{period}] search cleared", mon_search="")
        step(m, out["monitoring"], f"[{period}] show replayed", mon_hide_replayed=False)
        step(m, out["monitoring"], f"[{period}] hide replayed", mon_hide_replayed=True)
        step(m, out["monitoring"], f"[{period}] low threshold 0.3", mon_low=0.3)
        step(m, out["monitoring"], f"[{period}] bins 30", mon_bins=30)
        step(m, out["monitoring"], f"[{period}] sort by confidence", mon_sort=widget(m, "mon_sort").options[2])

if not PAGES_DRIFT:
    print(json.dumps(out)); raise SystemExit(0)
d = AppTest.from_file(os.path.join(ROOT, "pages", "drift.py"), default_timeout=900)
step(d, out["drift"], "first load (cold)")
settle_heap("drift")
step(d, out["drift"], "rerun, nothing changed")
# The page's tabs are lazy (only the open one runs): every change is timed with each of the
# tabs that compute something open, the costly ones (Over time, Photo clusters) included.
# Each round asks for windows no earlier round asked for, so every figure is computed anew.
import datetime as _dt
for i, tab in enumerate(("Foods", "Over time", "Photo clusters", "Embeddings", "Accuracy")):
    d.session_state["drift_tab"] = tab
    step(d, out["drift"], f"[{tab}] open the tab")
    step(d, out["drift"], f"[{tab}] current: last {7 + i} days", drift_cur_kind="Last D days", drift_cur_days=7 + i)
    step(d, out["drift"], f"[{tab}] current: last {30 + i} days", drift_cur_days=30 + i)
    step(d, out["drift"], f"[{tab}] current: last N ({500 + i})", drift_cur_kind="Last N predictions",
         drift_cur_n=500 + i)
    step(d, out["drift"], f"[{tab}] current: last {2000 + i}", drift_cur_n=2000 + i)
    step(d, out["drift"], f"[{tab}] reference: first {5000 + i}", drift_ref_n=5000 + i)
    step(d, out["drift"], f"[{tab}] reference: date range", drift_ref_kind="Date range")
    start, end = widget(d, "drift_ref_range").value
    step(d, out["drift"], f"[{tab}] reference: range {i + 1} day(s) later", drift_ref_range=(
        start + _dt.timedelta(days=i + 1), end + _dt.timedelta(days=i + 1)))
    step(d, out["drift"], f"[{tab}] reference: first N again", drift_ref_kind="First N predictions")
    step(d, out["drift"], f"[{tab}] leave out replayed {'on' if i % 2 == 0 else 'off'}", drift_live_only=i % 2 == 0)
    alpha, chunking = (0.01, 0.1, 0.05, 0.01, 0.1)[i], ("500 predictions", "day", "100 predictions", "day",
                                                        "500 predictions")[i]
    step(d, out["drift"], f"[{tab}] alpha {alpha}", drift_alpha=alpha)
    step(d, out["drift"], f"[{tab}] over time: {chunking}", drift_chunking=chunking)
d.session_state["drift_tab"] = "Image properties"
step(d, out["drift"], "[Image properties] open the tab")
step(d, out["drift"], "[Image properties] image property: contrast", drift_property="contrast")
# A click on a map point (Embeddings / Photo clusters) reruns the page and opens that record.
from nutrilearn_app import state
from nutrilearn.monitoring import drift_data, photos
h = state.prediction_reader().history
ref = drift_data.select(h, "first:500", "reference")
rid = ref.frame["request_id"].iloc[-1]
if hasattr(photos, "times_of"):  # the page reads the record's own day
    start, end = photos.time_span(photos.times_of([rid], ref.frame))
else:  # an older version timed alongside: from the reference's start on, as its page did
    start, end = ref.frame["timestamp"].min(), None
t = time.perf_counter(); photos.record(state.prediction_reader(), rid, start=start, end=end)
out["drift"]["map click: open a record (the record read)"] = round(time.perf_counter() - t, 3)
out["embeddings"] = int(ref.frame["embedding"].notna().sum()) if "embedding" in ref.frame else 0
print(json.dumps(out))
"""


def warm_interactions(directory: Path, drift: bool = True, monitoring: bool = True) -> dict:
    """The app as a person uses it: the Monitoring and Drift pages driven by AppTest in one
    process (Streamlit's caches and the reader kept between reruns), each widget change timed
    as the rerun it triggers (script, queries, charts; not the browser's drawing). The first
    load is cold; every later figure is asked for a filter the cache has not seen, unless said."""
    code = (f"ROOT = {str(ROOT)!r}\nENV = {env_for(directory)!r}\nPAGES_DRIFT = {drift!r}\n"
            f"PAGES_MONITORING = {monitoring!r}\n" + INTERACTIONS)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        raise RuntimeError(p.stderr[-4000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def pickup(directory: Path) -> dict:
    """Warm process: write 1,000 new predictions (two batches), then time sync + overview."""
    code = f"""
import json, os, sys, time
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'bench')!r})
os.environ.update({env_for(directory)!r})
from nutrilearn.config import Settings
from nutrilearn.monitoring.history import History
from nutrilearn.monitoring.stats import Filters
from nutrilearn.tracking.mirror import Mirror
import bench_scale
s = Settings.from_env(); m = Mirror(s); m.sync(); h = History(m, s.spool_dir)
before = h.overview(Filters(hide_replayed=False)).count
meta = json.load(open({str(directory / 'scale.json')!r}))
bench_scale._write_worker(({str(directory)!r}, meta["n"], 1000, 500, meta["days"], meta["total"], 7))
meta["n"] += 1000; json.dump(meta, open({str(directory / 'scale.json')!r}, "w"))
from datetime import datetime, timedelta, timezone
week = Filters(start=datetime.now(timezone.utc) - timedelta(days=7), hide_replayed=False)
h.overview(week)
t = time.perf_counter(); r = m.sync(); sync_s = time.perf_counter() - t
h.overview(week); week_s = time.perf_counter() - t
after = h.overview(Filters(hide_replayed=False)).count
print(json.dumps({{"new_runs": r.new_runs, "picked_up": after - before, "sync_s": round(sync_s, 3),
                  "sync_and_week_overview_s": round(week_s, 3)}}))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--days", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embeddings", action="store_true",
                    help="a new store's records carry compact embeddings (the Drift page's embedding tests)")
    ap.add_argument("--only-time", action="store_true")
    ap.add_argument("--only-interactions", action="store_true",
                    help="only the warm app's page interactions (AppTest), on the store as it is")
    ap.add_argument("--monitoring-only", action="store_true",
                    help="with --only-interactions: the Monitoring page only (not the Drift page)")
    ap.add_argument("--drift-only", action="store_true",
                    help="with --only-interactions: the Drift page only (not the Monitoring page)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--baseline", type=Path, metavar="DIR",
                    help="a directory holding an older nutrilearn package, timed alongside (ratio printed)")
    args = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    if args.only_interactions:
        print(json.dumps({"interactions": warm_interactions(args.dir, drift=not args.monitoring_only,
                                                                  monitoring=not args.drift_only),
                          "load_after": round(os.getloadavg()[0], 2)},
                         indent=2))
        return 0
    if not args.only_time:
        build(args.dir, args.n, args.batch, args.days, args.seed, args.embeddings)
    print(f"marked {mark_finished_writers(args.dir)} writer(s) from before run marks", file=sys.stderr)
    result = time_store(args.dir, args.repeats, args.baseline)
    result["pickup_1000"] = pickup(args.dir)
    result["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
