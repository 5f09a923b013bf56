"""How answers and figures read: one percent format for every page and the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nutrilearn.answers import MISSING, VEGA_PERCENT, percent, percent_columns

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, text", [
    (0.382, "38.2%"), (0.38249, "38.2%"), (1.0, "100.0%"), (0.0, "0.0%"), (0.5, "50.0%"),
    (np.float32(0.25), "25.0%"), (0.0004, "0.0%"),
])
def test_percent_has_one_decimal_always(value, text):
    assert percent(value) == text


def test_percent_signed_and_unknown():
    assert percent(0.04, signed=True) == "+4.0%"
    assert percent(-0.125, signed=True) == "-12.5%"
    assert percent(0.0, signed=True) == "+0.0%"
    for unknown in (None, float("nan"), np.nan, pd.NA):
        assert percent(unknown) == MISSING


def test_vega_format_is_the_same_format():
    """Charts format in d3: ``.1%`` is d3 for what ``percent`` writes."""
    assert VEGA_PERCENT == ".1%" and percent(0.1234) == f"{0.1234:{VEGA_PERCENT}}"


def test_percent_columns_shows_percent_text_and_keeps_numbers():
    table = pd.DataFrame({"version": ["1", "2"], "accuracy": [0.8123, np.nan], "judged": [10, 0]})
    styler = percent_columns(table, ("accuracy", "not there"))
    html = styler.to_html()
    assert "81.2%" in html and MISSING in html
    assert ">10<" in html  # other columns untouched
    assert styler.data["accuracy"].iloc[0] == 0.8123  # still a number: the table sorts by value
    styled = percent_columns(table.style.highlight_max(subset=["judged"]), ["accuracy"])  # a Styler goes on
    assert "81.2%" in styled.to_html()


def test_pages_and_the_cli_format_percents_only_through_the_helper():
    """No page, app module or package text formats a share on its own (``:.0%``, ``.2%``,
    Streamlit's "percent" column format with its two decimals)."""
    ad_hoc = re.compile(r"""(:[+]?\.\d%\}|format=["'][+]?\.\d%["']|format=["']percent["'])""")
    offenders = []
    for folder in ("pages", "nutrilearn_app", "nutrilearn"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "answers.py":
                continue
            for no, line in enumerate(path.read_text().splitlines(), 1):
                if ad_hoc.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert offenders == []
