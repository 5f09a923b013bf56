"""Daily totals, dietary patterns (hand-computed) and streaks across month ends and zones."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pandas as pd
import pytest

from nutrilearn.meals import (
    DEFAULT_TARGETS,
    NOT_ENOUGH_DATA,
    RULES,
    Meal,
    MealEntry,
    MealStore,
    Targets,
    compare_to_targets,
    daily_totals,
    dietary_patterns,
    findings_frame,
    rules_frame,
    streak,
    today_in,
)
from nutrilearn.meals.store import meals_frame
from nutrilearn.nutrition import NutritionFacts

TODAY = dt.date(2026, 3, 10)
_IDS = itertools.count(1)


def meal(day: dt.date, hhmm: str = "12:00", meal_type: str = "lunch", *, p: float = 0, c: float = 0,
         f: float = 0, fib: float = 0, kcal: float | None = None) -> Meal:
    """A meal eaten at wall time ``hhmm`` UTC (local == UTC unless a test says otherwise)."""
    hh, mm = map(int, hhmm.split(":"))
    facts = NutritionFacts("x", "X", 100, 4 * p + 4 * c + 9 * f if kcal is None else kcal, p, c, f, fib, "test")
    return Meal(next(_IDS), "ana", dt.datetime.combine(day, dt.time(hh, mm), dt.UTC), meal_type, 1.0,
                facts, None, None, True)


def days_back(n: int) -> list[dt.date]:
    return [TODAY - dt.timedelta(days=i) for i in range(n)]


def frame(meals: list[Meal], tz: str = "UTC") -> pd.DataFrame:
    return meals_frame(meals, tz)


def verdicts(df: pd.DataFrame, targets: Targets = DEFAULT_TARGETS, **kw) -> dict[str, object]:
    found = dietary_patterns(df, targets, today=TODAY, **kw)
    return {f.pattern: f for f in found}


def same_days(n: int = 3, **macros: float) -> pd.DataFrame:
    return frame([meal(d, **macros) for d in days_back(n)])


# -- daily totals -------------------------------------------------------------------------------

def test_daily_totals_groups_by_local_day() -> None:
    d1, d2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    df = frame([meal(d1, p=10, c=20, f=5, fib=2), meal(d1, "19:00", "dinner", p=30, c=10, f=10),
                meal(d2, p=1, c=1, f=1)])
    totals = daily_totals(df)
    assert totals["date"].tolist() == [d1, d2]
    assert totals["meals"].tolist() == [2, 1]
    assert totals["protein_g"].tolist() == [40, 1]
    assert totals["kcal"].tolist() == [4 * 40 + 4 * 30 + 9 * 15, 17]
    filled = daily_totals(df, dt.date(2026, 2, 28), dt.date(2026, 3, 3), fill_missing=True)
    assert filled["date"].tolist() == [dt.date(2026, 2, 28), d1, d2, dt.date(2026, 3, 3)]
    assert filled["kcal"].tolist()[0] == 0 and filled["meals"].tolist()[-1] == 0
    assert daily_totals(frame([])).empty


def test_compare_to_targets() -> None:
    totals = daily_totals(same_days(1, p=100, c=275, f=39, fib=14))
    long = compare_to_targets(totals, DEFAULT_TARGETS).set_index("nutrient")
    assert long.loc["protein_g", "percent"] == pytest.approx(200)
    assert long.loc["carbohydrate_g", "percent"] == pytest.approx(100)
    assert long.loc["fat_g", "percent"] == pytest.approx(50)
    assert long.loc["fibre_g", "target"] == 28
    assert long.loc["kcal", "amount"] == 4 * 100 + 4 * 275 + 9 * 39


# -- dietary rules, each against hand-computed values ------------------------------------------

def test_rules_are_data_with_threshold_and_severity() -> None:
    table = rules_frame()
    assert len(table) == len(RULES)
    assert set(table["pattern"]) == {"too_many_carbohydrates", "too_little_protein", "too_much_fat",
                                     "too_little_fibre", "too_many_calories", "irregular_meal_times"}
    assert set(table["severity"]) == {"caution", "warning"}
    assert "carbohydrate share of energy > 65 %" in set(table["rule"])


@pytest.mark.parametrize(
    "pattern, macros, expected_value, severity",
    [
        # energy = 4*50 + 4*400 + 9*40 = 2160; carbs 1600 / 2160 = 74.07 %
        ("too_many_carbohydrates", {"p": 50, "c": 400, "f": 40}, 1600 / 2160 * 100, "caution"),
        # 4*50 + 4*600 + 9*30 = 2870; 2400 / 2870 = 83.62 %
        ("too_many_carbohydrates", {"p": 50, "c": 600, "f": 30}, 2400 / 2870 * 100, "warning"),
        # 4*85 + 4*325 + 9*40 = 2000; exactly 65 % is not above 65 %
        ("too_many_carbohydrates", {"p": 85, "c": 325, "f": 40}, 65.0, "ok"),
        ("too_little_protein", {"p": 40, "c": 300, "f": 80}, 160 / 2080 * 100, "caution"),  # 7.69 %
        ("too_little_protein", {"p": 20, "c": 300, "f": 80}, 80 / 2000 * 100, "warning"),  # 4 %
        ("too_little_protein", {"p": 100, "c": 250, "f": 70}, 400 / 2030 * 100, "ok"),  # 19.7 %
        ("too_much_fat", {"p": 80, "c": 200, "f": 100}, 900 / 2020 * 100, "caution"),  # 44.55 %
        ("too_much_fat", {"p": 80, "c": 200, "f": 150}, 1350 / 2470 * 100, "warning"),  # 54.66 %
        ("too_much_fat", {"p": 100, "c": 250, "f": 70}, 630 / 2030 * 100, "ok"),  # 31.0 %
    ],
)
def test_energy_share_rules(pattern: str, macros: dict, expected_value: float, severity: str) -> None:
    found = verdicts(same_days(**macros))[pattern]
    assert found.value == pytest.approx(expected_value)
    assert found.severity == severity
    assert found.present == (severity != "ok")


def test_the_most_severe_rule_is_reported() -> None:
    found = verdicts(same_days(p=20, c=300, f=80))["too_little_protein"]
    assert (found.threshold, found.rule) == (7, "protein share of energy < 7 %")
    mild = verdicts(same_days(p=100, c=250, f=70))["too_little_protein"]
    assert (mild.threshold, mild.severity) == (10, "ok")  # no rule fired: the mildest is shown


@pytest.mark.parametrize("fibre, expected_value, severity", [(20, 10, "caution"), (10, 5, "warning"), (30, 15, "ok")])
def test_too_little_fibre(fibre: float, expected_value: float, severity: str) -> None:
    # 2000 kcal a day: fibre grams per 1000 kcal = fibre / 2
    found = verdicts(same_days(p=100, c=250, f=70, fib=fibre, kcal=2000))["too_little_fibre"]
    assert found.value == pytest.approx(expected_value)
    assert found.severity == severity


def test_too_many_calories_uses_the_users_target() -> None:
    df = frame([meal(d, kcal=k, p=1, c=1, f=1) for d, k in zip(days_back(3), (2200, 2300, 2400))])
    found = verdicts(df)["too_many_calories"]  # mean 2300 / 2000 = 115 %
    assert found.value == pytest.approx(115) and found.severity == "caution"
    assert verdicts(df, Targets(kcal=1700))["too_many_calories"].severity == "warning"  # 135.3 %
    assert verdicts(df, Targets(kcal=3000))["too_many_calories"].severity == "ok"  # 76.7 %


def test_days_without_meals_do_not_count_as_zero() -> None:
    # Three logged days out of a 14-day window: average over the 3, not over 14.
    df = frame([meal(d, kcal=2300, p=1, c=1, f=1) for d in (TODAY, TODAY - dt.timedelta(days=5),
                                                             TODAY - dt.timedelta(days=9))])
    found = verdicts(df, days=14)["too_many_calories"]
    assert found.value == pytest.approx(115) and found.days_logged == 3


@pytest.mark.parametrize(
    "times, expected_value, severity",
    [
        (("07:00", "08:00", "09:00"), (2400) ** 0.5, "ok"),       # std of 420, 480, 540 min = 48.99
        (("06:00", "08:00", "10:00"), (9600) ** 0.5, "caution"),  # 97.98 min
        (("06:00", "09:00", "12:00"), (21600) ** 0.5, "warning"),  # 146.97 min
    ],
)
def test_irregular_meal_times(times: tuple[str, ...], expected_value: float, severity: str) -> None:
    meals = [meal(d, t, "breakfast", p=20, c=50, f=10) for d, t in zip(days_back(3), times)]
    # Regular dinners and a snack at odd hours do not hide or cause the finding.
    meals += [meal(d, "19:00", "dinner", p=30, c=60, f=20) for d in days_back(3)]
    meals += [meal(TODAY, "03:00", "snack", p=1, c=10, f=1)]
    found = verdicts(frame(meals))["irregular_meal_times"]
    assert found.value == pytest.approx(expected_value)
    assert found.severity == severity


def test_irregular_meal_times_needs_three_meals_of_a_type() -> None:
    meals = [meal(d, t, "dinner", p=30, c=60, f=20) for d, t in zip(days_back(3)[:2], ("17:00", "23:00"))]
    meals += [meal(TODAY - dt.timedelta(days=2), "12:00", "snack", p=10, c=10, f=10)]
    assert verdicts(frame(meals))["irregular_meal_times"].severity == NOT_ENOUGH_DATA


def test_local_time_decides_meal_time_regularity() -> None:
    # 07:30 every day in New York; in UTC that is 12:30 before and 11:30 after the DST change.
    days = [dt.date(2026, 3, 6), dt.date(2026, 3, 7), dt.date(2026, 3, 9), dt.date(2026, 3, 10)]
    utc_hours = [12, 12, 11, 11]
    meals = [Meal(i, "ana", dt.datetime.combine(d, dt.time(h, 30), dt.UTC), "breakfast", 1.0,
                  NutritionFacts("x", "X", 100, 500, 20, 70, 15, 5, "t"), None, None, True)
             for i, (d, h) in enumerate(zip(days, utc_hours))]
    found = verdicts(meals_frame(meals, "America/New_York"))["irregular_meal_times"]
    assert found.value == pytest.approx(0)


def test_window_and_minimum_days() -> None:
    old = [meal(TODAY - dt.timedelta(days=20 + i), p=10, c=500, f=5) for i in range(5)]
    recent = [meal(d, p=100, c=250, f=70, fib=40) for d in days_back(2)]
    found = verdicts(frame(old + recent), days=14)
    assert {f.severity for f in found.values()} == {NOT_ENOUGH_DATA}  # only 2 logged days in window
    assert all(f.value is None and f.days_logged == 2 for f in found.values())
    assert verdicts(frame(old + recent), days=14, min_logged_days=2)["too_many_carbohydrates"].severity == "ok"
    wide = verdicts(frame(old + recent), days=30)["too_many_carbohydrates"]
    assert wide.severity == "warning" and wide.days_logged == 7
    with pytest.raises(ValueError):
        dietary_patterns(frame(recent), DEFAULT_TARGETS, today=TODAY, days=0)


def test_findings_frame_and_empty_input() -> None:
    found = dietary_patterns(frame([]), DEFAULT_TARGETS, today=TODAY)
    table = findings_frame(found)
    assert len(table) == 6 and (table["severity"] == NOT_ENOUGH_DATA).all()
    assert not table["present"].any()


# -- streaks -----------------------------------------------------------------------------------

def d(y: int, m: int, day: int) -> dt.date:
    return dt.date(y, m, day)


@pytest.mark.parametrize(
    "dates, today, current, longest",
    [
        ([d(2026, 1, 30), d(2026, 1, 31), d(2026, 2, 1), d(2026, 2, 2)], d(2026, 2, 2), 4, 4),
        ([d(2028, 2, 28), d(2028, 2, 29), d(2028, 3, 1)], d(2028, 3, 1), 3, 3),  # leap day
        ([d(2027, 2, 28), d(2027, 3, 1)], d(2027, 3, 1), 2, 2),  # no leap day
        ([d(2026, 12, 30), d(2026, 12, 31), d(2027, 1, 1)], d(2027, 1, 1), 3, 3),  # year end
        ([d(2026, 4, 29), d(2026, 4, 30)], d(2026, 5, 1), 2, 2),  # today still open
        ([d(2026, 4, 28), d(2026, 4, 29)], d(2026, 5, 1), 0, 2),  # a whole day missed
        ([d(2026, 4, 1), d(2026, 4, 2), d(2026, 4, 3), d(2026, 4, 10)], d(2026, 4, 10), 1, 3),
        ([], d(2026, 4, 10), 0, 0),
        ([d(2026, 4, 11)], d(2026, 4, 10), 0, 0),  # future dates ignored
    ],
)
def test_streak(dates: list[dt.date], today: dt.date, current: int, longest: int) -> None:
    s = streak(dates + dates[:1], today)  # duplicates (two meals a day) count once
    assert (s.current, s.longest) == (current, longest)
    if dates and dates[-1] <= today:
        assert s.last_logged == max(dates) and s.logged_today == (max(dates) == today)


def test_streak_follows_the_users_time_zone(tmp_path: Path) -> None:
    store = MealStore(f"sqlite:///{tmp_path / 'm.db'}")
    store.ensure_user("kiri", "Pacific/Auckland")
    store.ensure_user("ana", "UTC")
    # 10:30 and 11:30 UTC on 31 Dec are 23:30 on 31 Dec and 00:30 on 1 Jan in Auckland (UTC+13).
    for user in ("kiri", "ana"):
        for hour in (10, 11):
            store.log_meal(MealEntry(user=user, label="pizza", meal_type="snack",
                                     eaten_at=dt.datetime(2026, 12, 31, hour, 30, tzinfo=dt.UTC)))
    kiri_today = today_in("Pacific/Auckland", dt.datetime(2026, 12, 31, 12, 0, tzinfo=dt.UTC))
    assert kiri_today == d(2027, 1, 1)
    kiri = streak(store.meals("kiri")["date"], kiri_today)
    assert (kiri.current, kiri.longest, kiri.logged_today) == (2, 2, True)
    ana = streak(store.meals("ana")["date"], today_in("UTC", dt.datetime(2026, 12, 31, 12, 0, tzinfo=dt.UTC)))
    assert (ana.current, ana.longest) == (1, 1)
    # New York, across the end of February: 03:00 UTC on 1 March is 22:00 on 28 February.
    store.ensure_user("ny", "America/New_York")
    for moment in (dt.datetime(2027, 3, 1, 3, 0, tzinfo=dt.UTC), dt.datetime(2027, 3, 1, 20, 0, tzinfo=dt.UTC)):
        store.log_meal(MealEntry(user="ny", label="bagel", meal_type="snack", eaten_at=moment))
    assert store.logged_dates("ny") == [d(2027, 2, 28), d(2027, 3, 1)]
    assert store.streak("ny", d(2027, 3, 1)).current == 2
    assert store.streak("kiri", kiri_today) == kiri
    store.close()


def test_docs_list_every_rule_and_default_target() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "meals.md").read_text()
    for _, rule in rules_frame().iterrows():
        assert f"| {rule['title'].lower()} | {rule['rule']} | {rule['severity']} |" in text, rule["rule"]
    for value in ("2000 kcal", "50 g", "275 g", "78 g", "28 g"):
        assert value in text
    assert DEFAULT_TARGETS == Targets(2000, 50, 275, 78, 28)
