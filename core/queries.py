"""Named, parameterised SQL over the lake tables, one set valid on DuckDB and on Athena (Trino).

Values are always bound to `?` placeholders, never formatted into the text. Averages are computed
here from the partial sums of every batch (sum of sums / sum of counts), so they are exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import InputError, NotFoundError
from core.lake_layout import COVERAGE_GRID, WINDOW_SECONDS

# Partition bounds first (dt, then dt/hr of the first and last hour), then the time bounds.
TIME_RANGE = ("dt_from", "dt_to", "dt_from", "hr_from", "dt_to", "hr_to", "since", "until")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@dataclass(frozen=True)
class NamedQuery:
    """A query the console and the CLI can run by name."""

    name: str
    description: str
    tables: tuple[str, ...]
    sql: str
    parameters: tuple[str, ...] = TIME_RANGE
    # The table's window length: a range is snapped outwards to whole windows (coverage_grid's are
    # coarser than a minute), so a window is counted whole or not at all and the result says which span.
    window_seconds: int = WINDOW_SECONDS
    # A comparison query reads its range and the two it is compared with (core.queries.PERIODS): the
    # previous period of the same length and the same period a day earlier, in one scan.
    compared: bool = False


# Rows sit in the dt/hr partition of their time column, so these bounds only skip partitions the
# time bounds would leave out anyway; DuckDB and Athena prune files and partitions on them.
PARTITION_BOUNDS = "dt BETWEEN ? AND ?\n  AND (dt > ? OR hr >= ?) AND (dt < ? OR hr <= ?)\n"


def _windowed(select: str, table: str, tail: str, time_column: str = "window_start") -> str:
    return (
        f"{select}\nFROM {table}\n"
        f"WHERE {PARTITION_BOUNDS}"
        f"  AND {time_column} >= CAST(? AS TIMESTAMP) AND {time_column} < CAST(? AS TIMESTAMP)\n"
        f"{tail}"
    )


# The periods a comparison query answers for, each with a column suffix: the range asked for, the one just
# before it (same length) and the same range a day earlier. A period the lake has no rows for is NULL,
# never 0, so the console can say "no data" instead of showing a change.
PERIODS: tuple[tuple[str, str], ...] = (("", "the range"), ("previous_", "the period before it"),
                                        ("day_before_", "the same period a day earlier"))
DAY = timedelta(days=1)


AVG_SIGNAL = "SUM({when} signal_sum {end}) / NULLIF(SUM({when} signal_count {end}), 0)"


def _in_period(time_column: str) -> str:
    return f"{time_column} >= CAST(? AS TIMESTAMP) AND {time_column} < CAST(? AS TIMESTAMP)"


# A period's records are counted from the signal table's record_count, and are NULL (unknown) when a row read
# lacks it (committed before the table had the column): a sum of the rows that have it would undercount silently.
RECORDS_KNOWN = "COUNT({when} 1 {end}) = COUNT({when} record_count {end})"


def _compared(select: list[tuple[str, str, int]], table: str, tail: str, time_column: str = "window_start"
              ) -> tuple[str, tuple[str, ...]]:
    """Return a comparison query's SQL and parameter names: `select` holds (expression, alias, periods
    used per expression), the expression's `{when}` ... `{end}` marking the value counted per period."""
    columns: list[str] = []
    parameters: list[str] = []
    for expression, alias, uses in select:
        if "{when}" not in expression:
            columns.append(f"{expression} AS {alias}")
            continue
        for prefix, _ in PERIODS:
            columns.append(expression.replace("{when}", f"CASE WHEN {_in_period(time_column)} THEN")
                           .replace("{end}", "END") + f" AS {prefix}{alias}")
            parameters += [f"{prefix}since", f"{prefix}until"] * uses
    # Rows of the three periods only, each period pruned to its own partitions: a 1-hour range and its day
    # before read two hours and the hour before, not the day between them.
    period = f"({PARTITION_BOUNDS}  AND {_in_period(time_column)})"
    sql = ("SELECT " + ",\n       ".join(columns) + f"\nFROM {table}\n"
           "WHERE " + "\n   OR ".join([period] * len(PERIODS)) + f"\n{tail}")
    return sql, (*parameters, *(f"{prefix}{name}" for prefix, _ in PERIODS for name in TIME_RANGE))


def _side_by_side(parts: list[tuple[str, tuple[str, ...]]]) -> tuple[str, tuple[str, ...]]:
    """Return one-row queries joined into one row (each table scanned once), and their parameters in order."""
    names = [f"t{i}" for i in range(len(parts))]
    sql = "SELECT *\nFROM " + "\nCROSS JOIN ".join(f"(\n{s}) AS {n}" for (s, _), n in zip(parts, names, strict=True))
    return sql, tuple(p for _, parameters in parts for p in parameters)


QUERIES: dict[str, NamedQuery] = {
    q.name: q
    for q in (
        NamedQuery(
            "signal_by_operator",
            "Average signal level per operator",
            ("signal_strength_by_operator",),
            _windowed(
                "SELECT operator,\n"
                "       SUM(signal_sum) / NULLIF(SUM(signal_count), 0) AS avg_signal,\n"
                "       CAST(SUM(signal_count) AS BIGINT) AS samples,\n"
                "       MIN(signal_min) AS min_signal,\n"
                "       MAX(signal_max) AS max_signal",
                "signal_strength_by_operator",
                "GROUP BY operator\nORDER BY samples DESC, operator",
            ),
        ),
        NamedQuery(
            "signal_per_minute",
            "Average signal level per operator and minute",
            ("signal_strength_by_operator",),
            _windowed(
                "SELECT window_start AS minute, operator,\n"
                "       SUM(signal_sum) / NULLIF(SUM(signal_count), 0) AS avg_signal,\n"
                "       CAST(SUM(signal_count) AS BIGINT) AS samples",
                "signal_strength_by_operator",
                "GROUP BY window_start, operator\nORDER BY minute, operator",
            ),
        ),
        NamedQuery(
            "gps_by_provider",
            "Average GPS precision (m) and satellites per location provider",
            ("gps_precision_by_provider",),
            _windowed(
                "SELECT provider,\n"
                "       SUM(precision_sum) / NULLIF(SUM(precision_count), 0) AS avg_precision,\n"
                "       SUM(satellites_sum) / NULLIF(SUM(satellites_count), 0) AS avg_satellites,\n"
                "       CAST(SUM(precision_count) AS BIGINT) AS samples",
                "gps_precision_by_provider",
                "GROUP BY provider\nORDER BY samples DESC, provider",
            ),
        ),
        NamedQuery(
            "status_by_postal_code",
            "Records per postal code and network status",
            ("status_count",),
            _windowed(
                "SELECT postal_code, status, description,\n"
                "       CAST(SUM(record_count) AS BIGINT) AS records",
                "status_count",
                "GROUP BY postal_code, status, description\nORDER BY records DESC, postal_code, status",
            ),
        ),
        NamedQuery(
            "quarantine_counts",
            "Quarantined records per reason",
            ("quarantine",),
            _windowed(
                "SELECT reason, CAST(COUNT(*) AS BIGINT) AS records, MAX(arrival_time) AS last_seen",
                "quarantine",
                "GROUP BY reason\nORDER BY records DESC, reason",
                time_column="arrival_time",
            ),
        ),
        NamedQuery(
            "coverage_cells",
            "Signal per grid cell and operator (cell = south-west corner)",
            ("coverage_grid",),
            _windowed(
                "SELECT lat_cell, lon_cell, operator,\n"
                "       SUM(signal_sum) AS signal_sum,\n"
                "       CAST(SUM(signal_count) AS BIGINT) AS signal_count,\n"
                "       CAST(SUM(record_count) AS BIGINT) AS records",
                "coverage_grid",
                "GROUP BY lat_cell, lon_cell, operator\nORDER BY records DESC, lat_cell, lon_cell, operator",
            ),
            window_seconds=COVERAGE_GRID.window_seconds,
        ),
        NamedQuery(
            "kpis",
            "Headline numbers: records, average signal, operators seen, quarantined records",
            ("signal_strength_by_operator", "quarantine"),
            # One row from each table (no GROUP BY), side by side. The records are counted from the signal
            # table (every usable record, per operator and minute), not from status_count, which has fifty
            # times its rows: a day's records took 48 of kpis_compared's 72 ms over 24 h from status_count.
            # 'unknown' is no operator: no operator reported, or a service state in its place (core.records).
            "SELECT s.records, s.avg_signal, s.operators, q.quarantined\nFROM (\n"
            + _windowed("SELECT CAST(CASE WHEN COUNT(*) = COUNT(record_count)"
                        " THEN COALESCE(SUM(record_count), 0) END AS BIGINT) AS records,\n"
                        "       SUM(signal_sum) / NULLIF(SUM(signal_count), 0) AS avg_signal,\n"
                        "       COUNT(DISTINCT NULLIF(operator, 'unknown')) AS operators",
                        "signal_strength_by_operator", "")
            + ") AS s\nCROSS JOIN (\n"
            + _windowed("SELECT COUNT(*) AS quarantined", "quarantine", "", time_column="arrival_time")
            + ") AS q",
            TIME_RANGE * 2,
        ),
        NamedQuery(
            "signal_by_operator_compared",
            "Average signal per operator, with the previous period and the same period a day earlier",
            ("signal_strength_by_operator",),
            *_compared([("operator", "operator", 0),
                        (AVG_SIGNAL, "avg_signal", 2),
                        ("CAST(SUM({when} signal_count {end}) AS BIGINT)", "samples", 1),
                        ("MIN({when} signal_min {end})", "min_signal", 1),
                        ("MAX({when} signal_max {end})", "max_signal", 1)],
                       "signal_strength_by_operator", "GROUP BY operator\nORDER BY samples DESC NULLS LAST, operator"),
            compared=True,
        ),
        NamedQuery(
            "kpis_compared",
            "Headline numbers, with the previous period and the same period a day earlier",
            ("signal_strength_by_operator", "quarantine"),
            *_side_by_side([
                _compared([(f"CAST(CASE WHEN {RECORDS_KNOWN} THEN SUM({{when}} record_count {{end}}) END AS BIGINT)",
                            "records", 3),
                           (AVG_SIGNAL, "avg_signal", 2),
                           ("COUNT(DISTINCT {when} NULLIF(operator, 'unknown') {end})", "operators", 1)],
                          "signal_strength_by_operator", ""),
                _compared([("COUNT({when} 1 {end})", "quarantined", 1)], "quarantine", "", time_column="arrival_time"),
            ]),
            compared=True,
        ),
    )
}


def get(name: str) -> NamedQuery:
    """Return the named query or raise NotFoundError listing the known names."""
    try:
        return QUERIES[name]
    except KeyError:
        raise NotFoundError(f"no query named {name!r}", next_step=f"queries: {', '.join(QUERIES)}") from None


def parse_time(value: Any, name: str) -> datetime:
    """Return a UTC datetime from a datetime or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(f"{name} {value!r} is not a time like 2026-11-28T10:00 or 2026-11-28 10:00:00") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _to_millis(moment: datetime) -> datetime:
    # The SQL compares at millisecond precision: the partition bounds follow the values it is given.
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def _sql_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass(frozen=True)
class Bounds:
    """A bound query's time range (snapped to its windows) and the hours of each period it reads
    (dt_from, hr_from, dt_to, hr_to): one period, or a comparison's three."""

    since: datetime
    until: datetime
    hours: tuple[tuple[str, str, str, str], ...]

    def partition_filter(self) -> list[list[tuple[str, str, str]]]:
        """Return the partitions of the periods' hours as a disjunction of conjunctions on dt and hr (the
        tuple filters delta-rs prunes files with): a 1-hour comparison reads 3 hours, not the day between."""
        ors: list[list[tuple[str, str, str]]] = []
        for dt_from, hr_from, dt_to, hr_to in self.hours:
            if dt_from == dt_to:
                ors.append([("dt", "=", dt_from), ("hr", ">=", hr_from), ("hr", "<=", hr_to)])
            else:
                ors += [[("dt", "=", dt_from), ("hr", ">=", hr_from)], [("dt", ">", dt_from), ("dt", "<", dt_to)],
                        [("dt", "=", dt_to), ("hr", "<=", hr_to)]]
        return ors


def _hours(bound: Mapping[str, str], prefix: str = "") -> tuple[str, str, str, str]:
    return (bound[f"{prefix}dt_from"], bound[f"{prefix}hr_from"], bound[f"{prefix}dt_to"], bound[f"{prefix}hr_to"])


def snap(since: datetime, until: datetime, window_seconds: int) -> tuple[datetime, datetime]:
    """Return [since, until) widened to whole windows of `window_seconds` (aligned to the epoch)."""
    since, until = parse_time(since, "since"), parse_time(until, "until")
    if window_seconds <= WINDOW_SECONDS:
        return since, until
    window = timedelta(seconds=window_seconds)
    start = EARLIEST + (since - EARLIEST) // window * window if since > EARLIEST else since
    end = EARLIEST + -((EARLIEST - until) // window) * window if until < LATEST - window else until
    return start, end


def bind(name: str, values: Mapping[str, Any] | None = None) -> tuple[NamedQuery, tuple[Any, ...]]:
    """Return the query and its positional parameters for `since` / `until` (both optional)."""
    query, parameters, _ = bind_with_bounds(name, values)
    return query, parameters


def bind_with_bounds(name: str, values: Mapping[str, Any] | None = None
                     ) -> tuple[NamedQuery, tuple[Any, ...], Bounds]:
    """Return the query, its positional parameters and its bounds (for partition pruning)."""
    query = get(name)
    values = dict(values or {})
    unknown = sorted(set(values) - {"since", "until"})
    if unknown:
        raise InputError(f"query {name} has no parameter {unknown[0]!r}")
    since = parse_time(values["since"], "since") if values.get("since") is not None else EARLIEST
    until = parse_time(values["until"], "until") if values.get("until") is not None else LATEST
    if until <= since:
        raise InputError(f"until ({_sql_time(until)}) must be after since ({_sql_time(since)})")
    since, until = snap(since, until, query.window_seconds)
    bound = _range_bounds(since, until)
    bounds = Bounds(since, until, (_hours(bound),))
    if query.compared:
        if values.get("since") is None or values.get("until") is None:
            raise InputError(f"query {name} compares a range with the ones before it: give since and until")
        length = until - since
        periods = {"previous_": (since - length, since), "day_before_": (since - DAY, until - DAY)}
        for prefix, (start, end) in periods.items():
            bound |= {f"{prefix}{key}": value for key, value in _range_bounds(start, end).items()}
        earliest = min(start for start, _ in periods.values())
        bounds = Bounds(earliest, until, tuple(_hours(bound, prefix) for prefix, _ in PERIODS))
    return query, tuple(bound[p] for p in query.parameters), bounds


def _range_bounds(since: datetime, until: datetime) -> dict[str, str]:
    """Return the partition and time bounds of [since, until).

    Partition bounds let DuckDB and Athena skip files; the time bounds decide which rows count. The last
    partition is the one of the last instant before `until` (excluded): an `until` on the hour does not
    read the next hour.
    """
    first, end = _to_millis(since), _to_millis(until)
    last = end - timedelta(microseconds=1) if end > first else first  # an empty range reads one partition
    return {
        "dt_from": first.strftime("%Y-%m-%d"),
        "hr_from": first.strftime("%H"),
        "dt_to": last.strftime("%Y-%m-%d"),
        "hr_to": last.strftime("%H"),
        "since": _sql_time(since),
        "until": _sql_time(until),
    }
