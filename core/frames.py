"""Small, pure operations on query results that several pages share."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

# A spreadsheet may run a text cell that starts with one of these as a formula (OWASP: CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NOT_TEXT = frozenset("iufcbmM")  # dtype kinds of numbers, booleans, times and durations
# Text that is just a number ("-80", "+1.5e3") is no formula: it is exported as it is.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?").fullmatch


def keep(frame: pd.DataFrame, column: str, values: Sequence[str] | None) -> pd.DataFrame:
    """Return the rows whose column is one of values (all rows when values is empty or None)."""
    if not values or column not in frame.columns:
        return frame
    return frame[frame[column].isin(list(values))].reset_index(drop=True)


def options(frame: pd.DataFrame | None, column: str) -> list[str]:
    """Return the distinct values of a column, sorted, for a filter widget."""
    if frame is None or column not in frame.columns:
        return []
    return sorted(str(v) for v in frame[column].dropna().unique())


def neutralise_cell(value: Any) -> Any:
    """Return a text cell a spreadsheet would read as a formula with a leading `'`; any other value as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER(value):
        return "'" + value
    return value


def to_safe_csv(frame: pd.DataFrame) -> str:
    """Return the frame as CSV for a download, its text cells and column names neutralised against formulas.

    Only text is touched: numeric, time and boolean columns are written as they are (-80 stays -80).
    """
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype.kind not in _NOT_TEXT:  # text, categories, mixed objects
            safe[column] = safe[column].astype(object).map(neutralise_cell)
    safe.columns = [neutralise_cell(str(name)) for name in safe.columns]
    return safe.to_csv(index=False)
