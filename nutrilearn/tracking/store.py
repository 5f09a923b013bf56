"""What the writer and the reader share about the MLflow side: names, tags, the experiment.

MLflow is imported lazily (it costs about a second), so building a logger or a reader
is instant and the prediction path never imports it.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from nutrilearn.config import Settings

EXPERIMENT_NAME = Settings.predictions_experiment  # the default; NUTRILEARN_PREDICTIONS_EXPERIMENT

# Tags on every batch run (the UI shows them as columns; the reader keys on them).
TAG_KIND = "nutrilearn.kind"  # "predictions" | "feedback"
TAG_BATCH_ID = "nutrilearn.batch_id"  # 32 hex digits, see spool.batch_id_for
TAG_SCHEMA = "nutrilearn.schema"
TAG_FIRST_TS = "nutrilearn.first_timestamp"
TAG_LAST_TS = "nutrilearn.last_timestamp"
TAG_WRITER = "nutrilearn.writer"  # the spool that wrote the run (32 hex digits)
TAG_OPEN_FROM = "nutrilearn.open_from"  # lowest write sequence number still open there
WRITER_TAG_PREFIX = "nutrilearn.writer."  # experiment tags: one per writer, for readers
ARTIFACTS = {"predictions": "predictions.parquet", "feedback": "feedback.parquet"}
SCHEMA_VERSION = "1"

_BATCH_ID = re.compile(r"^[0-9a-f]{32}$")
_WRITER_ID = _BATCH_ID  # uuid4 hex: the same shape


def check_batch_id(batch_id: str) -> str:
    """Only ids we made go into a filter string: 32 lowercase hex digits."""
    if not _BATCH_ID.match(batch_id):
        raise ValueError(f"not a batch id: {batch_id!r}")
    return batch_id


def check_writer_id(writer_id: str) -> str:
    """Writer ids go into filter strings too: only 32 lowercase hex digits pass."""
    if not _WRITER_ID.match(writer_id):
        raise ValueError(f"not a writer id: {writer_id!r}")
    return writer_id


def writer_tag(writer_id: str) -> str:
    return WRITER_TAG_PREFIX + check_writer_id(writer_id)


_RUN_MARK = " run="


def writer_mark(host: str, run_id: str) -> str:
    """A writer tag's value after a run finished: a new value for every run, so readers can
    tell "nothing new from this writer" from one experiment read (``runs.RunFinder``)."""
    return f"{host}{_RUN_MARK}{run_id}"


def is_run_mark(value: str) -> bool:
    """Whether a writer tag's value is a run mark (an announcement alone, or an older writer's
    bare host name, is not: such a writer is always asked)."""
    return _RUN_MARK in value


def display_uri(uri: str) -> str:
    """The URI without a password, for status lines (``http://user:secret@host`` -> ``http://user:***@host``)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def make_client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def artifact_location(settings: Settings, tracking_uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a sqlite store, the server's choice otherwise.

    For the default store that is ``settings.artifact_root`` (``<home>/mlruns/artifacts``);
    for another sqlite file it is ``artifacts/`` beside that file.
    """
    if not tracking_uri.startswith("sqlite:"):
        return None
    default = f"sqlite:///{settings.home / 'mlruns' / 'mlflow.db'}"
    if tracking_uri == default:
        return settings.artifact_root.resolve().as_uri()
    db_path = tracking_uri.split(":///", 1)[-1].split("?", 1)[0]
    return (Path(db_path).resolve().parent / "artifacts").as_uri()


def get_experiment_id(client, name: str, location: str | None, create: bool) -> str | None:
    """The experiment's id, creating it when asked (safe if another process races us)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    if not create:
        return None
    try:
        return client.create_experiment(
            name, artifact_location=location,
            tags={"mlflow.note.content": "NutriLearn predictions: one run per batch of records, "
                  "rows in predictions.parquet / feedback.parquet. Written by nutrilearn.tracking."},
        )
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def probe(tracking_uri: str, timeout_s: float = 2.0) -> str | None:
    """None when the tracking server answers; else why not. Only HTTP(S) URIs are probed.

    MLflow's own HTTP client retries for minutes before it gives up; one quick GET of
    ``/health`` tells a down server apart first. Any HTTP answer (even 404 from a proxy
    without that route) counts as reachable: only connection failures do not.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # noqa: S310 (our own configured URI)
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"MLflow tracking server at {tracking_uri} is unreachable: {reason}"


def local_artifact_dir(artifact_uri: str) -> Path | None:
    """The directory behind a local ``file:`` (or plain path) artifact URI, else None."""
    if artifact_uri.startswith("file:"):
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(artifact_uri).path))
    if "://" not in artifact_uri and ":/" not in artifact_uri:
        return Path(artifact_uri)
    return None
