"""The time-sensitive functions give the same answers whatever the server's time zone.

Cheap stand-in for running the whole suite under a far ``TZ``: one child process per zone
(UTC, Pacific/Kiritimati at +14, Pacific/Pago_Pago at -11) runs ``_probe()`` and prints
its answers; they must all be equal and right. What is probed: meals' daily totals,
today and streaks in the user's zone (not the server's), monitoring's UTC day grouping and
"last 24 hours" filter, drift windows (``days:1``, ``range:``), replay's UTC daily rhythm.

The whole suite under a far zone: ``TZ=Pacific/Kiritimati .venv/bin/pytest -q``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ZONES = ("UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago")


def _probe(tmp: str) -> dict:
    import datetime as dt
    from datetime import timedelta, timezone

    import numpy as np
    import pandas as pd

    from nutrilearn import monitoring as mon
    from nutrilearn.meals import MealEntry, MealStore, daily_totals, today_in
    from nutrilearn.monitoring import windows
    from nutrilearn.replay import simulated_times
    from nutrilearn.tracking.synthetic import make_record

    out: dict = {"local_utc_offset_h": dt.datetime.now().astimezone().utcoffset().total_seconds() / 3600}

    # -- meals: days are the user's (Asia/Tokyo, +9), never the server's
    store = MealStore(f"sqlite:///{tmp}/meals.db")
    store.ensure_user("kenji", "Asia/Tokyo")
    utc = dt.timezone.utc
    for when, label in ((dt.datetime(2026, 11, 26, 14, 30, tzinfo=utc), "pizza"),   # 23:30 on the 26th in Tokyo
                        (dt.datetime(2026, 11, 26, 15, 30, tzinfo=utc), "bagel"),   # 00:30 on the 27th
                        (dt.datetime(2026, 11, 27, 3, 0, tzinfo=utc), "banana")):   # 12:00 on the 27th
        store.log_meal(MealEntry(user="kenji", label=label, meal_type="snack", eaten_at=when))
    store.log_meal(MealEntry(user="kenji", label="pretzel", meal_type="snack",
                             eaten_at=dt.datetime(2026, 11, 28, 8, 0)))  # naive: 08:00 Tokyo wall time
    meals = store.meals("kenji", dt.date(2026, 11, 20), dt.date(2026, 11, 30))
    totals = daily_totals(meals)
    out["meal_days"] = {str(d): int(n) for d, n in zip(totals["date"], totals["meals"])}
    out["meal_local_times"] = sorted(pd.Timestamp(t).strftime("%m-%d %H:%M") for t in meals["eaten_at"])
    now = dt.datetime(2026, 11, 28, 16, 0, tzinfo=utc)  # 01:00 on the 29th in Tokyo
    out["today_tokyo"] = str(today_in("Asia/Tokyo", now))
    out["streak_days"] = store.streak("kenji", dt.date(2026, 11, 28)).current
    store.close()

    # -- monitoring: UTC days, and "the last 24 hours" as an instant span
    t0 = dt.datetime(2026, 11, 27, 23, 30, tzinfo=utc)
    recs = [make_record(i, error=(i == 2), when=t0 + timedelta(hours=h)) for i, h in enumerate((0, 0.25, 1, 26))]
    frame = mon.prepare(windows.records_frame(recs))
    daily = mon.daily_volume(frame)
    out["daily_volume"] = {d.strftime("%Y-%m-%d"): [int(p), int(e)]
                           for d, p, e in zip(daily["day"], daily["predictions"], daily["errors"])}
    wall = dt.datetime.now(timezone.utc)
    live = [make_record(10 + i, error=False, when=wall - timedelta(hours=h)) for i, h in enumerate((1, 23, 25, 49))]
    live_frame = mon.prepare(windows.records_frame(live)).assign(source="app")
    out["last_24h"] = len(mon.filter_predictions(live_frame, mon.Filters.last(timedelta(days=1))))
    out["last_24h_naive_now"] = len(mon.filter_predictions(
        live_frame, mon.Filters.last(timedelta(days=1), now=wall.replace(tzinfo=None))))  # naive is UTC

    # -- drift windows
    spaced = windows.records_frame([make_record(20 + i, error=False, when=t0 + timedelta(hours=6 * i)) for i in range(12)])
    out["days_1"] = windows.select(spaced, "days:1", "current").n  # (newest - 24 h, newest]
    out["days_1_at"] = windows.select(spaced, "days:1", "current", now=dt.datetime(2026, 11, 29, 0, 0)).n
    out["range"] = windows.select(spaced, "range:2026-11-28..2026-11-29", "reference").n

    # -- replay's daily rhythm is in UTC hours
    stamps = simulated_times(400, 7, dt.datetime(2026, 11, 27, 10, 30, tzinfo=utc), np.random.default_rng(1))
    out["replay_utc_hours"] = np.bincount([s.astimezone(utc).hour for s in stamps], minlength=24).tolist()
    return out


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[str, dict]:
    """``_probe()`` run in a fresh interpreter per zone."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tests.test_time_zones import _probe; "
            "print(json.dumps(_probe(sys.argv[2])))")
    out = {}
    for zone in ZONES:
        tmp = tmp_path_factory.mktemp(zone.replace("/", "-"))
        env = {**os.environ, "TZ": zone}
        proc = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[zone] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_the_far_zones_really_are_far(answers):
    assert answers["UTC"]["local_utc_offset_h"] == 0
    assert answers["Pacific/Kiritimati"]["local_utc_offset_h"] == 14
    assert answers["Pacific/Pago_Pago"]["local_utc_offset_h"] == -11


def test_every_zone_gives_the_same_answers(answers):
    def without_offset(a: dict) -> dict:
        return {k: v for k, v in a.items() if k != "local_utc_offset_h"}

    base = without_offset(answers["UTC"])
    for zone in ZONES[1:]:
        assert without_offset(answers[zone]) == base, zone


def test_the_answers_are_right(answers):
    a = answers["Pacific/Kiritimati"]
    assert a["meal_days"] == {"2026-11-26": 1, "2026-11-27": 2, "2026-11-28": 1}  # Tokyo days
    assert a["meal_local_times"] == ["11-26 23:30", "11-27 00:30", "11-27 12:00", "11-28 08:00"]
    assert a["today_tokyo"] == "2026-11-29" and a["streak_days"] == 3
    assert a["daily_volume"] == {"2026-11-27": [2, 0], "2026-11-28": [1, 1], "2026-11-29": [1, 0]}  # 23:30, 23:45 | 00:30 | +26 h
    assert a["last_24h"] == 2 and a["last_24h_naive_now"] == 2
    assert a["days_1"] == 4 and a["days_1_at"] == 4 and a["range"] == 4
    assert sum(a["replay_utc_hours"]) == 400
