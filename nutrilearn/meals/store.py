"""The meal log store: users, meals and targets in SQLAlchemy (SQLite or PostgreSQL).

SQLite is the embedded default, and it is where two app sessions writing at once meet a
locked database. Writes therefore start with ``BEGIN IMMEDIATE`` (take the write lock
up front instead of failing half way), the file runs in WAL mode (readers never wait for
a writer), and every operation is retried with backoff on a lock error until
``lock_timeout_s`` has passed; then ``StoreBusyError`` says so in plain words.

Who may read and change a meal log is decided here, not by the pages: every user-scoped
method takes the acting identity (``actor``, a ``nutrilearn.auth.Identity``) and refuses
(``AccessDenied``) any log but the actor's own. The app opens its store with
``guarded=True``, where a call without an actor is refused too; the CLI and tests open it
unguarded, as the operator who owns the database file.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from nutrilearn.auth import AccessDenied, Identity, may_use_meal_log
from nutrilearn.nutrition import NutritionFacts, facts_for, validate_portion

from nutrilearn.meals import schema
from nutrilearn.meals.records import (
    MANUAL_SOURCE,
    Meal,
    MealEntry,
    UnknownFoodError,
    User,
    to_utc,
    today_in,
    validate_label,
    validate_meal_type,
    validate_time_zone,
    validate_user_name,
)
from nutrilearn.meals.streak import Streak, streak
from nutrilearn.meals.targets import DEFAULT_TARGETS, NUTRIENTS, Targets

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Columns of the DataFrame returned by ``MealStore.meals`` (amounts are portion totals).
MEAL_COLUMNS: tuple[str, ...] = (
    "id", "user", "eaten_at_utc", "eaten_at", "date", "meal_type", "label", "name",
    "predicted_label", "corrected", "portion", "grams", "kcal", "protein_g",
    "carbohydrate_g", "fat_g", "fibre_g", "manual", "source", "request_id",
)
_BEGIN = {"deferred": "BEGIN", "immediate": "BEGIN IMMEDIATE"}
# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock, lock not available.
_PG_RETRY_CODES = {"40001", "40P01", "55P03"}


class StoreBusyError(RuntimeError):
    """The database stayed locked by another writer for longer than the store waits."""


class NotFoundError(LookupError):
    """No such user, or no such meal for this user."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def is_lock_error(exc: BaseException) -> bool:
    """True for errors that mean 'someone else holds the lock; try again'."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    message = str(exc.orig).lower()
    if "database is locked" in message or "database table is locked" in message:
        return True
    code = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
    return code in _PG_RETRY_CODES


def _make_engine(url: str, busy_timeout_s: float) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own
        # implicit BEGIN is always DEFERRED).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("nutrilearn_begin", "deferred")
        conn.exec_driver_sql(_BEGIN[mode])

    return engine


class MealStore:
    """Users, their meals and targets. Every meal query is scoped to one user name."""

    def __init__(self, url: str, *, lock_timeout_s: float = 15.0, busy_timeout_s: float = 2.0,
                 migrate: bool = True, guarded: bool = False) -> None:
        if lock_timeout_s < 0 or busy_timeout_s < 0:
            raise ValueError("timeouts must not be negative")
        self.url = url
        self.guarded = guarded
        self.lock_timeout_s = lock_timeout_s
        self.engine = _make_engine(url, busy_timeout_s)
        if migrate:
            self.upgrade()

    @classmethod
    def from_settings(cls, settings: Any = None, **kwargs: Any) -> "MealStore":
        """The store at ``settings.database_url`` (``Settings.from_env()`` when None)."""
        if settings is None:
            from nutrilearn.config import Settings

            settings = Settings.from_env()
        return cls(settings.database_url, **kwargs)

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"MealStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    # -- who may -------------------------------------------------------------------------

    def _authorise(self, owner: str, actor: Identity | None) -> None:
        """Refuse unless ``actor`` owns the log called ``owner`` (or, unguarded, no actor)."""
        if actor is None:
            if self.guarded:
                raise AccessDenied("the meal log needs the acting user: nothing was read or changed")
            return
        if not may_use_meal_log(actor, owner):
            raise AccessDenied(f"{actor.record_as} may not read or change the meal log of {owner!r}: "
                               "a meal log is its owner's alone")

    # -- transactions ------------------------------------------------------------------

    def _run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """Run ``work`` in one transaction, retrying while the database is locked."""
        deadline = time.monotonic() + self.lock_timeout_s
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(nutrilearn_begin="immediate" if write else "deferred")
                    with conn.begin():
                        return work(conn)
            except sa.exc.DBAPIError as exc:
                if not is_lock_error(exc):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreBusyError(
                        f"the meal database is locked by another writer and stayed locked "
                        f"for {self.lock_timeout_s:g} s ({attempt} attempts); nothing was "
                        f"saved, try again in a moment"
                    ) from exc
                pause = min(0.05 * 2 ** min(attempt, 5), 0.5, remaining) * (0.5 + random.random() / 2)
                log.info("meal database locked (attempt %d), retrying in %.2f s", attempt, pause)
                time.sleep(pause)

    def upgrade(self, target: int = schema.LATEST_VERSION) -> tuple[int, int]:
        """Bring the schema up to ``target`` (default: the latest). Idempotent."""
        return self._run(lambda conn: schema.migrate(conn, target), write=True)

    def schema_version(self) -> int:
        return self._run(schema.current_version, write=False)

    # -- users ---------------------------------------------------------------------------

    def list_users(self, *, actor: Identity | None = None) -> list[str]:
        """All user names, sorted case-insensitively (unguarded, or local mode only: with a
        login, who else has a meal log is nobody's business)."""
        if (actor is None and self.guarded) or (actor is not None and not actor.is_local):
            raise AccessDenied("the list of users is not shown to logged-in users")
        rows = self._run(lambda c: c.execute(sa.select(schema.users.c.name)).scalars().all(),
                         write=False)
        return sorted(rows, key=str.casefold)

    @staticmethod
    def _user_row(conn: Connection, name: str) -> Any:
        return conn.execute(sa.select(schema.users).where(schema.users.c.name == name)).first()

    @staticmethod
    def _targets_for_id(conn: Connection, user_id: int) -> Targets:
        row = conn.execute(
            sa.select(schema.user_targets).where(schema.user_targets.c.user_id == user_id)
        ).first()
        if row is None:
            return DEFAULT_TARGETS
        return Targets(**{k: float(getattr(row, k)) for k in NUTRIENTS})

    def _require_user(self, conn: Connection, name: str) -> Any:
        row = self._user_row(conn, validate_user_name(name))
        if row is None:
            raise NotFoundError(f"no user named {name!r}")
        return row

    def get_user(self, name: str, *, actor: Identity | None = None) -> User | None:
        clean = validate_user_name(name)
        self._authorise(clean, actor)

        def work(conn: Connection) -> User | None:
            row = self._user_row(conn, clean)
            if row is None:
                return None
            return _user(row, self._targets_for_id(conn, row.id))

        return self._run(work, write=False)

    def ensure_user(self, name: str, time_zone: str = "UTC", *, actor: Identity | None = None,
                    display_name: str | None = None) -> User:
        """The user called ``name``, created with ``time_zone`` if new (existing zone kept).
        ``display_name`` (the login provider's name) is stored, and updated when it changed."""
        clean = validate_user_name(name)
        validate_time_zone(time_zone)
        shown = display_name.strip()[:128] if display_name and display_name.strip() else None
        existing = self.get_user(clean, actor=actor)  # a read: pages call this on every rerun
        if existing is not None and (shown is None or existing.display_name == shown):
            return existing

        def work(conn: Connection) -> User:
            row = self._user_row(conn, clean)
            if row is None:
                conn.execute(sa.insert(schema.users).values(
                    name=clean, time_zone=time_zone, created_at=_utcnow(), display_name=shown))
                row = self._user_row(conn, clean)
            elif shown is not None and row.display_name != shown:
                conn.execute(sa.update(schema.users).where(schema.users.c.id == row.id)
                             .values(display_name=shown))
                row = self._user_row(conn, clean)
            return _user(row, self._targets_for_id(conn, row.id))

        try:
            return self._run(work, write=True)
        except sa.exc.IntegrityError:
            # Another session created the same user between our read and insert.
            found = self.get_user(clean, actor=actor)
            if found is None:
                raise
            return found

    def set_time_zone(self, name: str, time_zone: str, *, actor: Identity | None = None) -> User:
        self._authorise(name, actor)
        validate_time_zone(time_zone)

        def work(conn: Connection) -> None:
            row = self._require_user(conn, name)
            conn.execute(sa.update(schema.users).where(schema.users.c.id == row.id)
                         .values(time_zone=time_zone))

        self._run(work, write=True)
        return self.get_user(name, actor=actor)  # type: ignore[return-value]

    def targets_for(self, name: str, *, actor: Identity | None = None) -> Targets:
        """The user's daily targets (the documented defaults until they set their own)."""
        self._authorise(name, actor)
        return self._run(lambda c: self._targets_for_id(c, self._require_user(c, name).id),
                         write=False)

    def set_targets(self, name: str, targets: Targets, *, actor: Identity | None = None) -> None:
        self._authorise(name, actor)

        def work(conn: Connection) -> None:
            user_id = self._require_user(conn, name).id
            values = {**targets.as_dict(), "updated_at": _utcnow()}
            table = schema.user_targets
            updated = conn.execute(sa.update(table).where(table.c.user_id == user_id).values(**values))
            if updated.rowcount == 0:
                conn.execute(sa.insert(table).values(user_id=user_id, **values))

        self._run(work, write=True)

    def reset_targets(self, name: str, *, actor: Identity | None = None) -> None:
        """Go back to the documented defaults."""
        self._authorise(name, actor)
        self._run(lambda c: c.execute(sa.delete(schema.user_targets).where(
            schema.user_targets.c.user_id == self._require_user(c, name).id)), write=True)

    # -- meals ---------------------------------------------------------------------------

    @staticmethod
    def _facts(label: str, nutrition: NutritionFacts | None) -> tuple[NutritionFacts, bool]:
        """Per-serving snapshot for a meal, and whether it was typed in by hand."""
        if nutrition is not None:
            return nutrition, nutrition.source == MANUAL_SOURCE or facts_for(label) is None
        facts = facts_for(label)
        if facts is None:
            raise UnknownFoodError(
                f"{label!r} is not in the nutrition table; enter its nutrition manually"
            )
        return facts, False

    @staticmethod
    def _snapshot_values(facts: NutritionFacts) -> dict[str, Any]:
        return {
            "name": facts.name[:128], "serving_g": facts.serving_g, "kcal": facts.kcal,
            "protein_g": facts.protein_g, "carbohydrate_g": facts.carbohydrate_g,
            "fat_g": facts.fat_g, "fibre_g": facts.fibre_g, "nutrition_source": facts.source[:400],
        }

    def log_meal(self, entry: MealEntry, *, actor: Identity | None = None) -> int:
        """Store a meal with a snapshot of its nutrition now; returns the meal id.

        Raises UnknownFoodError for a label outside the table without ``entry.nutrition``,
        AccessDenied when ``entry.user`` is not the actor.
        """
        self._authorise(entry.user, actor)
        facts, manual = self._facts(entry.label, entry.nutrition)
        if facts.label != entry.label:
            facts = replace(facts, label=entry.label)

        def work(conn: Connection) -> int:
            user = self._user_row(conn, validate_user_name(entry.user))
            if user is None:
                raise NotFoundError(f"no user named {entry.user!r}; call ensure_user first")
            eaten = to_utc(entry.eaten_at, user.time_zone) if entry.eaten_at else dt.datetime.now(dt.UTC)
            now = _utcnow()
            result = conn.execute(sa.insert(schema.meals).values(
                user_id=user.id, eaten_at=_naive_utc(eaten), meal_type=entry.meal_type,
                label=validate_label(entry.label), portion=float(entry.portion),
                predicted_label=entry.predicted_label, request_id=entry.request_id,
                manual=manual, created_at=now, updated_at=None, **self._snapshot_values(facts),
            ))
            return int(result.inserted_primary_key[0])

        return self._run(work, write=True)

    def get_meal(self, user: str, meal_id: int, *, actor: Identity | None = None) -> Meal:
        self._authorise(user, actor)

        def work(conn: Connection) -> Meal:
            owner = self._require_user(conn, user)
            row = conn.execute(sa.select(schema.meals).where(
                schema.meals.c.id == meal_id, schema.meals.c.user_id == owner.id)).first()
            if row is None:
                raise NotFoundError(f"no meal {meal_id} for user {user!r}")
            return _meal_from_row(row, owner.name)

        return self._run(work, write=False)

    def update_meal(
        self,
        user: str,
        meal_id: int,
        *,
        portion: float | None = None,
        meal_type: str | None = None,
        eaten_at: dt.datetime | None = None,
        label: str | None = None,
        nutrition: NutritionFacts | None = None,
        actor: Identity | None = None,
    ) -> Meal:
        """Change a meal. A new label (or new manual nutrition) takes a fresh snapshot;
        other edits keep the snapshot taken at logging time."""
        self._authorise(user, actor)
        values: dict[str, Any] = {}
        if portion is not None:
            values["portion"] = validate_portion(portion)
        if meal_type is not None:
            values["meal_type"] = validate_meal_type(meal_type)
        if label is not None or nutrition is not None:
            new_label = validate_label(label if label is not None else (nutrition.label if nutrition else ""))
            facts, manual = self._facts(new_label, nutrition)
            values.update(label=new_label, manual=manual, **self._snapshot_values(facts))

        def work(conn: Connection) -> None:
            owner = self._require_user(conn, user)
            if eaten_at is not None:
                values["eaten_at"] = _naive_utc(to_utc(eaten_at, owner.time_zone))
            if not values:
                return
            done = conn.execute(sa.update(schema.meals).where(
                schema.meals.c.id == meal_id, schema.meals.c.user_id == owner.id,
            ).values(**values, updated_at=_utcnow()))
            if done.rowcount == 0:
                raise NotFoundError(f"no meal {meal_id} for user {user!r}")

        self._run(work, write=True)
        return self.get_meal(user, meal_id, actor=actor)

    def delete_meal(self, user: str, meal_id: int, *, actor: Identity | None = None) -> None:
        """Delete one of the user's meals (NotFoundError if it is not theirs or gone)."""
        self._authorise(user, actor)

        def work(conn: Connection) -> None:
            owner = self._require_user(conn, user)
            done = conn.execute(sa.delete(schema.meals).where(
                schema.meals.c.id == meal_id, schema.meals.c.user_id == owner.id))
            if done.rowcount == 0:
                raise NotFoundError(f"no meal {meal_id} for user {user!r}")

        self._run(work, write=True)

    def meals(self, user: str, start: dt.date | None = None, end: dt.date | None = None, *,
              actor: Identity | None = None) -> pd.DataFrame:
        """The user's meals eaten on local dates ``start``..``end`` (inclusive), oldest first.

        Dates are calendar days in the user's time zone; amounts are portion totals.
        Columns: MEAL_COLUMNS.
        """
        self._authorise(user, actor)
        def work(conn: Connection) -> tuple[Any, list[Any]]:
            owner = self._require_user(conn, user)
            zone = ZoneInfo(owner.time_zone)
            query = sa.select(schema.meals).where(schema.meals.c.user_id == owner.id)
            if start is not None:
                low = dt.datetime.combine(start, dt.time(), zone)
                query = query.where(schema.meals.c.eaten_at >= _naive_utc(low))
            if end is not None:
                high = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone)
                query = query.where(schema.meals.c.eaten_at < _naive_utc(high))
            query = query.order_by(schema.meals.c.eaten_at, schema.meals.c.id)
            return owner, conn.execute(query).all()

        owner, rows = self._run(work, write=False)
        return meals_frame([_meal_from_row(r, owner.name) for r in rows], owner.time_zone)


    def logged_dates(self, user: str, *, actor: Identity | None = None) -> list[dt.date]:
        """Distinct local dates with at least one meal (reads only the times)."""
        self._authorise(user, actor)

        def work(conn: Connection) -> tuple[str, list[dt.datetime]]:
            owner = self._require_user(conn, user)
            times = conn.execute(sa.select(schema.meals.c.eaten_at)
                                 .where(schema.meals.c.user_id == owner.id)).scalars().all()
            return owner.time_zone, times

        time_zone, times = self._run(work, write=False)
        zone = ZoneInfo(time_zone)
        return sorted({t.replace(tzinfo=dt.UTC).astimezone(zone).date() for t in times})

    def streak(self, user: str, today: dt.date | None = None, *, actor: Identity | None = None) -> Streak:
        """The user's logging streak; ``today`` defaults to today in their time zone."""
        dates = self.logged_dates(user, actor=actor)
        if today is None:
            found = self.get_user(user, actor=actor)
            today = today_in(found.time_zone if found else "UTC")
        return streak(dates, today)


def _user(row: Any, targets: Targets) -> User:
    return User(row.id, row.name, row.time_zone, targets, getattr(row, "display_name", None))


def _meal_from_row(row: Any, user: str) -> Meal:
    facts = NutritionFacts(
        label=row.label, name=row.name, serving_g=row.serving_g, kcal=row.kcal,
        protein_g=row.protein_g, carbohydrate_g=row.carbohydrate_g, fat_g=row.fat_g,
        fibre_g=row.fibre_g, source=row.nutrition_source,
    )
    return Meal(
        id=row.id, user=user, eaten_at=row.eaten_at.replace(tzinfo=dt.UTC),
        meal_type=row.meal_type, portion=row.portion, per_serving=facts,
        predicted_label=row.predicted_label, request_id=row.request_id, manual=bool(row.manual),
    )


def meals_frame(meals: list[Meal], time_zone: str) -> pd.DataFrame:
    """Meals as a DataFrame with local times in ``time_zone`` (columns: MEAL_COLUMNS)."""
    zone = ZoneInfo(time_zone)
    records = []
    for m in meals:
        total = m.totals
        local = m.eaten_at.astimezone(zone)
        records.append({
            "id": m.id, "user": m.user, "eaten_at_utc": m.eaten_at, "eaten_at": local,
            "date": local.date(), "meal_type": m.meal_type, "label": m.label,
            "name": m.per_serving.name, "predicted_label": m.predicted_label,
            "corrected": m.predicted_label is not None and m.predicted_label != m.label,
            "portion": m.portion, "grams": total.serving_g, "kcal": total.kcal,
            "protein_g": total.protein_g, "carbohydrate_g": total.carbohydrate_g,
            "fat_g": total.fat_g, "fibre_g": total.fibre_g, "manual": m.manual,
            "source": m.per_serving.source, "request_id": m.request_id,
        })
    frame = pd.DataFrame.from_records(records, columns=list(MEAL_COLUMNS))
    frame["eaten_at_utc"] = pd.to_datetime(frame["eaten_at_utc"], utc=True)
    frame["eaten_at"] = pd.to_datetime(frame["eaten_at_utc"], utc=True).dt.tz_convert(zone)
    return frame
