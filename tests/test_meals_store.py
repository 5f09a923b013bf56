"""MealStore: users, meals, snapshots, edits, scoping, targets and bad input."""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

import nutrilearn.meals.store as store_module
from tests.pg_fixtures import create_database, postgres_server  # noqa: F401 (a fixture: one cluster a session)
from nutrilearn.config import Settings
from nutrilearn.meals import (
    DEFAULT_TARGETS,
    MEAL_COLUMNS,
    MealEntry,
    MealStore,
    NotFoundError,
    Targets,
    UnknownFoodError,
    manual_facts,
)
from nutrilearn.nutrition import facts_for

UTC = dt.UTC


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meals.db'}"
    server = request.getfixturevalue("postgres_server")
    return create_database(server, f"t_{uuid.uuid4().hex[:12]}")  # a generated name, never user text


@pytest.fixture
def store(db_url: str) -> MealStore:
    s = MealStore(db_url, lock_timeout_s=5)
    yield s
    s.close()


def at(y: int, m: int, d: int, hh: int = 12, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=UTC)


def test_sqlite_parent_folders_are_created(tmp_path: Path) -> None:
    MealStore(f"sqlite:///{tmp_path / 'a' / 'b' / 'meals.db'}").close()
    assert (tmp_path / "a" / "b" / "meals.db").is_file()


def test_from_settings_creates_the_sqlite_file_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUTRILEARN_HOME", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = MealStore.from_settings(Settings.from_env())
    s.ensure_user("ana")
    assert (tmp_path / "data" / "meals.db").is_file()
    s.close()


def test_database_url_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUTRILEARN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere' / 'x.db'}")
    s = MealStore.from_settings()
    s.ensure_user("ana")
    assert (tmp_path / "elsewhere" / "x.db").is_file()
    assert not (tmp_path / "home" / "data" / "meals.db").exists()
    s.close()


def test_users(store: MealStore) -> None:
    assert store.list_users() == []
    ana = store.ensure_user("  ana ", "Europe/Lisbon")
    assert ana.name == "ana" and ana.time_zone == "Europe/Lisbon"
    assert ana.targets == DEFAULT_TARGETS
    again = store.ensure_user("ana", "Asia/Tokyo")  # existing user keeps their zone
    assert again.id == ana.id and again.time_zone == "Europe/Lisbon"
    store.ensure_user("Bob")
    store.ensure_user("carol")
    assert store.list_users() == ["ana", "Bob", "carol"]
    assert store.set_time_zone("ana", "Asia/Tokyo").time_zone == "Asia/Tokyo"
    assert store.get_user("nobody") is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\there"])
def test_bad_user_names_rejected(store: MealStore, name: str) -> None:
    with pytest.raises(ValueError, match="user name"):
        store.ensure_user(name)


def test_bad_time_zone_rejected(store: MealStore) -> None:
    with pytest.raises(ValueError, match="IANA"):
        store.ensure_user("ana", "Mars/Olympus")
    store.ensure_user("ana")
    with pytest.raises(ValueError, match="IANA"):
        store.set_time_zone("ana", "../../etc/passwd")


def test_user_text_is_data_not_sql(store: MealStore) -> None:
    evil = "x'); DROP TABLE meals; --"
    store.ensure_user(evil)
    store.log_meal(MealEntry(user=evil, label="pizza", meal_type="lunch"))
    assert store.list_users() == [evil]
    assert len(store.meals(evil)) == 1


def test_log_meal_snapshots_table_values_times_portion(store: MealStore) -> None:
    store.ensure_user("ana")
    pizza = facts_for("pizza")
    meal_id = store.log_meal(MealEntry(user="ana", label="pizza", meal_type="lunch", portion=1.5,
                                       eaten_at=at(2026, 5, 4), predicted_label="pizza",
                                       request_id="req-1"))
    df = store.meals("ana")
    assert list(df.columns) == list(MEAL_COLUMNS)
    row = df.iloc[0]
    assert row["id"] == meal_id
    assert row["kcal"] == pytest.approx(1.5 * pizza.kcal)
    assert row["protein_g"] == pytest.approx(1.5 * pizza.protein_g)
    assert row["grams"] == pytest.approx(1.5 * pizza.serving_g)
    assert row["name"] == "Pizza" and row["request_id"] == "req-1"
    assert not row["corrected"] and not row["manual"]
    meal = store.get_meal("ana", meal_id)
    assert meal.per_serving == pizza
    assert meal.eaten_at == at(2026, 5, 4)


def test_snapshot_survives_table_changes(store: MealStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.ensure_user("ana")
    first = store.log_meal(MealEntry(user="ana", label="banana", meal_type="snack"))
    original = facts_for("banana")
    changed = manual_facts("banana", kcal=999, protein_g=1, carbohydrate_g=240, fat_g=1)
    monkeypatch.setattr(store_module, "facts_for", lambda label: changed if label == "banana" else None)
    second = store.log_meal(MealEntry(user="ana", label="banana", meal_type="snack"))
    store.update_meal("ana", first, portion=2)  # editing the portion keeps the old snapshot
    assert store.get_meal("ana", first).per_serving.kcal == original.kcal
    assert store.get_meal("ana", first).totals.kcal == pytest.approx(2 * original.kcal)
    assert store.get_meal("ana", second).per_serving.kcal == 999


def test_correction_is_visible(store: MealStore) -> None:
    store.ensure_user("ana")
    meal_id = store.log_meal(MealEntry(user="ana", label="sushi", meal_type="dinner",
                                       predicted_label="sashimi", request_id="r9"))
    row = store.meals("ana").iloc[0]
    assert row["corrected"] and row["predicted_label"] == "sashimi" and row["label"] == "sushi"
    assert row["kcal"] == pytest.approx(facts_for("sushi").kcal)
    assert MealEntry(user="a", label="x", meal_type="snack", predicted_label="x").corrected is False
    assert store.get_meal("ana", meal_id).request_id == "r9"


@pytest.mark.parametrize("portion", [-1, -0.5, math.nan, math.inf, 21, 1000])
def test_bad_portions_rejected_with_the_allowed_range(store: MealStore, portion: float) -> None:
    store.ensure_user("ana")
    with pytest.raises(ValueError, match="between 0 and 20 servings"):
        MealEntry(user="ana", label="pizza", meal_type="lunch", portion=portion)
    meal_id = store.log_meal(MealEntry(user="ana", label="pizza", meal_type="lunch"))
    with pytest.raises(ValueError, match="between 0 and 20 servings"):
        store.update_meal("ana", meal_id, portion=portion)
    assert store.get_meal("ana", meal_id).portion == 1.0


def test_bad_meal_type_and_label(store: MealStore) -> None:
    with pytest.raises(ValueError, match="breakfast, lunch, dinner, snack"):
        MealEntry(user="ana", label="pizza", meal_type="brunch")
    with pytest.raises(ValueError, match="label"):
        MealEntry(user="ana", label="  ", meal_type="lunch")


def test_unknown_food_needs_manual_nutrition(store: MealStore) -> None:
    store.ensure_user("ana")
    with pytest.raises(UnknownFoodError, match="enter its nutrition manually"):
        store.log_meal(MealEntry(user="ana", label="grandma's stew", meal_type="dinner"))
    assert store.meals("ana").empty
    facts = manual_facts("grandma's stew", serving_g=350, kcal=420, protein_g=30,
                         carbohydrate_g=35, fat_g=16, fibre_g=6)
    store.log_meal(MealEntry(user="ana", label="grandma's stew", meal_type="dinner",
                             portion=0.5, nutrition=facts))
    row = store.meals("ana").iloc[0]
    assert row["manual"] and row["source"] == "manual entry"
    assert row["kcal"] == pytest.approx(210) and row["grams"] == pytest.approx(175)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kcal": -1}, "kcal must be between 0"),
        ({"fat_g": math.nan}, "fat_g must be between 0"),
        ({"kcal": 50_000}, "kcal must be between 0 and 10000"),
        ({"protein_g": "lots"}, "protein_g must be a number"),
        ({"serving_g": 0}, "serving_g must be more than 0"),
        ({"fibre_g": 50}, "cannot exceed"),
    ],
)
def test_manual_nutrition_validated(kwargs: dict, message: str) -> None:
    values = {"kcal": 300, "protein_g": 10, "carbohydrate_g": 40, "fat_g": 10, "fibre_g": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        manual_facts("stew", **values)


def test_relabel_takes_a_new_snapshot(store: MealStore) -> None:
    store.ensure_user("ana")
    meal_id = store.log_meal(MealEntry(user="ana", label="hot_dog", meal_type="lunch",
                                       predicted_label="hot_dog", portion=2))
    meal = store.update_meal("ana", meal_id, label="hamburger", meal_type="dinner")
    assert meal.label == "hamburger" and meal.meal_type == "dinner"
    assert meal.per_serving == facts_for("hamburger")
    assert meal.totals.kcal == pytest.approx(2 * facts_for("hamburger").kcal)
    assert store.meals("ana").iloc[0]["corrected"]
    with pytest.raises(UnknownFoodError):
        store.update_meal("ana", meal_id, label="mystery")
    assert store.get_meal("ana", meal_id).label == "hamburger"


def test_edit_time_and_delete(store: MealStore) -> None:
    store.ensure_user("ana", "America/New_York")
    meal_id = store.log_meal(MealEntry(user="ana", label="bagel", meal_type="breakfast",
                                       eaten_at=dt.datetime(2026, 7, 1, 8, 0)))  # naive = local
    assert store.get_meal("ana", meal_id).eaten_at == at(2026, 7, 1, 12, 0)  # EDT is UTC-4
    store.update_meal("ana", meal_id, eaten_at=dt.datetime(2026, 7, 2, 7, 30))
    assert store.get_meal("ana", meal_id).eaten_at == at(2026, 7, 2, 11, 30)
    store.delete_meal("ana", meal_id)
    assert store.meals("ana").empty
    with pytest.raises(NotFoundError):
        store.delete_meal("ana", meal_id)


def test_meals_are_scoped_to_their_user(store: MealStore) -> None:
    store.ensure_user("ana")
    store.ensure_user("bob")
    ana_meal = store.log_meal(MealEntry(user="ana", label="pizza", meal_type="lunch"))
    store.log_meal(MealEntry(user="bob", label="ramen", meal_type="lunch"))
    assert store.meals("ana")["label"].tolist() == ["pizza"]
    assert store.meals("bob")["label"].tolist() == ["ramen"]
    with pytest.raises(NotFoundError):
        store.update_meal("bob", ana_meal, portion=3)
    with pytest.raises(NotFoundError):
        store.delete_meal("bob", ana_meal)
    with pytest.raises(NotFoundError):
        store.get_meal("bob", ana_meal)
    assert store.get_meal("ana", ana_meal).portion == 1
    with pytest.raises(NotFoundError, match="ensure_user"):
        store.log_meal(MealEntry(user="zed", label="pizza", meal_type="lunch"))
    with pytest.raises(NotFoundError):
        store.meals("zed")


def test_date_range_uses_the_users_calendar(store: MealStore) -> None:
    store.ensure_user("lee", "America/Los_Angeles")
    # 2026-03-01 07:00 UTC is 2026-02-28 23:00 in Los Angeles (PST, UTC-8).
    store.log_meal(MealEntry(user="lee", label="tacos", meal_type="dinner", eaten_at=at(2026, 3, 1, 7, 0)))
    store.log_meal(MealEntry(user="lee", label="bagel", meal_type="breakfast", eaten_at=at(2026, 3, 1, 16, 0)))
    feb = store.meals("lee", dt.date(2026, 2, 28), dt.date(2026, 2, 28))
    assert feb["label"].tolist() == ["tacos"]
    assert feb.iloc[0]["date"] == dt.date(2026, 2, 28)
    assert feb.iloc[0]["eaten_at"].hour == 23
    assert store.meals("lee", dt.date(2026, 3, 1), dt.date(2026, 3, 1))["label"].tolist() == ["bagel"]
    assert store.meals("lee", start=dt.date(2026, 3, 2)).empty
    assert store.meals("lee", end=dt.date(2026, 3, 1))["label"].tolist() == ["tacos", "bagel"]


def test_targets_default_set_reset(store: MealStore) -> None:
    store.ensure_user("ana")
    assert store.targets_for("ana") == Targets(2000, 50, 275, 78, 28)
    mine = Targets(kcal=2400, protein_g=120, carbohydrate_g=250, fat_g=80, fibre_g=35)
    store.set_targets("ana", mine)
    assert store.targets_for("ana") == mine
    assert store.get_user("ana").targets == mine
    store.set_targets("ana", Targets(kcal=1800))
    assert store.targets_for("ana").kcal == 1800
    store.reset_targets("ana")
    assert store.targets_for("ana") == DEFAULT_TARGETS
    with pytest.raises(NotFoundError):
        store.targets_for("nobody")


@pytest.mark.parametrize("kwargs", [{"kcal": 0}, {"kcal": -100}, {"fat_g": math.inf}, {"kcal": 20000}])
def test_bad_targets_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be more than 0"):
        Targets(**kwargs)
