"""Settings from the environment, with embedded defaults that need no services.

Every setting has a ``NUTRILEARN_*`` variable (or the standard ``MLFLOW_TRACKING_URI`` /
``DATABASE_URL``); ``Settings.from_env()`` is the one place that reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def env_number(name: str, default: float, kind: type = float):
    """``kind(os.environ[name])``, or ``default`` when unset; a clear error when malformed."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError as exc:
        what = "an integer" if kind is int else "a number"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from exc


def _env_list(name: str) -> tuple[str, ...]:
    """A comma (or space) separated list, e.g. ``a@example.com, b@example.com``."""
    return tuple(v for v in (os.environ.get(name) or "").replace(",", " ").split() if v)


def _env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (os.environ.get(name) or default).strip().lower()
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _env_flag(name: str, default: bool) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); ``default`` when unset."""
    raw = (os.environ.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0 (true/false), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Where things live and the limits that protect them."""

    home: Path = field(default_factory=Path.cwd)
    tracking_uri: str = ""
    database_url: str = ""
    models_dir: Path = Path("models")
    spool_dir: Path = Path("mlruns/spool")
    # The local copy of the prediction batches that monitoring queries (see tracking/mirror.py).
    mirror_dir: Path = Path("mlruns/mirror")
    # Uploads: bytes on the wire and decoded pixels (decompression bombs).
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    # Prediction batches written to MLflow: a batch closes at this size or age.
    batch_max_records: int = 500
    batch_max_age_s: float = 30.0
    # Spool durability: "full" fsyncs every record (survives power loss); "normal" survives
    # a killed process but may lose the last records on power loss or an OS crash.
    spool_sync: str = "group"
    # The MLflow experiment that holds the prediction batches (one run per batch).
    predictions_experiment: str = "nutrilearn-predictions"
    # Guard for registry-changing actions (promote, rollback); empty means disabled.
    # Never in repr: a Settings shown on a page or in a traceback must not show it.
    admin_token: str = field(default="", repr=False)
    # Roles for logged-in users (see nutrilearn.auth): emails and groups, comma separated.
    admin_emails: tuple[str, ...] = ()
    analyst_emails: tuple[str, ...] = ()
    groups_claim: str = "groups"
    admin_groups: tuple[str, ...] = ()
    analyst_groups: tuple[str, ...] = ()
    # A login older than this many hours is logged out.
    session_max_age_h: float = 12.0
    mlflow_ui_url: str = "http://127.0.0.1:5000"
    # Which runtime runs the backbone when serving: "litert" (the converted model, no
    # TensorFlow) or "keras" (the original path, kept for comparison).
    runtime: str = "litert"
    # The only folder the app's replay panel may read photos from (its subfolders too).
    replay_root: Path = Path("data/photos")
    # Keep a small thumbnail (<= 128 px WebP) with every successful prediction, for the
    # photo galleries; off for deployments that must not keep images.
    keep_thumbnails: bool = True

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(os.environ.get("NUTRILEARN_HOME", os.getcwd())).resolve()
        default_tracking = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
        default_db = f"sqlite:///{home / 'data' / 'meals.db'}"
        return cls(
            home=home,
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or default_tracking,
            database_url=os.environ.get("DATABASE_URL") or default_db,
            models_dir=Path(os.environ.get("NUTRILEARN_MODELS_DIR") or home / "models"),
            spool_dir=Path(os.environ.get("NUTRILEARN_SPOOL_DIR") or home / "mlruns" / "spool"),
            mirror_dir=Path(os.environ.get("NUTRILEARN_MIRROR_DIR") or home / "mlruns" / "mirror"),
            max_upload_bytes=env_number("NUTRILEARN_MAX_UPLOAD_BYTES", cls.max_upload_bytes, int),
            max_pixels=env_number("NUTRILEARN_MAX_PIXELS", cls.max_pixels, int),
            batch_max_records=env_number("NUTRILEARN_BATCH_MAX_RECORDS", cls.batch_max_records, int),
            batch_max_age_s=env_number("NUTRILEARN_BATCH_MAX_AGE_S", cls.batch_max_age_s),
            spool_sync=_env_choice("NUTRILEARN_SPOOL_SYNC", ("group", "full", "normal"), cls.spool_sync),
            predictions_experiment=os.environ.get("NUTRILEARN_PREDICTIONS_EXPERIMENT")
            or cls.predictions_experiment,
            admin_token=os.environ.get("NUTRILEARN_ADMIN_TOKEN", ""),
            admin_emails=_env_list("NUTRILEARN_ADMIN_EMAILS"),
            analyst_emails=_env_list("NUTRILEARN_ANALYST_EMAILS"),
            groups_claim=os.environ.get("NUTRILEARN_GROUPS_CLAIM") or cls.groups_claim,
            admin_groups=_env_list("NUTRILEARN_ADMIN_GROUPS"),
            analyst_groups=_env_list("NUTRILEARN_ANALYST_GROUPS"),
            session_max_age_h=env_number("NUTRILEARN_SESSION_MAX_AGE_H", cls.session_max_age_h),
            mlflow_ui_url=os.environ.get("NUTRILEARN_MLFLOW_UI_URL", cls.mlflow_ui_url),
            runtime=_env_choice("NUTRILEARN_RUNTIME", ("litert", "keras"), cls.runtime),
            replay_root=Path(os.environ.get("NUTRILEARN_REPLAY_ROOT") or home / "data" / "photos"),
            keep_thumbnails=_env_flag("NUTRILEARN_KEEP_THUMBNAILS", cls.keep_thumbnails),
        )

    @property
    def artifact_root(self) -> Path:
        """Artifacts of the default local sqlite store live beside it."""
        return self.home / "mlruns" / "artifacts"
