"""Altair layers that more than one page or tab draws (drawing only: the figures come from
``nutrilearn``): champion-move rules, and photo maps whose points show their thumbnail.

Encodings here and on the pages are channel objects (``alt.X("day:T")``,
``alt.Tooltip("food")``), not bare shorthand strings: altair turns a string into a channel
by a schema lookup on every rerun (about a third of a Drift page rerun at 1M), and the
drawn spec is the same."""

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
        x=alt.X("when:T"),
        tooltip=[alt.Tooltip("when:T", title="when (UTC)", format="%Y-%m-%d %H:%M"), alt.Tooltip("text:N")])
    labels = base.transform_filter("datum.label != ''").mark_text(
        align="right", dx=-3, dy=-4, fontSize=10, color=MOVE_COLOUR).encode(
        x=alt.X("when:T"), y=alt.value(8), text=alt.Text("label:N"))
    return rules + labels


PICK = "pick"  # the name of a photo map's click selection (``st.altair_chart(selection_mode=[PICK])``)


def photo_map(dots: pd.DataFrame, x: alt.X, y: alt.Y, color: alt.Color, tooltip: list,
              shape: alt.Shape | None = None) -> alt.LayerChart:
    """A scatter of photos (``dots``: the x and y fields, ``request_id``, ``photo`` as a data
    URL or None) whose hovered point shows its thumbnail, and whose clicked point is the
    ``PICK`` selection (see ``picked``). Tooltips cannot show images, so the thumbnail is an
    image layer filtered to the nearest hovered point and drawn at it."""
    hover = alt.selection_point(on="pointerover", nearest=True, fields=["request_id"], empty=False,
                                clear="pointerout")
    pick = alt.selection_point(name=PICK, on="click", nearest=True, fields=["request_id"], empty=False)
    tooltip = [alt.Tooltip(t) if isinstance(t, str) else t for t in tooltip]
    encoding = {"x": x, "y": y, "color": color, "tooltip": tooltip} | ({"shape": shape} if shape else {})
    points = alt.Chart(dots).mark_point(size=40, filled=True, opacity=0.7).encode(**encoding).add_params(hover, pick)
    photo = alt.Chart(dots).mark_image(width=96, height=96).encode(
        x=x, y=y, url=alt.Url("photo:N")).transform_filter(hover)
    return points + photo


def picked(event) -> str | None:
    """The request id a click picked in a ``photo_map`` drawn with ``on_select="rerun"``, or None."""
    chosen = (event.selection.get(PICK) or []) if event else []
    return next((p.get("request_id") for p in chosen if isinstance(p, dict)), None)
