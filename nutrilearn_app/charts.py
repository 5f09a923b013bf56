"""Altair layers that more than one page draws (drawing only: the figures come from
``nutrilearn``)."""

from __future__ import annotations

import altair as alt
import pandas as pd

MOVE_COLOUR = "#555"


def move_rules(moves: pd.DataFrame | None = None) -> alt.LayerChart:
    """A dashed vertical rule, labelled with the versions, at each champion move (rows with
    ``when`` and ``text``, as ``nutrilearn.monitoring.versions.alias_moves`` gives).
    Without ``moves`` the layer takes its parent's data and keeps only the rows that have
    a ``when`` (a faceted chart carries the moves beside its own rows)."""
    base = (alt.Chart() if moves is None else alt.Chart(moves)).transform_filter("isValid(datum.when)")
    rules = base.mark_rule(strokeDash=[5, 4], color=MOVE_COLOUR).encode(
        x="when:T", tooltip=[alt.Tooltip("when:T", title="when (UTC)", format="%Y-%m-%d %H:%M"), "text:N"])
    labels = base.mark_text(align="left", dx=3, dy=-4, fontSize=10, color=MOVE_COLOUR).encode(
        x="when:T", y=alt.value(8), text="text:N")
    return rules + labels
