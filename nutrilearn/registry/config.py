"""The registry's own settings, read from the environment beside ``nutrilearn.config.Settings``.

| variable | default | meaning |
|---|---|---|
| ``NUTRILEARN_ALIAS_REFRESH_S`` | 30 | serving re-reads the champion/challenger aliases at most this often |
| ``NUTRILEARN_CHALLENGER_SHARE`` | 1.0 | share of requests also run through the challenger (1.0 = all, in shadow) |
| ``NUTRILEARN_KEEP_FEEDBACK_PHOTOS`` | off | keep photos whose label a user confirmed or corrected, as training data |
| ``NUTRILEARN_FEEDBACK_DIR`` | ``<home>/data/feedback-photos`` | where kept photos go: ``<label>/<request id>.<ext>`` |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nutrilearn.config import Settings, env_number

_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class RegistrySettings:
    alias_refresh_s: float = 30.0
    challenger_share: float = 1.0
    keep_feedback_photos: bool = False
    feedback_dir: Path = Path("data/feedback-photos")

    @classmethod
    def from_env(cls, settings: Settings) -> "RegistrySettings":
        share = env_number("NUTRILEARN_CHALLENGER_SHARE", cls.challenger_share)
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"NUTRILEARN_CHALLENGER_SHARE must be between 0 and 1, got {share}")
        return cls(
            alias_refresh_s=max(0.0, env_number("NUTRILEARN_ALIAS_REFRESH_S", cls.alias_refresh_s)),
            challenger_share=share,
            keep_feedback_photos=os.environ.get("NUTRILEARN_KEEP_FEEDBACK_PHOTOS", "").strip().lower() in _TRUE,
            feedback_dir=Path(os.environ.get("NUTRILEARN_FEEDBACK_DIR") or settings.home / "data" / "feedback-photos"),
        )
