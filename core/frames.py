"""Small, pure operations on query results that several pages share."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


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
