"""Meal history as CSV, the same bytes for the page's download button and the CLI."""

from __future__ import annotations

import pandas as pd

EXPORT_COLUMNS: tuple[str, ...] = (
    "id", "user", "eaten_at", "eaten_at_utc", "date", "meal_type", "label", "name",
    "predicted_label", "corrected", "portion", "grams", "kcal", "protein_g",
    "carbohydrate_g", "fat_g", "fibre_g", "manual", "source", "request_id",
)


def meals_to_csv(meals: pd.DataFrame) -> bytes:
    """UTF-8 CSV of ``MealStore.meals`` output; times in ISO 8601 with their offsets."""
    out = meals.loc[:, list(EXPORT_COLUMNS)].copy()
    for col in ("eaten_at", "eaten_at_utc"):
        out[col] = out[col].map(lambda t: t.isoformat(timespec="seconds") if pd.notna(t) else "")
    for col in ("grams", "kcal", "protein_g", "carbohydrate_g", "fat_g", "fibre_g"):
        out[col] = out[col].astype(float).round(1)
    for col in ("user", "label", "name", "predicted_label", "source", "request_id"):
        out[col] = out[col].map(_defuse)
    return out.to_csv(index=False).encode("utf-8")


def _defuse(value: object) -> object:
    """Quote text a spreadsheet would run as a formula (names and labels are user text)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
