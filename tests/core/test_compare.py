"""Changes against earlier periods: a period without rows is "no data", never a 0 % change."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from core.compare import DAY_BEFORE, NO_DATA, PREVIOUS, Change, change, kpi_periods


@pytest.mark.parametrize(("current", "before", "kwargs", "want"), [
    (120, 100, {"percent": True}, Change("+20 %", 1)),
    (2, 6, {"percent": True}, Change("-67 %", -1)),
    (1004, 1000, {"percent": True}, Change("+0.4 %", 1)),  # one decimal below 10 %: not "0 %"
    (100, 100, {"percent": True}, Change("0 %", 0)),
    (1_000_001, 1_000_000, {"percent": True}, Change("0 %", 0)),
    (15.0, 12.75, {"digits": 1}, Change("+2.2", 1)),
    (12.0, 15.0, {"digits": 1}, Change("-3.0", -1)),
    (3, 1, {}, Change("+2", 1)),
    (1500, 0, {"percent": True}, Change("+1,500", 1)),  # no percentage of zero: the difference
])
def test_a_change_against_a_period_with_data(current: float, before: float, kwargs: dict[str, object],
                                            want: Change) -> None:
    assert change(current, before, **kwargs) == want  # type: ignore[arg-type]


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA, math.nan])
def test_a_period_without_rows_is_no_data_never_zero(missing: object) -> None:
    assert change(5, missing, percent=True) == Change(NO_DATA, None)
    assert change(missing, 5, percent=True) == Change(NO_DATA, None)


def test_kpi_periods_reads_each_period_of_a_kpis_compared_row() -> None:
    # As in tests/core/test_queries.py: the range, the hour before (signal only) and a day earlier.
    row = {"records": 11, "previous_records": 100, "day_before_records": 1,
           "avg_signal": -16 / 13, "previous_avg_signal": 1000.0, "day_before_avg_signal": 1000.0,
           "operators": 2, "previous_operators": 1, "day_before_operators": 1,
           "quarantined": 3, "previous_quarantined": 0, "day_before_quarantined": 1}
    periods = kpi_periods(row)
    assert periods[""] == {"records": 11, "avg_signal": -16 / 13, "operators": 2, "quarantined": 3}
    assert periods[PREVIOUS] == {"records": 100, "avg_signal": 1000.0, "operators": 1, "quarantined": 0}
    assert periods[DAY_BEFORE] == {"records": 1, "avg_signal": 1000.0, "operators": 1, "quarantined": 1}


def test_only_quarantine_is_no_records_and_rows_older_than_the_record_count_are_unknown() -> None:
    row = {"records": None, "previous_records": None, "day_before_records": None,
           "avg_signal": None, "previous_avg_signal": 12.0, "day_before_avg_signal": None,
           "operators": 0, "previous_operators": 1, "day_before_operators": 0,
           "quarantined": 4, "previous_quarantined": 0, "day_before_quarantined": 0}
    periods = kpi_periods(row)
    # Everything quarantined: no records aggregated, which is 0, not no data.
    assert periods[""] == {"records": 0, "avg_signal": None, "operators": 0, "quarantined": 4}
    # Signal rows committed before signal_strength_by_operator had record_count: a count not known.
    assert periods[PREVIOUS] == {"records": None, "avg_signal": 12.0, "operators": 1, "quarantined": 0}


def test_a_period_without_rows_in_any_table_has_no_numbers() -> None:
    row = {"records": 2, "previous_records": None, "day_before_records": float("nan"),
           "avg_signal": 15.0, "previous_avg_signal": None, "day_before_avg_signal": None,
           "operators": 2, "previous_operators": 0, "day_before_operators": 0,  # COUNT(DISTINCT ...) of no rows
           "quarantined": 1, "previous_quarantined": 0, "day_before_quarantined": 0}
    periods = kpi_periods(row)
    assert periods[PREVIOUS] == periods[DAY_BEFORE] == dict.fromkeys(("records", "avg_signal", "operators",
                                                                      "quarantined"))
    assert change(periods[""]["operators"], periods[PREVIOUS]["operators"]) == Change(NO_DATA, None)
    assert kpi_periods(None)[""] == dict.fromkeys(("records", "avg_signal", "operators", "quarantined"))
