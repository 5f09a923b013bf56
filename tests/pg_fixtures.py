"""A throwaway PostgreSQL cluster for the tests that need a real server (meal log, MLflow backend).

Skips, saying why, where PostgreSQL's server programs or the psycopg driver are missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (or NUTRILEARN_TEST_POSTGRES_URL's server): its base URL.

    Skips, saying why, where PostgreSQL or the psycopg driver is not installed.
    """
    given = os.environ.get("NUTRILEARN_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server programs (initdb, pg_ctl) are not installed")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="nl-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)  # noqa: E731
    run(initdb, "-D", str(base / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(pg_ctl, "-D", str(base / "data"), "-l", str(base / "log"), "-w", "start",
        "-o", f"-k {base} -p {port} -c listen_addresses='' -c fsync=off -c full_page_writes=off")
    try:
        yield f"postgresql+psycopg://postgres@/{{db}}?host={base}&port={port}"
    finally:
        run(pg_ctl, "-D", str(base / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def create_database(base_url: str, name: str) -> str:
    """A new empty database on the cluster; returns its SQLAlchemy URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(base_url.format(db="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')  # a name the test made, never user text
    admin.dispose()
    return base_url.format(db=name)
