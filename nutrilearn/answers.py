"""How an answer reads to a person: sure or unsure, food or not, and failures in plain words.

* An answer whose confidence is below ``NUTRILEARN_UNSURE_BELOW`` (default 0.5) is
  *unsure*: the Analyze page says so and preselects nothing, so one click cannot log the
  wrong food's nutrition.
* A "not a recognised food" answer is shown without percentages: its confidence is the
  probability of *not* being one of the foods, and the closest foods' shares are shares
  of the food probability, so putting the two side by side contradicts itself.
* Error texts for people name what went wrong and what to do, never a library or an
  exception class (the record keeps the technical message for the logs).
* Every confidence, share, accuracy and rate reads the same on every page and in the CLI:
  ``percent`` (one decimal, "38.2%"), ``VEGA_PERCENT`` for chart tooltips and
  ``percent_columns`` for tables. One format, so a figure can be compared across pages.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

UNSURE_VARIABLE = "NUTRILEARN_UNSURE_BELOW"
DEFAULT_UNSURE_BELOW = 0.5

_ERRORS = {
    "empty_file": "The file is empty. Upload the photo again.",
    "file_too_large": "The file is too large. Upload a smaller photo (20 MB at most).",
    "image_too_large": "The photo has too many pixels. Resize it (40 megapixels at most) and upload it again.",
    "not_an_image": "This file is not a photo we can read. Upload a JPEG, PNG or WebP photo.",
    "truncated_image": "The photo is incomplete (the file was cut short). Upload it again.",
    "invalid_image": "The photo could not be read. Save it again as JPEG or PNG and upload it.",
    "file_not_found": "The file could not be found.",
    "unreadable_file": "The file could not be read.",
    "model_error": "The food classifier failed on this photo. Try again; if it keeps failing, tell an admin.",
}


def unsure_below() -> float:
    """The confidence under which an answer counts as unsure (a setting, default 0.5)."""
    from nutrilearn.config import env_number

    value = float(env_number(UNSURE_VARIABLE, DEFAULT_UNSURE_BELOW))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{UNSURE_VARIABLE} must be between 0 and 1, not {value}")
    return value


def is_unsure(confidence: float | None, threshold: float | None = None) -> bool:
    if confidence is None:
        return True
    return confidence < (unsure_below() if threshold is None else threshold)


def error_text(error_type: str | None) -> str:
    """What a person reads for a failed photo."""
    return _ERRORS.get(error_type or "", "The photo could not be used. Try another photo.")


VEGA_PERCENT = ".1%"  # d3-format for altair tooltips: the same text as ``percent``
MISSING = "–"


def percent(x: float | None, signed: bool = False) -> str:
    """A confidence, share, accuracy or rate as people read it everywhere ("38.2%", "+4.0%"
    with ``signed``); ``MISSING`` when unknown (None or NaN)."""
    try:
        value = float(x)  # None and pandas' NA are unknown too
    except (TypeError, ValueError):
        return MISSING
    if math.isnan(value):
        return MISSING
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def percent_columns(table: "pd.DataFrame | Styler", columns: Iterable[str]) -> "Styler":
    """``table`` with ``columns`` (those it has) shown through ``percent``; the values stay
    numbers, so the table still sorts by them (give such columns no ``format`` of their own:
    Streamlit shows the Styler's text only where the column config sets none)."""
    from pandas.io.formats.style import Styler

    styler = table if isinstance(table, Styler) else table.style
    present = [c for c in columns if c in styler.data.columns]
    return styler.format(percent, subset=present) if present else styler
