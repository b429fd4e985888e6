"""A number against the periods the comparison queries give it: the period before and the same period a day earlier.

The comparison queries (core.queries.PERIODS) answer NULL for a period the lake has no rows for. Such a
period is "no data": it never becomes a 0 % change, nor a fall to zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.queries import PERIODS

NO_DATA = "no data"
# Column prefixes of the comparison queries' periods: the range itself (""), the one before, a day earlier.
NOW, PREVIOUS, DAY_BEFORE = (prefix for prefix, _ in PERIODS)
KPI_COLUMNS = ("records", "avg_signal", "operators", "quarantined")


@dataclass(frozen=True)
class Change:
    """How a number changed against an earlier period: its text, and its direction (None: no data to compare)."""

    text: str
    direction: int | None  # 1 up, -1 down, 0 unchanged (at the precision shown)


def number(value: Any) -> float | None:
    """Return a query's value as a float, or None for NULL (None, NaN, pandas NA): a period without rows."""
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def missing(value: Any) -> bool:
    """Return True for NULL (None, NaN, pandas NA): a period without rows."""
    return number(value) is None


def change(current: Any, before: Any, *, percent: bool = False, digits: int = 0) -> Change:
    """Return `current` against `before`: a difference with `digits` decimals, or a percentage of `before`.

    A percentage of zero is no number: the difference is given instead.
    """
    now, then = number(current), number(before)
    if now is None or then is None:
        return Change(NO_DATA, None)
    difference = now - then
    if percent and then != 0:
        ratio = difference / abs(then) * 100
        # One decimal below 10 %, so a small change does not read as none.
        places = 1 if abs(ratio) < 10 else 0
        shown = round(ratio, places)
        return Change("0 %" if shown == 0 else f"{shown:+.{places}f} %", _sign(shown))
    shown = round(difference, digits)
    return Change("0" if shown == 0 else f"{shown:+,.{digits}f}", _sign(shown))


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def kpi_periods(row: Mapping[str, Any] | None) -> dict[str, dict[str, float | None]]:
    """Return the headline numbers of each period (NOW, PREVIOUS, DAY_BEFORE) from a kpis_compared row.

    A period with no rows in any table has every number None. Otherwise a count without rows of its own
    is 0 (no records aggregated, everything quarantined), and an average without readings stays None.
    Records stay None beside an average: signal rows without a record count were committed before
    signal_strength_by_operator had the column, so their count is unknown, not 0.
    """
    periods: dict[str, dict[str, float | None]] = {}
    for prefix in (NOW, PREVIOUS, DAY_BEFORE):
        values: dict[str, float | None] = dict.fromkeys(KPI_COLUMNS)
        for column in KPI_COLUMNS:
            values[column] = number(row.get(prefix + column)) if row is not None else None
        if values["records"] is not None or values["avg_signal"] is not None or values["quarantined"]:
            unknown = {"avg_signal", "records"} if values["avg_signal"] is not None else {"avg_signal"}
            values = {column: 0.0 if value is None and column not in unknown else value
                      for column, value in values.items()}
        else:
            values = dict.fromkeys(KPI_COLUMNS)
        periods[prefix] = values
    return periods
