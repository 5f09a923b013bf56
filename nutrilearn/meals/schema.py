"""Tables of the meal log and the forward migrations that build them.

The database records its schema version in ``schema_version`` (one row per applied
step). A new database is built by running every step from version 0, so a fresh
database and an upgraded one go through the same DDL. Steps only ever add: no step
drops or rewrites a table, which is what keeps meals across upgrades. Each step runs
inside the caller's transaction, so a failed upgrade leaves the previous version intact.

Times are stored as naive UTC ``DateTime`` values on every backend.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# Columns per schema version. A released version's columns never change: migrations
# only add, so the current tables are the union of every version's columns.


def _schema_version_columns() -> list[sa.Column]:
    return [
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("applied_at", sa.DateTime, nullable=False),
    ]


def _users_columns_v1() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    ]


def _meals_columns_v1() -> list[sa.Column]:
    """Users' meals with a per-serving snapshot of the nutrition facts at logging time."""
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("eaten_at", sa.DateTime, nullable=False),
        sa.Column("meal_type", sa.String(16), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("portion", sa.Float, nullable=False),
        *[sa.Column(n, sa.Float, nullable=False)
          for n in ("serving_g", "kcal", "protein_g", "carbohydrate_g", "fat_g", "fibre_g")],
        sa.Column("created_at", sa.DateTime, nullable=False),
    ]


def _meals_columns_v2() -> list[sa.Column]:
    """Where a label came from (prediction, correction, manual entry) and edit times."""
    return [
        sa.Column("predicted_label", sa.String(128), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("nutrition_source", sa.String(400), nullable=False, server_default=""),
        sa.Column("manual", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    ]


def _user_targets_columns_v3() -> list[sa.Column]:
    """Per-user daily targets (no row = the documented defaults)."""
    return [
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        *[sa.Column(n, sa.Float, nullable=False)
          for n in ("kcal", "protein_g", "carbohydrate_g", "fat_g", "fibre_g")],
        sa.Column("updated_at", sa.DateTime, nullable=False),
    ]


def _users_columns_v4() -> list[sa.Column]:
    """The login provider's display name of a user (their name is then ``sub:<subject>``)."""
    return [sa.Column("display_name", sa.String(128), nullable=True)]


# The tables as the current code reads and writes them (schema version LATEST_VERSION).
metadata = sa.MetaData()
schema_version = sa.Table("schema_version", metadata, *_schema_version_columns())
users = sa.Table("users", metadata, *_users_columns_v1(), *_users_columns_v4())
meals = sa.Table("meals", metadata, *_meals_columns_v1(), *_meals_columns_v2())
user_targets = sa.Table("user_targets", metadata, *_user_targets_columns_v3())


class SchemaError(RuntimeError):
    """The database's schema is one this code cannot use (newer, or not a meal log)."""


def _to_v1(conn: Connection) -> None:
    md = sa.MetaData()
    for table in (
        sa.Table("schema_version", md, *_schema_version_columns()),
        sa.Table("users", md, *_users_columns_v1()),
        sa.Table("meals", md, *_meals_columns_v1()),
    ):
        table.create(conn)


def _add_column(conn: Connection, table: str, column: sa.Column) -> None:
    """ALTER TABLE ADD COLUMN from a Column definition (names and types are constants)."""
    type_sql = column.type.compile(dialect=conn.dialect)
    default = ""
    if column.server_default is not None:
        arg = column.server_default.arg
        literal = f"'{arg}'" if isinstance(arg, str) else str(arg.compile(dialect=conn.dialect))
        default = f" DEFAULT {literal}"
    null_sql = "NULL" if column.nullable else "NOT NULL"
    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column.name} {type_sql}{default} {null_sql}")


def _to_v2(conn: Connection) -> None:
    for column in _meals_columns_v2():
        _add_column(conn, "meals", column)
    conn.exec_driver_sql("CREATE INDEX ix_meals_user_eaten ON meals (user_id, eaten_at)")


def _to_v3(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table("users", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("user_targets", md, *_user_targets_columns_v3()).create(conn)


def _to_v4(conn: Connection) -> None:
    for column in _users_columns_v4():
        _add_column(conn, "users", column)


#: MIGRATIONS[i] takes the schema from version i to version i + 1.
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (_to_v1, _to_v2, _to_v3, _to_v4)
LATEST_VERSION: int = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    """The schema version recorded in the database (0 for an empty database)."""
    inspector = sa.inspect(conn)
    if not inspector.has_table("schema_version"):
        if inspector.has_table("meals") or inspector.has_table("users"):
            raise SchemaError(
                "the database has meal tables but no schema_version table; "
                "it was not created by NutriLearn and will not be modified"
            )
        return 0
    found = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
    return int(found or 0)


def migrate(conn: Connection, target: int = LATEST_VERSION) -> tuple[int, int]:
    """Apply forward migrations up to ``target`` inside the caller's transaction.

    Returns (version before, version after). Refuses a database newer than this code,
    because writing to it with an older schema could lose columns' meaning.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"target schema version must be 0..{LATEST_VERSION}, got {target}")
    if conn.dialect.name == "postgresql":
        # Serialise concurrent upgrades from several app processes.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7230401)"))
    before = current_version(conn)
    if before > LATEST_VERSION:
        raise SchemaError(
            f"the meal database is at schema version {before}, newer than this NutriLearn "
            f"(knows up to {LATEST_VERSION}); upgrade NutriLearn instead"
        )
    for version in range(before, target):
        MIGRATIONS[version](conn)
        conn.execute(
            sa.insert(schema_version).values(
                version=version + 1, applied_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)
            )
        )
    return before, max(before, target)
