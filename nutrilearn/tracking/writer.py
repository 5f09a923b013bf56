"""``BatchWriter``: one claimed spool batch becomes one MLflow run (the flusher's hands).

Run name ``predictions 2026-11-27 10:00-10:05 (500)``; tags ``model_name``,
``model_version``, ``model_alias``, ``source``, ``replayed``, ``nutrilearn.kind``,
``nutrilearn.batch_id``, ``nutrilearn.writer`` and ``nutrilearn.open_from``; metrics
``count``, ``errors``, ``error_rate``, ``mean_confidence``, ``p50_latency_ms``,
``p95_latency_ms``, ``food_share``, ``users`` and ``write_seq``; the rows as the artifact
``predictions.parquet`` (feedback: ``feedback.parquet`` in runs of their own).

Writing is idempotent: a FINISHED run with the batch's id means an earlier attempt got
there (nothing is written again); an unfinished one is marked FAILED and written afresh.
Rows that cannot be written (undecodable, or failing the record checks) are named in a
``PoisonRows`` error before anything reaches MLflow, so the flusher can set just them aside.
"""

from __future__ import annotations

import socket
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from nutrilearn.tracking import store
from nutrilearn.tracking.records import STATUS_OK, check_row, row_from_json, rows_to_table
from nutrilearn.tracking.spool import Batch, WritePosition

from nutrilearn.tracking.runs import WRITE_SEQ_METRIC


class PoisonRows(ValueError):
    """Some rows of a batch can never be written; ``seqs`` names them (spool sequence numbers)."""

    def __init__(self, seqs: list[int], reason: str):
        super().__init__(f"{len(seqs)} row(s) cannot be written: {reason}")
        self.seqs = seqs
        self.reason = reason


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def batch_metrics(kind: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    """The aggregate metrics of one batch run."""
    n = len(rows)
    if kind == "feedback":
        corrected = sum(r["label"] != r.get("predicted_label") for r in rows)
        return {"count": n, "corrected": corrected, "confirmed": n - corrected,
                "correction_rate": corrected / n if n else 0.0}
    ok = [r for r in rows if r["status"] == STATUS_OK]
    conf = [r["confidence"] for r in ok if r.get("confidence") is not None]
    latency = [r["total_ms"] for r in rows if r.get("total_ms") is not None]
    metrics = {"count": n, "errors": n - len(ok), "error_rate": (n - len(ok)) / n if n else 0.0,
               "users": len({r["user"] for r in rows})}
    if conf:
        metrics["mean_confidence"] = sum(conf) / len(conf)
    if latency:
        metrics["p50_latency_ms"] = _percentile(latency, 0.5)
        metrics["p95_latency_ms"] = _percentile(latency, 0.95)
    if ok:
        metrics["food_share"] = sum(bool(r.get("is_food")) for r in ok) / len(ok)
    return metrics


def run_name(kind: str, first: datetime, last: datetime, n: int) -> str:
    """``predictions 2026-11-27 10:00-10:05 (500)`` (UTC); the date twice across midnight."""
    end = f"{last:%H:%M}" if first.date() == last.date() else f"{last:%Y-%m-%d %H:%M}"
    return f"{kind} {first:%Y-%m-%d %H:%M}-{end} ({n})"


def decode_rows(batch: Batch) -> tuple[list[dict[str, Any]], Any]:
    """The batch's rows and their Arrow table; ``PoisonRows`` names any row that cannot be written."""
    rows: list[dict[str, Any]] = []
    bad: dict[int, str] = {}
    for spooled in batch.rows:
        try:
            row = row_from_json(spooled.payload)
            check_row(batch.kind, row)
            rows.append(row)
        except Exception as exc:  # corrupt JSON, a wrong type, a record an old version let through
            bad[spooled.seq] = f"{type(exc).__name__}: {exc}"
    if not bad:
        try:
            return rows, rows_to_table(rows, batch.kind)
        except Exception:  # find the rows Arrow refuses, one by one (only on this rare path)
            for spooled, row in zip(batch.rows, rows):
                try:
                    rows_to_table([row], batch.kind)
                except Exception as exc:
                    bad[spooled.seq] = f"{type(exc).__name__}: {exc}"
            if not bad:
                raise
    first = next(iter(bad.values()))
    raise PoisonRows(sorted(bad), first if len(bad) == 1 else f"{first} (and {len(bad) - 1} more)")


class BatchWriter:
    """Writes one claimed batch as one MLflow run; safe to call again for the same batch.

    ``clock`` (epoch seconds) stamps the run's times; tests give two writers clocks that
    disagree, as two machines' clocks do.
    """

    def __init__(self, tracking_uri: str, experiment_name: str, location: str | None,
                 clock: Callable[[], float] = time.time):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.location = location
        self.clock = clock
        self._client = None
        self._experiment_id: str | None = None
        self._announced: set[str] = set()

    def _ready(self):
        if self._client is None:
            self._client = store.make_client(self.tracking_uri)
        if self._experiment_id is None:
            self._experiment_id = store.get_experiment_id(self._client, self.experiment_name, self.location, True)
        return self._client, self._experiment_id

    def _announce(self, writer_id: str) -> None:
        """List this writer on the experiment, where readers look for writers (once)."""
        if writer_id not in self._announced:
            client, exp_id = self._ready()
            client.set_experiment_tag(exp_id, store.writer_tag(writer_id), socket.gethostname())
            self._announced.add(writer_id)

    def _mark(self, writer_id: str, run_id: str) -> None:
        """After a run finished: a new tag value tells readers this writer has something new."""
        client, exp_id = self._ready()
        client.set_experiment_tag(exp_id, store.writer_tag(writer_id), store.writer_mark(socket.gethostname(), run_id))

    def find_runs(self, batch_id: str) -> list:
        client, exp_id = self._ready()
        flt = f"tags.`{store.TAG_BATCH_ID}` = '{store.check_batch_id(batch_id)}'"
        return list(client.search_runs([exp_id], filter_string=flt, max_results=50))

    def write(self, batch: Batch, position: WritePosition | None = None) -> tuple[str, bool]:
        """``(run_id, written)``; ``written`` is False when an earlier attempt already finished.

        ``position`` (from the batch's spool) lets readers find the run without trusting
        clocks; a run written without one is found only by a reader's first full load.
        """
        rows, table = decode_rows(batch)
        client, exp_id = self._ready()
        earlier = self.find_runs(batch.batch_id)
        for run in earlier:
            if run.info.status == "FINISHED":
                if position is not None:  # it may have finished just before a crash, unmarked
                    self._mark(position.writer_id, run.info.run_id)
                return run.info.run_id, False
        for run in earlier:  # a crash mid-write: leave it visible as FAILED, write afresh
            client.set_terminated(run.info.run_id, "FAILED")
        first = min(r["timestamp"] for r in rows)
        last = max(r["timestamp"] for r in rows)
        tags = {
            store.TAG_KIND: batch.kind, store.TAG_BATCH_ID: batch.batch_id,
            store.TAG_SCHEMA: store.SCHEMA_VERSION,
            store.TAG_FIRST_TS: first.isoformat(), store.TAG_LAST_TS: last.isoformat(),
            "spool_host": socket.gethostname(),
        }
        metrics = batch_metrics(batch.kind, rows)
        if position is not None:
            self._announce(position.writer_id)
            tags[store.TAG_WRITER] = store.check_writer_id(position.writer_id)
            tags[store.TAG_OPEN_FROM] = str(position.open_from)
            metrics[WRITE_SEQ_METRIC] = position.seq
        if batch.kind == "predictions":
            head = rows[0]
            tags.update(model_name=head["model_name"], model_version=head["model_version"],
                        model_alias=head["model_alias"], source=head["source"],
                        replayed=str(head["source"] == "replay").lower())
            note = (f"{len(rows)} predictions by {head['model_name']} v{head['model_version']} "
                    f"({head['model_alias']}), source {head['source']}, {int(metrics['errors'])} errors; "
                    f"{first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC. Rows: predictions.parquet")
        else:
            note = f"{len(rows)} feedback records; rows: feedback.parquet"
        tags["mlflow.note.content"] = note
        now_ms = int(self.clock() * 1000)
        run = client.create_run(exp_id, start_time=now_ms, tags=tags,
                                run_name=run_name(batch.kind, first, last, len(rows)))
        run_id = run.info.run_id
        from mlflow.entities import Metric

        client.log_batch(run_id, metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items()])
        import pyarrow.parquet as pq

        with tempfile.TemporaryDirectory(prefix="nutrilearn-batch-") as tmp:
            path = Path(tmp) / store.ARTIFACTS[batch.kind]
            pq.write_table(table, path, compression="snappy")  # reads faster than zstd
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED", end_time=int(self.clock() * 1000))
        if position is not None:
            self._mark(position.writer_id, run_id)
        return run_id, True
