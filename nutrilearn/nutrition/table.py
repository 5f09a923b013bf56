"""The per-serving nutrition table and portion scaling.

The table is a data file (``foods.csv``) shipped inside the package so that nutrition
values can be reviewed and corrected without touching code. It is read once per process
through ``importlib.resources`` so it also works from an installed wheel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

import pandas as pd

#: Columns of ``foods.csv`` in order; numbers are per typical serving of ``serving_g`` grams.
COLUMNS: tuple[str, ...] = (
    "label",
    "name",
    "serving_g",
    "kcal",
    "protein_g",
    "carbohydrate_g",
    "fat_g",
    "fibre_g",
    "source",
)
NUMERIC_COLUMNS: tuple[str, ...] = COLUMNS[2:8]

#: Portions are multiples of the typical serving; beyond this it is a typing error, not a meal.
MAX_PORTION: float = 20.0


class NutritionTableError(ValueError):
    """The shipped table is malformed (a packaging or editing mistake)."""


def validate_portion(portion: float) -> float:
    """Return ``portion`` as a float or raise ValueError naming the allowed range."""
    try:
        value = float(portion)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"portion must be a number between 0 and {MAX_PORTION:g} servings, got {portion!r}"
        ) from exc
    if not math.isfinite(value) or value < 0 or value > MAX_PORTION:
        raise ValueError(
            f"portion must be between 0 and {MAX_PORTION:g} servings, got {portion!r}"
        )
    return value


@dataclass(frozen=True)
class NutritionFacts:
    """Nutrition of one food for a stated amount (a typical serving unless scaled)."""

    label: str
    name: str
    serving_g: float
    kcal: float
    protein_g: float
    carbohydrate_g: float
    fat_g: float
    fibre_g: float
    source: str

    def scaled(self, portion: float) -> "NutritionFacts":
        """Facts for ``portion`` typical servings (0.5 = half a serving).

        Rejects negative, NaN, infinite and absurd (> MAX_PORTION) portions because they
        would silently poison daily totals.
        """
        p = validate_portion(portion)
        return replace(
            self,
            serving_g=self.serving_g * p,
            kcal=self.kcal * p,
            protein_g=self.protein_g * p,
            carbohydrate_g=self.carbohydrate_g * p,
            fat_g=self.fat_g * p,
            fibre_g=self.fibre_g * p,
        )


def _validate(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise NutritionTableError(f"foods.csv is missing columns: {', '.join(missing)}")
    df = df.loc[:, list(COLUMNS)].copy()
    if df["label"].isna().any() or (df["label"].astype(str).str.strip() == "").any():
        raise NutritionTableError("foods.csv has a row without a label")
    dupes = sorted(df.loc[df["label"].duplicated(), "label"].unique())
    if dupes:
        raise NutritionTableError(f"foods.csv has duplicate labels: {', '.join(dupes)}")
    for col in NUMERIC_COLUMNS:
        numbers = pd.to_numeric(df[col], errors="coerce")
        bad = df.loc[numbers.isna() | (numbers < 0), "label"].tolist()
        if bad:
            raise NutritionTableError(
                f"foods.csv column {col} must be a non-negative number; bad rows: {', '.join(bad)}"
            )
        df[col] = numbers.astype(float)
    if (df["serving_g"] <= 0).any():
        bad = df.loc[df["serving_g"] <= 0, "label"].tolist()
        raise NutritionTableError(f"foods.csv serving_g must be positive; bad rows: {', '.join(bad)}")
    return df.set_index("label", drop=False)


def read_table(text_source: object) -> pd.DataFrame:
    """Parse and validate a nutrition table from a path or file-like object."""
    df = pd.read_csv(text_source, dtype={"label": str, "name": str, "source": str})
    return _validate(df)


@lru_cache(maxsize=1)
def _cached_table() -> pd.DataFrame:
    with resources.files("nutrilearn.nutrition").joinpath("foods.csv").open(
        "r", encoding="utf-8"
    ) as fh:
        return read_table(fh)


def load_table() -> pd.DataFrame:
    """The validated table indexed by label (a copy, so callers cannot corrupt the cache)."""
    return _cached_table().copy()


@lru_cache(maxsize=None)
def facts_for(label: str) -> NutritionFacts | None:
    """Per-serving facts for a classifier label, or None when the table has no such food."""
    table = _cached_table()
    if label not in table.index:
        return None
    row = table.loc[label]
    return NutritionFacts(
        label=str(row["label"]),
        name=str(row["name"]),
        serving_g=float(row["serving_g"]),
        kcal=float(row["kcal"]),
        protein_g=float(row["protein_g"]),
        carbohydrate_g=float(row["carbohydrate_g"]),
        fat_g=float(row["fat_g"]),
        fibre_g=float(row["fibre_g"]),
        source=str(row["source"]),
    )


def known_labels() -> frozenset[str]:
    """Every label the table can name."""
    return frozenset(_cached_table().index)
