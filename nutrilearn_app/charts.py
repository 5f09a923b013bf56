"""Altair layers that more than one page draws (drawing only: the figures come from
``nutrilearn``)."""

from __future__ import annotations

import altair as alt
import pandas as pd

MOVE_COLOUR = "#555"


def move_rules(moves: pd.DataFrame | None = None) -> alt.LayerChart:
    """A dashed vertical rule at each champion move, labelled with the versions (rows with
    ``when``, ``text`` and ``label``, as ``nutrilearn.monitoring.versions.moves_within``
    gives). Without ``moves`` the layer takes its parent's data and keeps only the rows
    that have a ``when`` (a faceted chart carries the moves beside its own rows). Labels
    stand left of their rule: moves are mostly recent, at the right edge, beside the legend."""
    base = (alt.Chart() if moves is None else alt.Chart(moves)).transform_filter("isValid(datum.when)")
    rules = base.mark_rule(strokeDash=[5, 4], color=MOVE_COLOUR).encode(
        x="when:T", tooltip=[alt.Tooltip("when:T", title="when (UTC)", format="%Y-%m-%d %H:%M"), "text:N"])
    labels = base.transform_filter("datum.label != ''").mark_text(
        align="right", dx=-3, dy=-4, fontSize=10, color=MOVE_COLOUR).encode(x="when:T", y=alt.value(8), text="label:N")
    return rules + labels
