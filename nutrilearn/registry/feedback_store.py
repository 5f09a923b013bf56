"""Feedback becomes training data: keep photos whose label a person confirmed or corrected.

Off unless ``NUTRILEARN_KEEP_FEEDBACK_PHOTOS=1``. Kept photos go to
``NUTRILEARN_FEEDBACK_DIR`` (default ``<home>/data/feedback-photos``) as a folder of class
folders, ``<label>/<request id>.<ext>``, which is exactly what ``nutrilearn train --base``
reads. A later correction of the same photo moves it to its new label folder. Only the
bytes the user uploaded are written, under names we make (never the upload's file name).
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

from nutrilearn.config import Settings
from nutrilearn.registry.config import RegistrySettings

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
_EXTENSIONS = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
               "TIFF": ".tif"}


def _extension(data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return _EXTENSIONS.get((img.format or "").upper())
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def keep_photo(settings: Settings, request_id: str, label: str, data: bytes,
               registry_settings: RegistrySettings | None = None) -> Path | None:
    """Save the photo of a confirmed/corrected prediction under its label; returns the file,
    or None when keeping is off or the disk refused (logged). Raises ``ValueError`` for an
    unsafe label or request id, or bytes that are not an image."""
    rs = registry_settings or RegistrySettings.from_env(settings)
    if not rs.keep_feedback_photos:
        return None
    if not _REQUEST_ID.match(request_id or ""):
        raise ValueError(f"not a request id: {request_id!r}")
    if not _LABEL.match(label or "") or label == "not_food":
        raise ValueError(f"not a food label that can be a folder name: {label!r}")
    ext = _extension(data)
    if ext is None:
        raise ValueError("the feedback photo is not an image in a supported format")
    root = Path(rs.feedback_dir)
    target = root / label / f"{request_id}{ext}"
    try:
        for old in root.glob(f"*/{request_id}.*"):  # a re-labelled photo moves
            old.unlink(missing_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{request_id}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError as exc:  # a full or read-only disk must not lose the feedback itself
        log.warning("could not keep feedback photo %s under %s: %s", request_id, root, exc)
        return None
    return target


def kept_counts(settings: Settings, registry_settings: RegistrySettings | None = None) -> dict[str, int]:
    """Photos kept so far, by label (for the Models page and docs)."""
    rs = registry_settings or RegistrySettings.from_env(settings)
    root = Path(rs.feedback_dir)
    if not root.is_dir():
        return {}
    return {d.name: sum(1 for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
            for d in sorted(root.iterdir()) if d.is_dir()}
