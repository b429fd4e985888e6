"""Named queries: parameter binding, time parsing, and exact results on a real DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import duckdb
import pandas as pd
import pytest

from core import queries as Q
from core.errors import InputError, NotFoundError

NAMES = sorted(Q.QUERIES)
WINDOW = {"since": "2026-03-01T10:00:00", "until": "2026-03-01T11:00:00"}


# --- binding ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_every_query_binds_one_value_per_placeholder(name: str) -> None:
    query, params = Q.bind(name, WINDOW)
    assert query.sql.count("?") == len(params) == len(query.parameters)


@pytest.mark.parametrize("name", NAMES)
def test_query_text_has_no_formatting_leftovers(name: str) -> None:
    sql = Q.QUERIES[name].sql
    for leftover in ("{", "}", "%s", ".format", "%("):
        assert leftover not in sql


def test_bind_gives_dates_and_utc_times_in_parameter_order() -> None:
    _, params = Q.bind("signal_by_operator", {"since": "2026-03-01T23:30:00Z", "until": "2026-03-02T00:30:00Z"})
    assert params == ("2026-03-01", "2026-03-02", "2026-03-01", "23", "2026-03-02", "00",
                      "2026-03-01 23:30:00.000", "2026-03-02 00:30:00.000")


def test_bind_without_times_covers_everything() -> None:
    _, params = Q.bind("quarantine_counts")
    assert params == ("1970-01-01", "9999-12-31", "1970-01-01", "00", "9999-12-31", "23",
                      "1970-01-01 00:00:00.000", "9999-12-31 23:59:59.000")


def test_coverage_range_is_snapped_outwards_to_whole_coverage_windows() -> None:
    # coverage_grid sums 1-hour windows: a range inside one is widened to it, never cut through it.
    inside = {"since": "2026-03-01T10:07", "until": "2026-03-01T11:31"}
    _, params, bounds = Q.bind_with_bounds("coverage_cells", inside)
    assert (bounds.since, bounds.until) == (datetime(2026, 3, 1, 10, tzinfo=UTC),
                                            datetime(2026, 3, 1, 12, tzinfo=UTC))
    assert params[-2:] == ("2026-03-01 10:00:00.000", "2026-03-01 12:00:00.000")
    edges = {"since": "2026-03-01T09:00", "until": "2026-03-01T11:00"}
    on_edges = Q.bind_with_bounds("coverage_cells", edges)[2]
    assert (on_edges.since.hour, on_edges.until.hour) == (9, 11)
    # the 1-minute tables are never snapped
    _, _, minute = Q.bind_with_bounds("signal_by_operator", inside)
    assert (minute.since.minute, minute.until.minute) == (7, 31)
    # the unbounded default stays unbounded
    assert Q.bind("coverage_cells")[1][-2:] == Q.bind("quarantine_counts")[1][-2:]


@pytest.mark.parametrize(
    ("since", "until", "bounds"),
    [
        # until is excluded: on the hour it ends the previous hour's partition, on midnight the previous day's.
        ("2026-03-01T10:00", "2026-03-01T11:00", ("2026-03-01", "2026-03-01", "2026-03-01", "10", "2026-03-01", "10")),
        ("2026-03-01T23:00", "2026-03-02T00:00", ("2026-03-01", "2026-03-01", "2026-03-01", "23", "2026-03-01", "23")),
        # one millisecond past the hour reads that hour; the last millisecond of an hour stays in it.
        ("2026-03-01T10:00", "2026-03-01T11:00:00.001",
         ("2026-03-01", "2026-03-01", "2026-03-01", "10", "2026-03-01", "11")),
        ("2026-03-01T10:59:59.999", "2026-03-02T00:00:00.001",
         ("2026-03-01", "2026-03-02", "2026-03-01", "10", "2026-03-02", "00")),
        # the SQL compares milliseconds: a microsecond past the hour is the hour itself, as the SQL reads it.
        ("2026-03-01T10:00", "2026-03-01T11:00:00.000900",
         ("2026-03-01", "2026-03-01", "2026-03-01", "10", "2026-03-01", "10")),
    ],
)
def test_partition_bounds_at_hour_and_day_boundaries(since: str, until: str, bounds: tuple[str, ...]) -> None:
    _, params = Q.bind("signal_by_operator", {"since": since, "until": until})
    assert params[:6] == bounds


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("2026-03-01T10:00:00", "2026-03-01T10:00:00"),
        ("2026-03-01T11:00:00", "2026-03-01T10:00:00"),
        ("2026-03-01T11:00:00+01:00", "2026-03-01T10:00:00Z"),  # the same instant
        ("2026-03-01T10:00:00", "2026-03-01T09:59:59.999"),
    ],
)
def test_since_not_before_until_is_an_input_error(since: str, until: str) -> None:
    with pytest.raises(InputError, match="must be after"):
        Q.bind("signal_by_operator", {"since": since, "until": until})


def test_since_after_the_default_until_is_an_input_error() -> None:
    with pytest.raises(InputError):
        Q.bind("signal_by_operator", {"since": "9999-12-31T23:59:59"})


def test_unknown_query_is_not_found() -> None:
    with pytest.raises(NotFoundError) as caught:
        Q.bind("drop_everything", WINDOW)
    assert "signal_by_operator" in str(caught.value)  # the next step lists the known names


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "10:00", "2026-03-01T25:00", ""])
def test_bad_time_is_an_input_error(bad: str) -> None:
    with pytest.raises(InputError, match="since"):
        Q.bind("signal_by_operator", {"since": bad, "until": "2026-03-02T00:00:00"})


def test_unknown_parameter_is_an_input_error() -> None:
    with pytest.raises(InputError, match="operator"):
        Q.bind("signal_by_operator", {**WINDOW, "operator": "Movistar"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01T10:00", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("2026-03-01 10:00:00", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("2026-03-01T12:00:00+02:00", datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 10, 0), datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        (datetime(2026, 3, 1, 5, 0, tzinfo=timezone(timedelta(hours=-5))), datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_parse_time_treats_naive_times_as_utc(value: Any, expected: datetime) -> None:
    parsed = Q.parse_time(value, "since")
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_an_offset_that_crosses_midnight_moves_the_date_bound() -> None:
    _, params = Q.bind("signal_by_operator", {"since": "2026-03-02T01:00:00+02:00", "until": "2026-03-02T03:00"})
    assert params[:4] == ("2026-03-01", "2026-03-02", "2026-03-01", "23")
    assert params[6] == "2026-03-01 23:00:00.000"


# --- results on DuckDB -----------------------------------------------------------------------------

def _create(con: duckdb.DuckDBPyConnection, table: str, columns: str, values: str, time_column: str,
            select: str) -> None:
    con.execute(f"""
        CREATE TABLE {table} AS
        SELECT {select},
               strftime(CAST({time_column} AS TIMESTAMP), '%Y-%m-%d') AS dt,
               strftime(CAST({time_column} AS TIMESTAMP), '%H') AS hr
        FROM (VALUES {values}) AS t({columns})
    """)


@pytest.fixture
def lake() -> Iterator[duckdb.DuckDBPyConnection]:
    """In-memory tables shaped like the lake: two batches of partial sums for the same windows."""
    con = duckdb.connect()
    _create(
        con, "signal_strength_by_operator", "ws, operator, s, c, mn, mx, n, b", """
            ('2026-03-01 10:00:00', 'Movistar', 30, 3, 5, 15, 4, 1),
            ('2026-03-01 10:00:00', 'Movistar', 20, 1, 20, 20, 1, 2),
            ('2026-03-01 10:01:00', 'Movistar', 4, 2, 1, 3, 3, 1),
            ('2026-03-01 10:00:00', 'Yoigo', -70, 7, -20, 0, 3, 1),
            ('2026-03-01 09:59:00', 'Movistar', 1000, 1, 1000, 1000, 100, 1),
            ('2026-03-01 11:00:00', 'Movistar', 1000, 1, 1000, 1000, 1000, 3),
            ('2026-02-28 10:00:00', 'Yoigo', 1000, 1, 1000, 1000, 1, 0)
        """, "ws", """
            CAST(ws AS TIMESTAMP) AS window_start, CAST(ws AS TIMESTAMP) + INTERVAL 1 MINUTE AS window_end,
            operator, operator AS network, CAST(s AS DOUBLE) AS signal_sum, CAST(c AS BIGINT) AS signal_count,
            CAST(mn AS DOUBLE) AS signal_min, CAST(mx AS DOUBLE) AS signal_max, CAST(n AS BIGINT) AS record_count,
            CAST(b AS BIGINT) AS batch_id
        """,
    )
    _create(
        con, "gps_precision_by_provider", "ws, provider, ps, pc, ss, sc, b", """
            ('2026-03-01 10:00:00', 'gps', 10, 2, 20, 2, 1),
            ('2026-03-01 10:00:00', 'gps', 50, 1, 6, 2, 2),
            ('2026-03-01 10:05:00', 'fused', 9, 3, 0, 0, 1),
            ('2026-03-01 11:30:00', 'gps', 1000, 1, 1000, 1, 3)
        """, "ws", """
            CAST(ws AS TIMESTAMP) AS window_start, CAST(ws AS TIMESTAMP) + INTERVAL 1 MINUTE AS window_end,
            provider, CAST(ps AS DOUBLE) AS precision_sum, CAST(pc AS BIGINT) AS precision_count,
            CAST(ss AS DOUBLE) AS satellites_sum, CAST(sc AS BIGINT) AS satellites_count,
            CAST(b AS BIGINT) AS batch_id
        """,
    )
    _create(
        con, "status_count", "ws, postal_code, status, description, n, b", """
            ('2026-03-01 10:00:00', '28047', '0', 'STATE_IN_SERVICE', 5, 1),
            ('2026-03-01 10:00:00', '28047', '0', 'STATE_IN_SERVICE', 2, 2),
            ('2026-03-01 10:30:00', '08001', '2', 'STATE_EMERGENCY_ONLY', 4, 1),
            ('2026-03-01 09:00:00', '28047', '0', 'STATE_IN_SERVICE', 100, 0)
        """, "ws", """
            CAST(ws AS TIMESTAMP) AS window_start, CAST(ws AS TIMESTAMP) + INTERVAL 1 MINUTE AS window_end,
            postal_code, status, description, CAST(n AS BIGINT) AS record_count, CAST(b AS BIGINT) AS batch_id
        """,
    )
    _create(
        con, "quarantine", "arrived, seq, reason, b", """
            ('2026-03-01 10:00:05', 's1', 'malformed JSON', 1),
            ('2026-03-01 10:20:00', 's2', 'malformed JSON', 2),
            ('2026-03-01 10:10:00', 's3', 'empty payload', 1),
            ('2026-03-01 12:00:00', 's4', 'malformed JSON', 3),
            ('2026-02-28 10:30:00', 's5', 'empty payload', 0)
        """, "arrived", """
            CAST(arrived AS TIMESTAMP) AS arrival_time, seq AS stream_seq, reason, '' AS raw_payload,
            CAST(b AS BIGINT) AS batch_id
        """,
    )
    _create(
        con, "coverage_grid", "ws, lat, lon, operator, s, c, r, b", """
            ('2026-03-01 10:00:00', 40.41, -3.71, 'Movistar', 30, 3, 4, 1),
            ('2026-03-01 10:02:00', 40.41, -3.71, 'Movistar', 10, 1, 1, 2),
            ('2026-03-01 10:00:00', 41.38, 2.17, 'Yoigo', 5, 1, 1, 1),
            ('2026-03-01 11:00:00', 40.41, -3.71, 'Movistar', 100, 1, 1, 3)
        """, "ws", """
            CAST(ws AS TIMESTAMP) AS window_start, CAST(ws AS TIMESTAMP) + INTERVAL 1 MINUTE AS window_end,
            CAST(lat AS DOUBLE) AS lat_cell, CAST(lon AS DOUBLE) AS lon_cell, operator,
            CAST(s AS DOUBLE) AS signal_sum, CAST(c AS BIGINT) AS signal_count, CAST(r AS BIGINT) AS record_count,
            CAST(b AS BIGINT) AS batch_id
        """,
    )
    yield con
    con.close()


def _t(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 3, 1, hour, minute, second)


# Averages are sum of sums / sum of counts across batches: Movistar 10:00 is (30 + 20) / (3 + 1) = 12.5,
# not the average of the batches' averages (10 + 20) / 2 = 15. Rows before since, at until (exclusive)
# and on another day are left out.
EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "signal_by_operator": [
        ("Yoigo", -10.0, 7, -20.0, 0.0),
        ("Movistar", 9.0, 6, 1.0, 20.0),
    ],
    "signal_per_minute": [
        (_t(10, 0), "Movistar", 12.5, 4),
        (_t(10, 0), "Yoigo", -10.0, 7),
        (_t(10, 1), "Movistar", 2.0, 2),
    ],
    "gps_by_provider": [
        ("fused", 3.0, None, 3),
        ("gps", 20.0, 6.5, 3),
    ],
    "status_by_postal_code": [
        ("28047", "0", "STATE_IN_SERVICE", 7),
        ("08001", "2", "STATE_EMERGENCY_ONLY", 4),
    ],
    "quarantine_counts": [
        ("malformed JSON", 2, _t(10, 20)),
        ("empty payload", 1, _t(10, 10)),
    ],
    # Two batches of the same cell add up; the 11:00 window is outside.
    "coverage_cells": [
        (40.41, -3.71, "Movistar", 40.0, 4, 5),
        (41.38, 2.17, "Yoigo", 5.0, 1, 1),
    ],
    # 4 + 1 + 3 + 3 records (every usable record is counted under its operator: status_count's 5 + 2 + 4);
    # (30 + 20 + 4 - 70) / (3 + 1 + 2 + 7) signal; Movistar and Yoigo; s1, s2, s3.
    "kpis": [(11, -16 / 13, 2, 3)],
    # Each number for 10:00-11:00, the hour before (09:00-10:00) and the same hour a day earlier; a period
    # without rows is None (no data), never 0.
    "signal_by_operator_compared": [
        ("Yoigo", -10.0, None, 1000.0, 7, None, 1, -20.0, None, 1000.0, 0.0, None, 1000.0),
        ("Movistar", 9.0, 1000.0, None, 6, 1, None, 1.0, 1000.0, None, 20.0, 1000.0, None),
    ],
    "kpis_compared": [(11, 100, 1, -16 / 13, 1000.0, 1000.0, 2, 1, 1, 3, 0, 1)],
}


def test_every_named_query_has_an_expected_result() -> None:
    assert sorted(EXPECTED) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_query_results_are_exact_on_duckdb(lake: duckdb.DuckDBPyConnection, name: str) -> None:
    query, params = Q.bind(name, WINDOW)
    rows = lake.execute(query.sql, list(params)).fetchall()
    assert rows == [tuple(pytest.approx(v) if isinstance(v, float) else v for v in row) for row in EXPECTED[name]]


def test_average_is_sum_of_sums_over_sum_of_counts(lake: duckdb.DuckDBPyConnection) -> None:
    query, params = Q.bind("signal_per_minute", {"since": "2026-03-01T10:00", "until": "2026-03-01T10:01"})
    rows = lake.execute(query.sql, list(params)).fetchall()
    movistar = [row for row in rows if row[1] == "Movistar"]
    assert movistar == [(_t(10, 0), "Movistar", 12.5, 4)]


def test_offset_times_select_the_same_rows_as_utc(lake: duckdb.DuckDBPyConnection) -> None:
    query, utc = Q.bind("status_by_postal_code", WINDOW)
    _, shifted = Q.bind("status_by_postal_code",
                        {"since": "2026-03-01T11:00:00+01:00", "until": "2026-03-01T06:00:00-05:00"})
    assert shifted == utc
    assert lake.execute(query.sql, list(shifted)).fetchall() == lake.execute(query.sql, list(utc)).fetchall()


@pytest.mark.parametrize(("compared", "base"), [("signal_by_operator_compared", "signal_by_operator"),
                                                ("kpis_compared", "kpis")])
@pytest.mark.parametrize("window", [WINDOW, {"since": "2026-03-01T09:30", "until": "2026-03-01T10:10"},
                                    {"since": "2026-02-28T10:00", "until": "2026-03-01T11:00"}])
def test_a_comparison_equals_its_query_run_on_each_period(lake: duckdb.DuckDBPyConnection, compared: str,
                                                          base: str, window: dict[str, str]) -> None:
    """The reference: the plain query run three times, on the range, the one before it and a day earlier."""
    since, until = (Q.parse_time(window[k], k) for k in ("since", "until"))
    periods = {"": (since, until), "previous_": (since - (until - since), since),
               "day_before_": (since - timedelta(days=1), until - timedelta(days=1))}
    query, params = Q.bind(compared, window)
    got = lake.execute(query.sql, list(params)).df()
    for prefix, (start, end) in periods.items():
        plain, plain_params = Q.bind(base, {"since": start, "until": end})
        want = lake.execute(plain.sql, list(plain_params)).df()
        if base == "kpis":
            records = want.loc[0, "records"]
            for column in ("records", "avg_signal", "operators", "quarantined"):
                value = got.loc[0, f"{prefix}{column}"]
                if column == "records" and records == 0:
                    assert pd.isna(value), "no rows is no data, not 0"
                else:
                    assert value == pytest.approx(want.loc[0, column], nan_ok=True), (prefix, column)
            continue
        mine = got.dropna(subset=[f"{prefix}samples"]).set_index("operator")
        assert sorted(mine.index) == sorted(want["operator"]), prefix
        for row in want.itertuples(index=False):
            assert mine.loc[row.operator, f"{prefix}samples"] == row.samples
            assert mine.loc[row.operator, f"{prefix}avg_signal"] == pytest.approx(row.avg_signal, nan_ok=True)
            assert mine.loc[row.operator, f"{prefix}min_signal"] == row.min_signal
            assert mine.loc[row.operator, f"{prefix}max_signal"] == row.max_signal


@pytest.mark.parametrize(("name", "column"), [("kpis", 2), ("kpis_compared", 6)])
def test_unknown_is_not_counted_among_the_operators_seen(lake: duckdb.DuckDBPyConnection, name: str,
                                                         column: int) -> None:
    lake.execute("INSERT INTO signal_strength_by_operator SELECT window_start, window_end, 'unknown', 'unknown', "
                 "signal_sum, signal_count, signal_min, signal_max, record_count, batch_id, dt, hr "
                 "FROM signal_strength_by_operator")
    query, params = Q.bind(name, WINDOW)
    assert lake.execute(query.sql, list(params)).fetchall()[0][column] == 2  # Movistar and Yoigo


def test_a_comparison_needs_a_range() -> None:
    with pytest.raises(InputError, match="give since and until"):
        Q.bind("kpis_compared", {"since": "2026-03-01T10:00"})


def test_whole_range_includes_every_row(lake: duckdb.DuckDBPyConnection) -> None:
    query, params = Q.bind("quarantine_counts")
    rows = lake.execute(query.sql, list(params)).fetchall()
    assert {reason: count for reason, count, _ in rows} == {"malformed JSON": 3, "empty payload": 2}


# --- partition bounds: the same rows as the time bounds alone --------------------------------------

BOUNDARY_TIMES = ("2026-03-01 22:59:59.999", "2026-03-01 23:00:00", "2026-03-01 23:00:00.001",
                  "2026-03-01 23:59:59.999", "2026-03-02 00:00:00", "2026-03-02 00:00:00.001",
                  "2026-03-02 00:59:59.999", "2026-03-02 01:00:00", "2026-03-02 01:30:00")
RANGE_EDGES = ("2026-03-01T22:30", "2026-03-01T23:00", "2026-03-01T23:59:59.999", "2026-03-02T00:00",
               "2026-03-02T00:00:00.001", "2026-03-02T00:30", "2026-03-02T01:00", "2026-03-02T02:00")


@pytest.fixture
def straddling() -> Iterator[duckdb.DuckDBPyConnection]:
    """Every table with rows on, just before and just after hour and day boundaries, partitioned as the job does."""
    con = duckdb.connect()
    times = ", ".join(f"(TIMESTAMP '{t}', {i})" for i, t in enumerate(BOUNDARY_TIMES))
    con.execute(f"CREATE TABLE instants AS SELECT * FROM (VALUES {times}) AS t(moment, i)")
    window = "date_trunc('minute', moment)"
    aggregates = {
        "signal_strength_by_operator": "CASE WHEN i % 2 = 0 THEN 'Movistar' ELSE 'Yoigo' END AS operator, "
        "'net' AS network, CAST(i * 3 AS DOUBLE) AS signal_sum, CAST(i + 1 AS BIGINT) AS signal_count, "
        "CAST(i AS DOUBLE) AS signal_min, CAST(i * 2 AS DOUBLE) AS signal_max, CAST(i + 2 AS BIGINT) AS record_count",
        "gps_precision_by_provider": "'gps' AS provider, CAST(i AS DOUBLE) AS precision_sum, "
        "CAST(i + 1 AS BIGINT) AS precision_count, CAST(i AS DOUBLE) AS satellites_sum, "
        "CAST(1 AS BIGINT) AS satellites_count",
        "status_count": "'28047' AS postal_code, CAST(i % 3 AS VARCHAR) AS status, 'S' AS description, "
        "CAST(i + 1 AS BIGINT) AS record_count",
        "coverage_grid": "40.41 AS lat_cell, -3.71 AS lon_cell, 'Movistar' AS operator, "
        "CAST(i AS DOUBLE) AS signal_sum, CAST(i + 1 AS BIGINT) AS signal_count, CAST(i + 2 AS BIGINT) AS record_count",
    }
    for table, columns in aggregates.items():
        con.execute(f"""
            CREATE TABLE {table} AS
            SELECT {window} AS window_start, {window} + INTERVAL 1 MINUTE AS window_end, {columns},
                   CAST(i AS BIGINT) AS batch_id,
                   strftime({window}, '%Y-%m-%d') AS dt, strftime({window}, '%H') AS hr
            FROM instants
        """)
    con.execute("""
        CREATE TABLE quarantine AS
        SELECT moment AS arrival_time, CAST(i AS VARCHAR) AS stream_seq,
               CASE WHEN i % 2 = 0 THEN 'malformed JSON' ELSE 'empty payload' END AS reason,
               '' AS raw_payload, CAST(i AS BIGINT) AS batch_id,
               strftime(moment, '%Y-%m-%d') AS dt, strftime(moment, '%H') AS hr
        FROM instants
    """)
    yield con
    con.close()


def _without_partition_bounds(query: Q.NamedQuery, params: tuple[Any, ...]) -> tuple[str, list[Any]]:
    sql = query.sql.replace(Q.PARTITION_BOUNDS, "TRUE\n")
    assert "dt" not in sql.replace("dt_", "")
    return sql, [v for name, v in zip(query.parameters, params, strict=True) if name.endswith(("since", "until"))]


@pytest.mark.parametrize("name", NAMES)
def test_partition_bounds_select_the_rows_of_the_time_bounds(straddling: duckdb.DuckDBPyConnection,
                                                             name: str) -> None:
    compared = 0
    for i, since in enumerate(RANGE_EDGES):
        for until in RANGE_EDGES[i + 1:]:
            query, params = Q.bind(name, {"since": since, "until": until})
            unbounded_sql, unbounded_params = _without_partition_bounds(query, params)
            bounded = straddling.execute(query.sql, list(params)).fetchall()
            assert bounded == straddling.execute(unbounded_sql, unbounded_params).fetchall(), (since, until)
            compared += bool(bounded and bounded != [(0, None, 0, 0)])
    assert compared > 10  # most ranges hold rows: the comparison is not between empty answers
