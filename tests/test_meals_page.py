"""The Meals page through Streamlit's AppTest, against a real sqlite meal log in a tmp dir."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from nutrilearn.meals import MealEntry, MealStore, Targets, today_in
from nutrilearn.nutrition import facts_for

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "meals.py")


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MealStore:
    monkeypatch.setenv("NUTRILEARN_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'meals.db'}")
    store = MealStore.from_settings()
    yield store
    store.close()


def open_page(user: str | None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if user is not None:
        at.session_state["user"] = user
    return at.run()


def seed(store: MealStore, user: str = "ana", days: int = 4) -> list[int]:
    """One pizza lunch (12:00 UTC) a day for ``days`` days ending today."""
    store.ensure_user(user)
    today = today_in("UTC")
    return [
        store.log_meal(MealEntry(user=user, label="pizza", meal_type="lunch",
                                 eaten_at=dt.datetime.combine(today - dt.timedelta(days=i), dt.time(12, 0),
                                                              dt.UTC)))
        for i in range(days)
    ]


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in charts(at)]


def chart_data(chart) -> pd.DataFrame:
    """The chart's data as Streamlit sent it (Arrow IPC in the proto's datasets)."""
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pandas()


def test_new_user_sees_an_empty_log(db: MealStore) -> None:
    at = open_page("newbie")
    assert not at.exception
    assert "newbie" in db.list_users()
    assert any("No meals between" in i.value for i in at.info)
    assert any("at least 3 logged days" in i.value for i in at.info)
    assert [m.value for m in at.metric][:2] == ["0 days", "0 days"]


def test_totals_streak_charts_and_patterns(db: MealStore) -> None:
    seed(db, days=4)
    at = open_page("ana")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Current streak"] == "4 days"
    assert metrics["Meals in range"] == "4"
    assert metrics["Energy today"] == f"{facts_for('pizza').kcal:,.0f} kcal"
    specs = chart_specs(at)
    titles = {s.get("title") if isinstance(s.get("title"), str) else
              (s.get("layer") or [{}])[0].get("title") for s in specs}
    assert {"Macronutrients per day", "Calories against target"} <= titles, titles
    layered = next(s for s in specs if "layer" in s)
    assert layered["layer"][1]["mark"]["type"] == "rule"  # the target line
    # A pizza a day: 2.5 g fibre for 285 kcal = 8.8 g per 1,000 kcal, below 14 -> caution.
    assert any("Too little fibre" in w.value and "caution" in w.value for w in at.warning)
    assert at.get("download_button")


def test_edit_and_delete_a_meal(db: MealStore) -> None:
    first, second = seed(db, days=2)  # today's, yesterday's
    at = open_page("ana")
    assert at.selectbox(key="meals_edit_pick").value == first  # the newest meal comes first
    at.selectbox(key="meals_edit_pick").set_value(second)
    at.run()
    at.number_input(key="meals_edit_portion").set_value(2.5)
    at.selectbox(key="meals_edit_type").set_value("dinner")
    at.selectbox(key="meals_edit_label").set_value("hamburger")
    at.button(key="FormSubmitter:meals_edit-Save changes").click()
    at.run()
    assert not at.exception, at.exception
    edited = db.get_meal("ana", second)
    assert (edited.portion, edited.meal_type, edited.label) == (2.5, "dinner", "hamburger")
    assert edited.per_serving == facts_for("hamburger")

    at.selectbox(key="meals_edit_pick").set_value(first)
    at.run()
    assert at.button(key="meals_delete").disabled  # needs the confirmation first
    at.checkbox(key="meals_delete_confirm").check()
    at.run()
    at.button(key="meals_delete").click()
    at.run()
    assert not at.exception
    assert db.meals("ana")["id"].tolist() == [second]


def test_log_unknown_food_by_hand(db: MealStore) -> None:
    db.ensure_user("ana")
    at = open_page("ana")
    at.text_input(key="meals_manual_label").input("grandma's stew")
    at.button(key="FormSubmitter:meals_manual-Log meal").click()
    at.run()
    assert any("enter its nutrition manually" in e.value for e in at.error)
    assert db.meals("ana").empty

    at.text_input(key="meals_manual_label").input("grandma's stew")
    at.number_input(key="meals_manual_kcal").set_value(420.0)
    at.number_input(key="meals_manual_protein_g").set_value(30.0)
    at.number_input(key="meals_manual_carbohydrate_g").set_value(35.0)
    at.number_input(key="meals_manual_fat_g").set_value(16.0)
    at.number_input(key="meals_manual_portion").set_value(2.0)
    at.button(key="FormSubmitter:meals_manual-Log meal").click()
    at.run()
    assert not at.exception
    assert any("Logged meal" in s.value for s in at.success)
    row = db.meals("ana").iloc[0]
    assert row["label"] == "grandma's stew" and row["manual"] and row["kcal"] == 840


def test_targets_can_be_changed(db: MealStore) -> None:
    seed(db, days=1)
    at = open_page("ana")
    at.number_input(key="meals_target_kcal").set_value(250.0)
    at.number_input(key="meals_target_protein_g").set_value(90.0)
    at.button(key="FormSubmitter:meals_targets-Save targets").click()
    at.run()
    assert not at.exception
    assert db.targets_for("ana") == Targets(kcal=250, protein_g=90)
    energy = next(c for c in charts(at) if "layer" in json.loads(c.proto.spec))
    data = chart_data(energy)  # the target line and the over-target colour follow the new target
    assert set(data["target"]) == {250}
    assert data["over"].sum() == 1 and data.loc[data["over"], "kcal"].item() == facts_for("pizza").kcal
    assert len(data) == 14  # every day of the default two-week range, logged or not


def test_standalone_page_offers_a_user_selector(db: MealStore) -> None:
    seed(db, "bob", days=1)
    db.ensure_user("ana")
    at = open_page(None)
    assert not at.exception
    picker = at.selectbox(key="meals_user_pick")
    assert picker.options == ["ana", "bob", "New user…"]
    picker.set_value("bob")
    at.run()
    assert {m.label: m.value for m in at.metric}["Meals in range"] == "1"


def test_runs_under_the_apps_navigation_with_the_sidebar_user(db: MealStore) -> None:
    seed(db, "analyst", days=2)
    at = AppTest.from_file(str(Path(PAGE).parents[1] / "app.py"), default_timeout=120).run()
    at.switch_page("pages/meals.py")
    at.run()
    assert not at.exception
    assert any("User **analyst**" in c.value for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Current streak"] == "2 days"
