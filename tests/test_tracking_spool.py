"""The durable spool on its own: no MLflow, no model, milliseconds per test."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from nutrilearn.tracking.records import (
    PREDICTION_FIELDS,
    feedback_from_json,
    prediction_from_json,
    rows_to_table,
    row_from_json,
)
from nutrilearn.tracking.spool import Spool, SpoolError, batch_id_for, new_owner
from tracking_fixtures import make_feedback, make_record


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def _fill(spool: Spool, n: int, grp: str = "g", kind: str = "predictions") -> list[str]:
    ids = []
    for i in range(n):
        rec = make_record(i)
        spool.append(kind, grp, rec.request_id, rec.to_json())
        ids.append(rec.request_id)
    return ids


def test_record_json_round_trip_keeps_every_field():
    for i in (0, 16):  # an ok record and an error record
        rec = make_record(i)
        back = prediction_from_json(rec.to_json())
        assert back == rec
        assert back.timestamp.tzinfo is not None and len(back.embedding or b"") in (0, 256)
    fb = make_feedback(make_record(1), label="bagel")
    assert feedback_from_json(fb.to_json()) == fb


def test_rows_to_table_has_the_record_schema_even_for_all_null_columns():
    rows = [row_from_json(make_record(16).to_json())]  # an error: no label, no embedding
    table = rows_to_table(rows, "predictions")
    assert tuple(table.column_names) == PREDICTION_FIELDS
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("confidence").type) == "double"


def test_claim_by_size_age_and_force(spool):
    owner = new_owner()
    ids = _fill(spool, 25)
    assert not spool.due(owner, max_records=30, max_age_s=60)
    assert spool.claim(owner, max_records=30, max_age_s=60, lease_s=60) is None
    batch = spool.claim(owner, max_records=10, max_age_s=60, lease_s=60)
    assert [r.request_id for r in batch.rows] == ids[:10]
    assert batch.batch_id == batch_id_for("predictions", "g", ids[:10])
    spool.complete(batch.batch_id)
    # old enough: the rest goes even though the batch is not full
    batch = spool.claim(owner, max_records=100, max_age_s=0.0, lease_s=60)
    assert [r.request_id for r in batch.rows] == ids[10:]
    spool.complete(batch.batch_id)
    assert spool.pending_count() == 0
    _fill(spool, 1)
    assert spool.claim(owner, max_records=100, max_age_s=60, lease_s=60, force=True) is not None


def test_batches_never_mix_groups_or_kinds(spool):
    owner = new_owner()
    _fill(spool, 3, grp="v1")
    _fill(spool, 3, grp="v2")
    _fill(spool, 2, grp="feedback", kind="feedback")
    seen = set()
    while (batch := spool.claim(owner, max_records=100, max_age_s=0, lease_s=60)) is not None:
        seen.add((batch.kind, batch.grp, len(batch)))
        spool.complete(batch.batch_id)
    assert seen == {("predictions", "v1", 3), ("predictions", "v2", 3), ("feedback", "feedback", 2)}


def test_released_batch_comes_back_with_the_same_id_and_rows(spool):
    a, b = new_owner(), new_owner()
    _fill(spool, 5)
    first = spool.claim(a, max_records=10, max_age_s=0, lease_s=60)
    assert spool.claim(b, max_records=10, max_age_s=0, lease_s=60) is None  # leased to a
    spool.release(first.batch_id, a, "ConnectionError: down")
    again = spool.claim(b, max_records=10, max_age_s=0, lease_s=60)
    assert (again.batch_id, again.rows, again.attempts) == (first.batch_id, first.rows, 1)
    assert spool.stats().batches_retrying == 1


def test_expired_lease_and_dead_owner_are_taken_over(spool, tmp_path):
    _fill(spool, 4)
    live = new_owner()
    batch = spool.claim(live, max_records=10, max_age_s=0, lease_s=0.5)
    other = new_owner()
    assert spool.claim(other, max_records=10, max_age_s=0, lease_s=60) is None
    later = spool.claim(other, max_records=10, max_age_s=0, lease_s=60, now=batch_time(spool) + 1.0)
    assert later.batch_id == batch.batch_id
    # an owner process that has exited: taken at once, lease or not
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = other.split("|")[0]
    dead = f"{host}|{proc.stdout.strip()}|deadbeef0000"
    spool.release(later.batch_id, other)
    spool.claim(dead, max_records=10, max_age_s=0, lease_s=3600)
    assert spool.claim(other, max_records=10, max_age_s=0, lease_s=60).batch_id == batch.batch_id


def batch_time(spool: Spool) -> float:
    return spool._read("SELECT MAX(lease_until) FROM batches")[0][0]


def test_appends_from_threads_are_all_kept(spool):
    def worker(k):
        for i in range(50):
            spool.append("predictions", "g", f"{k}-{i}", b"{}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert spool.pending_count() == 200
    assert len(list(spool.pending_payloads("predictions"))) == 200


def test_reopen_keeps_records_and_claims(tmp_path):
    s = Spool(tmp_path / "sp")
    ids = _fill(s, 3)
    owner = new_owner()
    batch = s.claim(owner, max_records=2, max_age_s=0, lease_s=60)
    s.close()
    s2 = Spool(tmp_path / "sp")
    assert s2.pending_count() == 3 and s2.stats().claimed == 2
    assert s2.claim(owner, max_records=2, max_age_s=0, lease_s=60).batch_id == batch.batch_id
    assert [r["request_id"] for r in map(row_from_json, s2.pending_payloads("predictions"))] == ids
    s2.close()


def test_unknown_kind_and_closed_spool_are_refused(spool):
    with pytest.raises(ValueError):
        spool.append("metrics", "g", "x", b"{}")
    spool.close()
    with pytest.raises(SpoolError):
        spool.append("predictions", "g", "x", b"{}")


def test_batch_id_is_deterministic_and_hex():
    a = batch_id_for("predictions", "g", ["x", "y"])
    assert a == batch_id_for("predictions", "g", ["x", "y"]) != batch_id_for("predictions", "g", ["y", "x"])
    assert len(a) == 32 and set(a) <= set("0123456789abcdef")


def test_flush_through_forces_only_what_was_there(spool):
    owner = new_owner()
    _fill(spool, 3)
    through = spool.max_seq()
    _fill(spool, 2)  # arrive after the flush was asked for
    first = spool.claim(owner, max_records=100, max_age_s=60, lease_s=60, flush_through=through)
    assert len(first) == 5  # the oldest rows of the group, up to the batch size
    spool.complete(first.batch_id)
    _fill(spool, 2)
    assert not spool.due(owner, max_records=100, max_age_s=60, flush_through=through)
    assert spool.claim(owner, max_records=100, max_age_s=60, lease_s=60, flush_through=through) is None


def test_normal_sync_mode_and_bad_mode(tmp_path):
    s = Spool(tmp_path / "n", sync="normal")
    assert s._read("PRAGMA synchronous")[0][0] == 1  # NORMAL
    s.claim(new_owner(), max_records=1, max_age_s=0, lease_s=1)
    assert s._read("PRAGMA synchronous")[0][0] == 1  # restored after bookkeeping
    s.close()
    full = Spool(tmp_path / "f", sync="full")
    full.claim(new_owner(), max_records=1, max_age_s=0, lease_s=1)
    assert full._read("PRAGMA synchronous")[0][0] == 2  # FULL
    full.close()
    with pytest.raises(ValueError):
        Spool(tmp_path / "x", sync="off")


def test_numpy_values_in_a_record_are_stored_as_plain_numbers():
    import numpy as np

    rec = make_record(0)
    rec.confidence, rec.top5_probs, rec.image_width = np.float32(0.5), np.array([0.5, 0.25]), np.int64(7)
    back = prediction_from_json(rec.to_json())
    assert (back.confidence, back.top5_probs, back.image_width) == (0.5, [0.5, 0.25], 7)


def test_group_commit_syncs_the_wal_soon_after_an_append(tmp_path, monkeypatch):
    """Default mode: the append returns before the disk; a background fsync follows within ~50 ms."""
    import os as _os
    import time as _time

    from nutrilearn.tracking import spool as spool_mod

    synced: list[float] = []
    real_fsync = _os.fsync
    monkeypatch.setattr(spool_mod.os, "fsync", lambda fd: (synced.append(_time.monotonic()), real_fsync(fd))[1])
    sp = spool_mod.Spool(tmp_path, sync="group")
    try:
        _time.sleep(0.2)
        assert synced == []  # nothing appended, nothing to sync
        t0 = _time.monotonic()
        sp.append("predictions", "g", "a" * 32, b"{}")
        deadline = t0 + 2.0
        while not synced and _time.monotonic() < deadline:
            _time.sleep(0.01)
        assert synced and synced[0] - t0 < 1.0
    finally:
        sp.close()


def test_processes_opening_a_new_spool_at_once_all_open_it(tmp_path):
    """Setting WAL mode takes an exclusive lock, and SQLite refuses it at once ("database is
    locked") rather than waiting while another process opens the same new file: every
    process must still open the spool and append."""
    code = ("import sys, time\n"
            "from pathlib import Path\n"
            "from nutrilearn.tracking.spool import Spool\n"
            "go = Path(sys.argv[2])\n"
            "while not go.exists():\n"
            "    time.sleep(0.001)\n"
            "s = Spool(sys.argv[1])\n"
            "s.close()\n")
    go = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "spool"), str(go)],
                                 stderr=subprocess.PIPE, text=True) for _ in range(8)]
    go.touch()
    errors = [c.communicate(timeout=120)[1] for c in children]
    assert [c.returncode for c in children] == [0] * 8, "\n".join(errors)
