"""A day's intake: meals grouped by local calendar day."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from nutrilearn.meals.targets import NUTRIENTS

DAILY_COLUMNS: tuple[str, ...] = ("date", "meals", *NUTRIENTS)


def daily_totals(meals: pd.DataFrame, start: dt.date | None = None, end: dt.date | None = None,
                 *, fill_missing: bool = False) -> pd.DataFrame:
    """Sum each local day's meals (output of ``MealStore.meals``).

    Only logged days appear unless ``fill_missing`` (then every day from ``start`` to
    ``end`` is present, zero where nothing was logged: right for charts, wrong for
    averages, since an unlogged day is unknown rather than a fast).
    """
    if meals.empty:
        totals = pd.DataFrame(columns=list(DAILY_COLUMNS))
    else:
        grouped = meals.groupby("date", sort=True)
        totals = grouped[list(NUTRIENTS)].sum()
        totals.insert(0, "meals", grouped.size())
        totals = totals.reset_index()
    if start is not None:
        totals = totals.loc[totals["date"] >= start]
    if end is not None:
        totals = totals.loc[totals["date"] <= end]
    if fill_missing:
        if start is None or end is None:
            raise ValueError("fill_missing needs both start and end")
        days = pd.DataFrame({"date": [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]})
        totals = days.merge(totals, on="date", how="left").fillna(0)
    totals = totals.astype({"meals": "int64", **{n: "float64" for n in NUTRIENTS}})
    return totals.loc[:, list(DAILY_COLUMNS)].reset_index(drop=True)
