"""Dietary patterns over the last N days: rules are data, evaluated with pandas.

Each rule compares one metric of the window with a threshold; a pattern may have
several rules of rising severity, and reports the most severe one that fires.
Energy shares use energy from macronutrients (4/4/9 kcal per g of protein,
carbohydrate, fat), so alcohol does not dilute them. Thresholds come from the US
Dietary Reference Intakes' Acceptable Macronutrient Distribution Ranges (protein
10-35 %, carbohydrate 45-65 %, fat 20-35 % of energy) and the Dietary Guidelines for
Americans' 14 g of fibre per 1,000 kcal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd

from nutrilearn.meals.daily import daily_totals
from nutrilearn.meals.targets import Targets

SEVERITIES: tuple[str, ...] = ("ok", "caution", "warning")
NOT_ENOUGH_DATA = "not enough data"
#: Meals of these types should happen at about the same time each day.
TIMED_MEALS: tuple[str, ...] = ("breakfast", "lunch", "dinner")
MIN_MEALS_FOR_TIMING = 3


@dataclass(frozen=True)
class DietaryRule:
    """``metric op threshold`` means the pattern is present at ``severity``."""

    pattern: str
    title: str
    metric: str
    op: str  # ">" or "<"
    threshold: float
    severity: str


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    compute: Callable[[pd.DataFrame, pd.DataFrame, Targets], float | None]


RULES: tuple[DietaryRule, ...] = (
    DietaryRule("too_many_carbohydrates", "Too many carbohydrates", "carbohydrate_energy_pct", ">", 65, "caution"),
    DietaryRule("too_many_carbohydrates", "Too many carbohydrates", "carbohydrate_energy_pct", ">", 75, "warning"),
    DietaryRule("too_little_protein", "Too little protein", "protein_energy_pct", "<", 10, "caution"),
    DietaryRule("too_little_protein", "Too little protein", "protein_energy_pct", "<", 7, "warning"),
    DietaryRule("too_much_fat", "Too much fat", "fat_energy_pct", ">", 35, "caution"),
    DietaryRule("too_much_fat", "Too much fat", "fat_energy_pct", ">", 45, "warning"),
    DietaryRule("too_little_fibre", "Too little fibre", "fibre_g_per_1000_kcal", "<", 14, "caution"),
    DietaryRule("too_little_fibre", "Too little fibre", "fibre_g_per_1000_kcal", "<", 7, "warning"),
    DietaryRule("too_many_calories", "Too many calories", "kcal_pct_of_target", ">", 110, "caution"),
    DietaryRule("too_many_calories", "Too many calories", "kcal_pct_of_target", ">", 130, "warning"),
    DietaryRule("irregular_meal_times", "Irregular meal times", "meal_time_spread_min", ">", 60, "caution"),
    DietaryRule("irregular_meal_times", "Irregular meal times", "meal_time_spread_min", ">", 120, "warning"),
)


def _macro_energy(daily: pd.DataFrame) -> float:
    return float(4 * daily["protein_g"].sum() + 4 * daily["carbohydrate_g"].sum() + 9 * daily["fat_g"].sum())


def _share(column: str, factor: float) -> Callable[[pd.DataFrame, pd.DataFrame, Targets], float | None]:
    def compute(daily: pd.DataFrame, _meals: pd.DataFrame, _targets: Targets) -> float | None:
        energy = _macro_energy(daily)
        return None if energy <= 0 else 100.0 * factor * float(daily[column].sum()) / energy
    return compute


def _fibre_density(daily: pd.DataFrame, _meals: pd.DataFrame, _targets: Targets) -> float | None:
    kcal = float(daily["kcal"].sum())
    return None if kcal <= 0 else 1000.0 * float(daily["fibre_g"].sum()) / kcal


def _kcal_vs_target(daily: pd.DataFrame, _meals: pd.DataFrame, targets: Targets) -> float | None:
    return 100.0 * float(daily["kcal"].mean()) / targets.kcal


def _meal_time_spread(_daily: pd.DataFrame, meals: pd.DataFrame, _targets: Targets) -> float | None:
    """Largest standard deviation (population, minutes) of the local clock time of one
    meal type, over breakfast/lunch/dinner logged at least MIN_MEALS_FOR_TIMING times."""
    timed = meals.loc[meals["meal_type"].isin(TIMED_MEALS)]
    if timed.empty:
        return None
    local = pd.to_datetime(timed["eaten_at"])
    minutes = pd.Series(local.dt.hour * 60 + local.dt.minute + local.dt.second / 60, index=timed.index)
    stats = minutes.groupby(timed["meal_type"]).agg(["count", lambda s: float(np.std(s, ddof=0))])
    stats.columns = ["count", "std"]
    stats = stats.loc[stats["count"] >= MIN_MEALS_FOR_TIMING]
    return None if stats.empty else float(stats["std"].max())


METRICS: dict[str, Metric] = {
    "carbohydrate_energy_pct": Metric("carbohydrate share of energy", "%", _share("carbohydrate_g", 4)),
    "protein_energy_pct": Metric("protein share of energy", "%", _share("protein_g", 4)),
    "fat_energy_pct": Metric("fat share of energy", "%", _share("fat_g", 9)),
    "fibre_g_per_1000_kcal": Metric("fibre per 1,000 kcal", "g", _fibre_density),
    "kcal_pct_of_target": Metric("average daily energy vs target", "%", _kcal_vs_target),
    "meal_time_spread_min": Metric("spread of meal times (std dev)", "min", _meal_time_spread),
}


@dataclass(frozen=True)
class PatternFinding:
    """One pattern's verdict: the metric's value, the rule that fired (or the mildest
    rule when none did), and a severity from SEVERITIES or NOT_ENOUGH_DATA."""

    pattern: str
    title: str
    metric: str
    value: float | None
    unit: str
    rule: str
    threshold: float
    severity: str
    days_logged: int

    @property
    def present(self) -> bool:
        return self.severity in SEVERITIES[1:]


def rules_frame(rules: tuple[DietaryRule, ...] = RULES) -> pd.DataFrame:
    """The rules as a table, for documentation and the page."""
    df = pd.DataFrame([asdict(r) for r in rules])
    df["rule"] = df.apply(lambda r: _rule_text(r["metric"], r["op"], r["threshold"]), axis=1)
    return df


def _rule_text(metric: str, op: str, threshold: float) -> str:
    m = METRICS[metric]
    return f"{m.label} {op} {threshold:g} {m.unit}"


def dietary_patterns(
    meals: pd.DataFrame,
    targets: Targets,
    *,
    today: dt.date,
    days: int = 14,
    min_logged_days: int = 3,
    rules: tuple[DietaryRule, ...] = RULES,
) -> list[PatternFinding]:
    """Evaluate ``rules`` on the meals eaten in the ``days`` local days ending ``today``.

    Days without meals are left out (unknown, not zero intake). With fewer than
    ``min_logged_days`` logged days every pattern reports NOT_ENOUGH_DATA.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    start = today - dt.timedelta(days=days - 1)
    window = meals.loc[(meals["date"] >= start) & (meals["date"] <= today)] if not meals.empty else meals
    daily = daily_totals(window)
    logged = len(daily)
    enough = logged >= min_logged_days
    values = {key: (m.compute(daily, window, targets) if enough else None) for key, m in METRICS.items()}

    table = rules_frame(rules)
    table["value"] = table["metric"].map(values).astype(float)
    above = table["value"] > table["threshold"]
    below = table["value"] < table["threshold"]
    table["fires"] = np.where(table["op"] == ">", above, below)
    table["rank"] = table["severity"].map(SEVERITIES.index)

    findings: list[PatternFinding] = []
    for pattern, group in table.groupby("pattern", sort=False):
        fired = group.loc[group["fires"]]
        chosen = fired.loc[fired["rank"].idxmax()] if not fired.empty else group.loc[group["rank"].idxmin()]
        value = values[chosen["metric"]]
        if value is None:
            severity = NOT_ENOUGH_DATA
        else:
            severity = chosen["severity"] if not fired.empty else "ok"
        findings.append(PatternFinding(
            pattern=str(pattern), title=str(chosen["title"]), metric=str(chosen["metric"]),
            value=value, unit=METRICS[chosen["metric"]].unit, rule=str(chosen["rule"]),
            threshold=float(chosen["threshold"]), severity=str(severity), days_logged=logged,
        ))
    return findings


def findings_frame(findings: list[PatternFinding]) -> pd.DataFrame:
    """Findings as a table for display."""
    return pd.DataFrame([{**asdict(f), "present": f.present} for f in findings],
                        columns=["pattern", "title", "metric", "value", "unit", "rule", "threshold",
                                 "severity", "days_logged", "present"])
