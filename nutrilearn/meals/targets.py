"""Daily nutrition targets: documented defaults, per-user overrides, comparison with intake.

Defaults are the US FDA Daily Values used on food labels (21 CFR 101.9, 2016 rule) for a
2,000 kcal reference diet: 50 g protein, 275 g carbohydrate, 78 g fat, 28 g dietary fibre.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

#: The nutrients a day is measured on, with display names and units.
NUTRIENTS: dict[str, tuple[str, str]] = {
    "kcal": ("Energy", "kcal"),
    "protein_g": ("Protein", "g"),
    "carbohydrate_g": ("Carbohydrate", "g"),
    "fat_g": ("Fat", "g"),
    "fibre_g": ("Fibre", "g"),
}

# Upper bounds that catch typing errors (an extra zero), not dietary advice.
_MAX: dict[str, float] = {"kcal": 10_000.0, "protein_g": 1_000.0, "carbohydrate_g": 1_500.0,
                          "fat_g": 1_000.0, "fibre_g": 300.0}


@dataclass(frozen=True)
class Targets:
    """Daily targets for one user."""

    kcal: float = 2000.0
    protein_g: float = 50.0
    carbohydrate_g: float = 275.0
    fat_g: float = 78.0
    fibre_g: float = 28.0

    def __post_init__(self) -> None:
        for key, upper in _MAX.items():
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= upper:
                raise ValueError(
                    f"target {NUTRIENTS[key][0].lower()} must be more than 0 and at most "
                    f"{upper:g} {NUTRIENTS[key][1]}, got {value!r}"
                )

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


DEFAULT_TARGETS = Targets()


def compare_to_targets(totals: pd.DataFrame, targets: Targets) -> pd.DataFrame:
    """Long table (date, nutrient, amount, target, percent) from ``daily_totals`` output.

    One row per logged day and nutrient, ready for a chart or a table.
    """
    columns = ["date", "nutrient", "label", "unit", "amount", "target", "percent"]
    if totals.empty:
        return pd.DataFrame(columns=columns)
    long = totals.melt(id_vars=["date"], value_vars=list(NUTRIENTS), var_name="nutrient",
                       value_name="amount")
    target_map = targets.as_dict()
    long["label"] = long["nutrient"].map(lambda n: NUTRIENTS[n][0])
    long["unit"] = long["nutrient"].map(lambda n: NUTRIENTS[n][1])
    long["target"] = long["nutrient"].map(target_map)
    long["percent"] = 100.0 * long["amount"] / long["target"]
    return long.loc[:, columns].sort_values(["date", "nutrient"]).reset_index(drop=True)
