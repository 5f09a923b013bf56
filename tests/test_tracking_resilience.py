"""Months without a restart: bad records, failing batches, full disks, pooled connections.

Every test here says what happens to each record: in MLflow, set aside (a dead letter
that can be retried), or reported to the caller as not logged. None is lost silently.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from nutrilearn.cli import main
from nutrilearn.tracking.logger import prediction_group
from nutrilearn.tracking.records import InvalidRecord
from nutrilearn.tracking.spool import Spool, SpoolError
from tracking_fixtures import free_port, make_feedback, make_record, raw_rows

pytest_plugins = ["tracking_fixtures"]


# -- records are checked at submit -------------------------------------------------------


@pytest.mark.parametrize("change, named", [
    (dict(confidence=float("nan")), "confidence is nan"),
    (dict(confidence=1.5), "confidence = 1.5 is outside"),
    (dict(filename="caf\udce9.jpg"), "filename is not valid UTF-8"),
    (dict(status="maybe"), "status must be"),
    (dict(top5_probs=[0.5]), "top5 has"),
    (dict(user=""), "user is empty"),
    (dict(embedding=b"x" * 4096), "embedding must be at most 512 bytes"),
    (dict(total_ms=-3.0), "total_ms = -3 is outside"),
])
def test_submit_refuses_a_record_that_could_never_be_written_and_stores_nothing(tracking, loggers, change, named):
    logger = loggers(tracking, start=False)
    record = make_record(0)
    for key, value in change.items():
        setattr(record, key, value)
    with pytest.raises(InvalidRecord, match=named):
        logger.submit(record)
    assert logger.spool_pending() == 0
    bad = make_feedback(make_record(1), label="bagel")
    bad.label = " "
    with pytest.raises(InvalidRecord, match="label is empty"):
        logger.submit_feedback(bad)
    assert logger.spool_pending() == 0


# -- a poisoned row never holds up the others ----------------------------------------------


def _fill(logger, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        rec = make_record(i, error=False)
        assert logger.submit(rec)
        ids.append(rec.request_id)
    return ids


def test_a_poisoned_spool_row_is_set_aside_and_every_good_record_goes_on(tracking, loggers):
    """A row the checks would refuse got into the spool anyway (an older version, a
    damaged file): it goes to the dead letters at the first attempt, alone."""
    logger = loggers(tracking, batch_max_records=50, start=False)
    good = _fill(logger, 120)
    grp = prediction_group(make_record(0, error=False))
    logger.spool.append("predictions", grp, "poison-json", b"{this is not json")
    broken = make_record(999, error=False)
    broken.confidence = "high"  # passes JSON, fails the checks
    logger.spool.append("predictions", grp, broken.request_id, broken.to_json())
    good += _fill(logger, 80, start=1000)
    assert logger.flush(timeout=60)
    assert sorted(raw_rows(tracking)) == sorted(good)  # all 200, once each
    dead = logger.dead_letters()
    assert sum(d.n for d in dead) == 2 and all(d.attempts == 0 for d in dead)
    status = logger.status()
    assert status.dead_records == 2 and not status.healthy
    assert any("retry-dead-letters" in p for p in status.problems)
    # Retried on demand: still poison, so set aside again; nothing else is touched.
    assert logger.retry_dead_letters() == 2
    assert logger.flush(timeout=60)
    assert sum(d.n for d in logger.dead_letters()) == 2
    assert sorted(raw_rows(tracking)) == sorted(good)


def test_a_batch_that_keeps_failing_is_set_aside_after_n_attempts_and_never_blocks_others(tracking, loggers):
    logger = loggers(tracking, batch_max_records=10, batch_max_age_s=0.0, max_attempts=3,
                     backoff_initial_s=0.01, backoff_max_s=0.02)
    doomed = _fill(logger, 10)  # the first batch: MLflow refuses it, for a reason we cannot name
    real_write = logger.writer.write

    def refuse_doomed(batch, position=None):
        if batch.rows and batch.rows[0].request_id == doomed[0]:
            raise RuntimeError("INVALID_PARAMETER_VALUE from the server")
        return real_write(batch, position)

    logger.writer.write = refuse_doomed
    good = _fill(logger, 40, start=100)
    for _ in range(20):
        logger.flush(timeout=30)
        if logger.dead_letters():
            break
    assert sorted(raw_rows(tracking)) == sorted(good)  # the others went on meanwhile
    [dead] = logger.dead_letters()
    assert dead.n == 10 and dead.attempts >= 3 and "INVALID_PARAMETER_VALUE" in dead.last_error
    logger.writer.write = real_write  # fixed on the server side: retry on demand
    logger.retry_dead_letters()
    assert logger.flush(timeout=60)
    assert sorted(raw_rows(tracking)) == sorted(good + doomed)
    assert logger.dead_letters() == []


def test_when_every_batch_fails_nothing_becomes_a_dead_letter(tracking, loggers):
    """An outage of the store (every write fails) is not the batches' fault."""
    logger = loggers(tracking, batch_max_records=5, batch_max_age_s=0.0, max_attempts=2,
                     backoff_initial_s=0.01, backoff_max_s=0.02)
    ids = _fill(logger, 15)

    def down(batch, position=None):
        raise RuntimeError("database disk image is malformed")

    real_write, logger.writer.write = logger.writer.write, down
    for _ in range(6):
        assert not logger.flush(timeout=5)
    assert logger.dead_letters() == [] and logger.status().batches_retrying == 3
    logger.writer.write = real_write
    assert logger.flush(timeout=60)
    assert sorted(raw_rows(tracking)) == sorted(ids)


def test_flush_predictions_json_lists_dead_letters_and_exits_1(tracking, loggers, capsys):
    logger = loggers(tracking, batch_max_records=5, start=False)
    _fill(logger, 3)
    grp = prediction_group(make_record(0, error=False))
    logger.spool.append("predictions", grp, "poison", b"\xff\xfe not json")
    logger.close(timeout=0)
    assert main(["flush-predictions", "--json", "--timeout", "60"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["flushed"] is True and out["waiting"] == 0 and out["dead_records"] == 1
    [letter] = out["dead_letters"]
    assert letter["records"] == 1 and ("JSONDecodeError" in letter["last_error"]
                                       or "UnicodeDecodeError" in letter["last_error"])
    assert main(["flush-predictions", "--retry-dead-letters", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["retried_dead_letters"] == 1


# -- failures that used to look like success -----------------------------------------------


def test_a_broken_spool_is_reported_not_shown_as_zero_waiting(tracking, loggers, monkeypatch):
    logger = loggers(tracking, start=False)

    def broken():
        raise SpoolError("cannot read the spool: disk I/O error")

    monkeypatch.setattr(logger.spool, "stats", broken)
    status = logger.status()
    assert status.pending is None and "disk I/O error" in status.spool_error and not status.healthy
    assert any("cannot be read" in p for p in status.problems)


def test_a_failing_checkpoint_is_reported_with_the_wal_size(tracking, loggers, monkeypatch):
    logger = loggers(tracking, start=False, batch_max_age_s=0.0)
    _fill(logger, 3)

    def fails():
        raise SpoolError("cannot checkpoint the spool: database is locked")

    monkeypatch.setattr(logger.spool, "checkpoint", fails)
    assert logger.flush(timeout=60)
    status = logger.status()
    assert "database is locked" in status.checkpoint_error and status.wal_bytes > 0 and not status.healthy
    monkeypatch.undo()
    logger._checkpointed_at = None  # due again
    logger.flush(timeout=60)
    assert logger.status().checkpoint_error is None


# -- connections belong to calls, not to threads -----------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts open files through /proc")
def test_calls_from_many_short_lived_threads_leave_no_connections_behind(tmp_path):
    """Streamlit runs every rerun in a new thread: 300 of them must not cost 300 connections."""
    before = _open_fds()
    spool = Spool(tmp_path / "spool")

    def one_rerun(i: int) -> None:
        spool.append("predictions", "g", f"r{i}", b"{}")
        spool.stats()
        spool.pending_payloads("predictions")

    def reruns(first: int, n: int, at_once: int = 20) -> None:
        for start in range(first, first + n, at_once):
            threads = [threading.Thread(target=one_rerun, args=(i,)) for i in range(start, start + at_once)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

    reruns(0, 1200)
    assert spool.pending_count() == 1200
    assert spool.open_connections <= 20  # the most calls that ever ran at once, not 1,200 threads
    # Every open file is explained by a pooled connection (the db, its WAL and its index).
    assert _open_fds() - before <= 3 * spool.open_connections
    spool.close()
    assert spool.open_connections == 0


# -- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """A 600 KB file system (tmpfs) for the spool; skips where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 600 KB tmpfs for the full-disk test needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_on_a_full_disk_every_record_is_durable_or_reported_as_not_logged(tracking, loggers, tiny_disk):
    dead_server = f"http://127.0.0.1:{free_port()}"
    logger = loggers(tracking, tracking_uri=dead_server, spool_dir=tiny_disk / "spool", start=False)
    submitted, refused = [], []
    for i in range(400):  # ~2 KB each: more than 600 KB
        rec = make_record(i, error=False)
        submitted.append(rec.request_id)
        if not logger.submit(rec):
            refused.append(rec.request_id)
    assert refused, "the disk never filled"
    status = logger.status()
    assert status.unspooled == len(refused) and "full" in (status.spool_error or "")
    assert any("could not be saved" in p for p in status.problems)
    assert status.pending + len(refused) == len(submitted)  # the count shown is the true one
    assert logger.not_durable() == refused
    spool = Spool(tiny_disk / "spool")  # what another process (or the next start) finds on disk
    durable = {json.loads(p)["request_id"] for p in spool.pending_payloads("predictions")}
    spool.close()
    assert durable | set(refused) == set(submitted) and not durable & set(refused)


@pytest.mark.slow
def test_predict_on_a_full_disk_exits_3_and_names_the_photos_not_logged(tracking, tiny_disk, tmp_path, models_dir):
    from conftest import image_bytes

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(60):
        (photos / f"p{i:02d}.png").write_bytes(image_bytes(size=(64 + i, 64), color=(i * 4, 100, 50)))
    filler = tiny_disk / "filler"
    env = dict(os.environ, NUTRILEARN_SPOOL_DIR=str(tiny_disk / "spool"), NUTRILEARN_MODELS_DIR=str(models_dir),
               MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    Spool(tiny_disk / "spool").close()
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 48 * 1024))  # leave room for a few dozen records
    done = subprocess.run([str(Path(os.sys.executable).with_name("nutrilearn")), "predict", str(photos),
                           "--json", "--flush-timeout", "1"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 3, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 60 and all(line["status"] == "ok" for line in lines)  # served all the same
    named = [line.split("not logged: ", 1)[1] for line in done.stderr.splitlines() if line.startswith("not logged: ")]
    assert named and f"{len(named)} prediction record(s) could not be logged" in done.stderr
    filler.unlink()
    spool = Spool(tiny_disk / "spool")
    durable = {json.loads(p)["request_id"] for p in spool.pending_payloads("predictions")}
    spool.close()
    by_path = {line["path"]: line["request_id"] for line in lines}
    assert {by_path[p] for p in named}.isdisjoint(durable)
    assert len(durable) + len(named) == 60  # every record: durable, or named as not logged
