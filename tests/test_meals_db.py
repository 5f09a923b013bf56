"""The database under pressure: concurrent writers, a locked file, schema upgrades."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import nutrilearn.meals.schema as schema
from nutrilearn.meals.store import is_lock_error
from nutrilearn.meals import LATEST_VERSION, MealEntry, MealStore, SchemaError, StoreBusyError
from test_meals_store import db_url, postgres_server  # noqa: F401 - shared fixtures: every backend

ROOT = Path(__file__).resolve().parents[1]


def url_for(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'meals.db'}"


def test_two_threads_write_at_once_and_every_meal_is_kept(db_url: str) -> None:
    url = db_url
    MealStore(url).ensure_user("ana")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(tag: str) -> None:
        store = MealStore(url, busy_timeout_s=0.01)  # force our own retry loop to do the waiting
        try:
            start.wait()
            for i in range(40):
                store.log_meal(MealEntry(user="ana", label="pizza", meal_type="snack",
                                         request_id=f"{tag}-{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    ids = set(MealStore(url).meals("ana")["request_id"])
    assert ids == {f"{t}-{i}" for t in "ab" for i in range(40)}


WRITER = """
import sys
from nutrilearn.meals import MealEntry, MealStore
store = MealStore(sys.argv[1], busy_timeout_s=0.01)
store.ensure_user("ana")
for i in range(int(sys.argv[3])):
    store.log_meal(MealEntry(user="ana", label="banana", meal_type="snack",
                             request_id=f"{sys.argv[2]}-{i}"))
"""


def test_two_processes_write_at_once_and_every_meal_is_kept(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, tag, "30"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("p", "q")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    df = MealStore(url).meals("ana")
    assert len(df) == 60
    assert set(df["request_id"]) == {f"{t}-{i}" for t in "pq" for i in range(30)}
    assert MealStore(url).list_users() == ["ana"]


def _hold_lock(path: Path) -> sqlite3.Connection:
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("BEGIN EXCLUSIVE")
    return raw


def test_locked_database_retries_then_says_so(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    store = MealStore(url, lock_timeout_s=0.6, busy_timeout_s=0.05)
    store.ensure_user("ana")
    raw = _hold_lock(tmp_path / "meals.db")
    try:
        began = time.monotonic()
        with pytest.raises(StoreBusyError, match=r"locked by another writer.*0\.6 s.*nothing was saved") as info:
            store.log_meal(MealEntry(user="ana", label="pizza", meal_type="lunch"))
        assert time.monotonic() - began >= 0.6
        assert "attempts" in str(info.value)
    finally:
        raw.rollback()
        raw.close()
    assert store.meals("ana").empty
    store.log_meal(MealEntry(user="ana", label="pizza", meal_type="lunch"))
    assert len(store.meals("ana")) == 1


def test_lock_released_in_time_means_the_write_succeeds(tmp_path: Path) -> None:
    url = url_for(tmp_path)
    store = MealStore(url, lock_timeout_s=10, busy_timeout_s=0.05)
    store.ensure_user("ana")
    raw = _hold_lock(tmp_path / "meals.db")
    releaser = threading.Timer(0.5, lambda: (raw.rollback(), raw.close()))
    releaser.start()
    began = time.monotonic()
    store.log_meal(MealEntry(user="ana", label="pizza", meal_type="lunch"))
    assert time.monotonic() - began >= 0.4  # it really waited for the lock
    releaser.join()
    assert len(store.meals("ana")) == 1


def _columns(url: str) -> dict[str, set[str]]:
    inspector = sa.inspect(sa.create_engine(url))
    return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}


def insert_version_1_rows(engine: sa.Engine, time_zone: str) -> None:
    """A user and a meal (2 servings of 250 kcal at 12:00 UTC) as version 1 wrote them."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO users (name, time_zone, created_at) VALUES ('ana', :tz, :t)"
        ), {"tz": time_zone, "t": dt.datetime(2025, 1, 1)})
        conn.execute(sa.text(
            "INSERT INTO meals (user_id, eaten_at, meal_type, label, name, portion, serving_g, kcal,"
            " protein_g, carbohydrate_g, fat_g, fibre_g, created_at) VALUES"
            " ((SELECT id FROM users WHERE name = 'ana'), :t, 'lunch', 'pizza', 'Pizza', 2, 100, 250,"
            " 10, 30, 9, 2, :t)"
        ), {"t": dt.datetime(2025, 1, 2, 12, 0)})


def test_upgrade_from_version_1_keeps_meals(db_url: str) -> None:
    url = db_url
    old = MealStore(url, migrate=False)
    assert old.upgrade(target=1) == (0, 1)
    assert old.schema_version() == 1
    insert_version_1_rows(old.engine, "Europe/Paris")
    old.close()

    store = MealStore(url)  # upgrades on open
    assert store.schema_version() == LATEST_VERSION
    df = store.meals("ana")
    assert len(df) == 1
    row = df.iloc[0]
    assert row["kcal"] == 500 and row["portion"] == 2 and row["label"] == "pizza"
    assert not row["manual"] and row["source"] == "" and not row["corrected"]
    assert row["eaten_at"].hour == 13  # 12:00 UTC shown in Paris (CET)
    # An upgraded database has exactly the tables and columns the code uses.
    assert _columns(url) == {t.name: set(t.columns.keys()) for t in schema.metadata.sorted_tables}
    # The new columns work on the upgraded data.
    store.set_targets("ana", store.targets_for("ana"))
    store.log_meal(MealEntry(user="ana", label="sushi", meal_type="dinner", predicted_label="sashimi"))
    assert store.meals("ana")["corrected"].tolist() == [False, True]
    with store.engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
    assert versions == list(range(1, LATEST_VERSION + 1))


def test_failed_upgrade_leaves_the_previous_version_intact(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = db_url
    store = MealStore(url, migrate=False)
    store.upgrade(target=2)
    insert_version_1_rows(store.engine, "UTC")

    real_step = schema.MIGRATIONS[2]

    def broken(conn: sa.Connection) -> None:
        real_step(conn)
        raise RuntimeError("disk full half way")

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS[:2], broken))
    with pytest.raises(RuntimeError, match="half way"):
        store.upgrade()
    assert store.schema_version() == 2
    assert "user_targets" not in _columns(url)  # the half-made table was rolled back
    monkeypatch.undo()
    store.upgrade()
    assert store.meals("ana")["kcal"].tolist() == [500]


def test_newer_database_is_refused(db_url: str) -> None:
    url = db_url
    MealStore(url).close()
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("INSERT INTO schema_version (version, applied_at) VALUES (99, :t)"),
                     {"t": dt.datetime(2030, 1, 1)})
    with pytest.raises(SchemaError, match="version 99, newer"):
        MealStore(url)


def test_foreign_database_is_not_touched(db_url: str) -> None:
    url = db_url
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("CREATE TABLE meals (x INTEGER)"))
    with pytest.raises(SchemaError, match="not created by NutriLearn"):
        MealStore(url)
    assert _columns(url) == {"meals": {"x"}}


def test_opening_twice_is_idempotent(db_url: str) -> None:
    url = db_url
    MealStore(url).ensure_user("ana")
    second = MealStore(url)
    assert second.upgrade() == (LATEST_VERSION, LATEST_VERSION)
    assert second.list_users() == ["ana"]


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "orig, retry",
    [
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("database table is locked: meals"), True),
        (_DriverError("deadlock detected", "40P01"), True),
        (_DriverError("could not serialize access", "40001"), True),
        (_DriverError("could not obtain lock on row", "55P03"), True),
        (sqlite3.OperationalError("no such table: meals"), False),
        (_DriverError("syntax error", "42601"), False),
    ],
)
def test_which_errors_are_retried(orig: Exception, retry: bool) -> None:
    assert is_lock_error(sa.exc.OperationalError("INSERT ...", {}, orig)) is retry
    assert is_lock_error(orig) is False  # only errors that came through SQLAlchemy


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    store = MealStore(url_for(tmp_path), lock_timeout_s=30)
    store.ensure_user("ana")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE user_targets")
    connects = []
    sa.event.listen(store.engine, "engine_connect", lambda conn: connects.append(conn))
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        store.targets_for("ana")
    assert len(connects) == 1  # one attempt: not retried as if the database were locked
