"""Named, parameterised SQL over the lake tables, valid on DuckDB and on Athena (Trino).

Values are always bound to `?` placeholders, never formatted into the text. Averages are computed
here from the partial sums of every batch (sum of sums / sum of counts), so they are exact.

A query may also have a local variant (`LOCAL_QUERIES`, `bind(..., local=True)`) that reads what
only the local lake has, the hourly rollups its compaction writes (core.lake_layout.Rollup), and
returns the same result as the portable query; Athena runs the portable one.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import InputError, NotFoundError
from core.lake_layout import COVERAGE_GRID_ROLLUP

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
        ),
        NamedQuery(
            "kpis",
            "Headline numbers: records, average signal, operators seen, quarantined records",
            ("status_count", "signal_strength_by_operator", "quarantine"),
            # One row from each aggregate (no GROUP BY), side by side: signal's table is scanned once for
            # both of its numbers.
            "SELECT r.records, s.avg_signal, s.operators, q.quarantined\nFROM (\n"
            + _windowed("SELECT CAST(COALESCE(SUM(record_count), 0) AS BIGINT) AS records", "status_count", "")
            + ") AS r\nCROSS JOIN (\n"
            + _windowed("SELECT SUM(signal_sum) / NULLIF(SUM(signal_count), 0) AS avg_signal,\n"
                        "       COUNT(DISTINCT operator) AS operators", "signal_strength_by_operator", "")
            + ") AS s\nCROSS JOIN (\n"
            + _windowed("SELECT COUNT(*) AS quarantined", "quarantine", "", time_column="arrival_time")
            + ") AS q",
            TIME_RANGE * 3,
        ),
    )
}


_CELL_ROWS = "SELECT lat_cell, lon_cell, operator, signal_sum, signal_count, record_count\n"
_TIME_BOUNDS = "window_start >= CAST(? AS TIMESTAMP) AND window_start < CAST(? AS TIMESTAMP)\n"
_SPAN = "dt = ? AND hr = ? AND span_start = CAST(? AS TIMESTAMP) AND span_minutes = ?\n"
_SPANS_FROM = "  AND span_start >= CAST(? AS TIMESTAMP) AND span_start < CAST(? AS TIMESTAMP)\n"
_ROLLUP = COVERAGE_GRID_ROLLUP

# coverage_cells on the local lake. Every live minute row of coverage_grid is in exactly one of the
# rollup's `covered` view (compacted files that have a current rollup) or `uncovered` view (every
# other live file). The rollup view holds the covered rows summed over spans of their hour, the
# days view over several hours of a day (core.lake_layout.Rollup, day_piece_names). `bind` picks
# inside [since, until) adjacent spans whose union is [covered_from, covered_to): the first hour's
# tail, whole hours (as day pieces where current ones exist, else hour by hour), the last hour's
# head (`RollupSpans`). A covered row in range is either inside that union, and counted through
# the one span that holds it, or outside it, and counted as itself; uncovered rows are counted as
# themselves. So each minute row in range is summed exactly once, as in the portable query. Spans
# are picked by partition, start and length (no span has 0 minutes: 0 picks none); the covered rows
# outside the union can only be in the range's first or last partition, which their bounds keep
# (rows sit in the partition of their window's hour, as PARTITION_BOUNDS relies on).
_COVERAGE_CELLS_LOCAL = (
    "SELECT lat_cell, lon_cell, operator,\n"
    "       SUM(signal_sum) AS signal_sum,\n"
    "       CAST(SUM(signal_count) AS BIGINT) AS signal_count,\n"
    "       CAST(SUM(record_count) AS BIGINT) AS records\n"
    "FROM (\n"
    # whole hours that no day piece sums, hour by hour (at most two ranges)
    f"{_CELL_ROWS}FROM {_ROLLUP.name}\nWHERE {PARTITION_BOUNDS}  AND span_minutes = 60\n{_SPANS_FROM}"
    f"UNION ALL\n{_CELL_ROWS}FROM {_ROLLUP.name}\nWHERE {PARTITION_BOUNDS}  AND span_minutes = 60\n{_SPANS_FROM}"
    # day pieces: the first day's tail, whole days, the last day's head
    f"UNION ALL\n{_CELL_ROWS}FROM {_ROLLUP.days}\nWHERE {_SPAN}"
    f"UNION ALL\n{_CELL_ROWS}FROM {_ROLLUP.days}\nWHERE {PARTITION_BOUNDS}  AND hr = '00' AND span_minutes = 1440\n"
    f"{_SPANS_FROM}"
    f"UNION ALL\n{_CELL_ROWS}FROM {_ROLLUP.days}\nWHERE {_SPAN}"
    # the first hour's tail and the last hour's head
    f"UNION ALL\n{_CELL_ROWS}FROM {_ROLLUP.name}\nWHERE {_SPAN}"
    f"UNION ALL\n{_CELL_ROWS}FROM {_ROLLUP.name}\nWHERE {_SPAN}"
    # covered minute rows outside the spans, and every uncovered minute row
    f"UNION ALL\n{_CELL_ROWS}FROM {_ROLLUP.covered}\n"
    "WHERE ((dt = ? AND hr = ?) OR (dt = ? AND hr = ?))\n"
    f"  AND {_TIME_BOUNDS}"
    "  AND (window_start < CAST(? AS TIMESTAMP) OR window_start >= CAST(? AS TIMESTAMP))\n"
    f"UNION ALL\n{_CELL_ROWS}FROM {_ROLLUP.uncovered}\nWHERE {PARTITION_BOUNDS}  AND {_TIME_BOUNDS}"
    ") AS cells\n"
    "GROUP BY lat_cell, lon_cell, operator\nORDER BY records DESC, lat_cell, lon_cell, operator"
)
_PARTITIONS = TIME_RANGE[:6]
LOCAL_QUERIES: dict[str, NamedQuery] = {
    q.name: q
    for q in (
        NamedQuery(
            "coverage_cells",
            QUERIES["coverage_cells"].description,
            QUERIES["coverage_cells"].tables,
            _COVERAGE_CELLS_LOCAL,
            (*_PARTITIONS, "hours_from", "hours_to",
             *_PARTITIONS, "more_hours_from", "more_hours_to",
             "day_tail_dt", "day_tail_hr", "day_tail_start", "day_tail_minutes",
             *_PARTITIONS, "days_from", "days_to",
             "day_head_dt", "day_head_hr", "day_head_start", "day_head_minutes",
             "dt_from", "hr_from", "tail_start", "tail_minutes",
             "dt_to", "hr_to", "head_start", "head_minutes",
             "dt_from", "hr_from", "dt_to", "hr_to", "since", "until", "covered_from", "covered_to",
             *TIME_RANGE),
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


def _floor(moment: datetime, minutes: int) -> datetime:
    """Return the moment rounded down to a multiple of `minutes` (a divisor of 60, or 60) within its hour."""
    return moment.replace(minute=moment.minute // minutes * minutes, second=0, microsecond=0)


Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class DayPieces:
    """The current day pieces of the local lake (core.lake_layout.day_piece_names): heads by their
    last hour, tails by their first hour."""

    heads: frozenset[datetime] = frozenset()
    tails: frozenset[datetime] = frozenset()


@dataclass(frozen=True)
class RollupSpans:
    """Adjacent rollup spans inside a time range, in order; their union is [covered_from, covered_to).

    A span that is not used has 0 minutes (no span has 0), a range that is not used is empty.
    """

    tail_start: datetime  # the first hour's tail
    tail_minutes: int
    hours: tuple[Span, Span]  # whole hours, hour by hour
    day_tail_start: datetime  # the first day's tail (its partition: the hour it starts)
    day_tail_minutes: int
    days: Span  # whole days
    day_head_start: datetime  # the last day's head (its partition: its last hour)
    day_head_minutes: int
    head_start: datetime  # the last hour's head
    head_minutes: int
    covered_from: datetime
    covered_to: datetime


def _minutes(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds()) // 60


def _whole_hours(start: datetime, end: datetime,
                 pieces: DayPieces) -> tuple[list[Span], list[Span], Span | None, Span | None, Span | None]:
    """Split whole hours [start, end) into hour-by-hour ranges (as split, and merged where adjacent),
    a day tail, whole days and a day head, using only current day pieces."""
    day = timedelta(days=1)
    first_day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    last_day = end.replace(hour=0, minute=0, second=0, microsecond=0)
    hourly: list[Span] = []
    tail = days = head = None
    if first_day < last_day:
        if start in pieces.tails:
            tail = (start, first_day + day)
        else:
            hourly.append((start, first_day + day))
        # Whole days only when every one has a current piece: never more days than pieces, so an
        # unbounded range (the defaults span millennia) costs nothing to check.
        days_between = (last_day - first_day).days - 1
        if 0 < days_between <= len(pieces.tails) and all(
            first_day + day * k in pieces.tails for k in range(1, days_between + 1)
        ):
            days = (first_day + day, last_day)
        elif days_between > 0:
            hourly.append((first_day + day, last_day))
        if end > last_day:
            if end - timedelta(hours=1) in pieces.heads:
                head = (last_day, end)
            else:
                hourly.append((last_day, end))
    elif start == first_day and end - timedelta(hours=1) in pieces.heads:
        head = (start, end)
    else:
        hourly.append((start, end))
    merged: list[Span] = []
    for a, b in hourly:
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return hourly, merged, tail, days, head


def rollup_spans(first: datetime, end: datetime, block_minutes: int, pieces: DayPieces = DayPieces()) -> RollupSpans:
    """Return the largest rollup spans inside [first, end) (see RollupSpans and the local coverage_cells).

    What is left of [first, end) outside them is less than a block at each end, in the hours of
    `first` and of the last instant before `end`. Bounds are computed only where they stay inside
    [first, end], so the extreme defaults cannot overflow.
    """
    first_hour, end_hour = _floor(first, 60), _floor(end, 60)
    hour = timedelta(hours=1)
    whole_from = whole_to = end_hour
    if first_hour < end_hour:
        whole_from = first if first == first_hour else first_hour + hour
    used: list[Span] = []
    tail_start, tail_minutes = first, 0
    if first > first_hour and first_hour + hour <= end:
        start = _floor(first, block_minutes)
        start = start if start == first else start + timedelta(minutes=block_minutes)
        if start < first_hour + hour:
            tail_start, tail_minutes = start, _minutes(start, first_hour + hour)
            used.append((start, first_hour + hour))
    none = (whole_from, whole_from)
    hours, day_tail, days, day_head = [none, none], None, None, None
    if whole_from < whole_to:
        ranges, merged, day_tail, days, day_head = _whole_hours(whole_from, whole_to, pieces)
        assert len(merged) <= 2, f"whole hours of [{first}, {end}) split in more than two ranges"
        hours[:len(merged)] = merged
        used += sorted([*ranges, *(p for p in (day_tail, days, day_head) if p is not None)])
    head_start, head_minutes = end_hour, 0
    if end > end_hour and end_hour >= first:
        stop = _floor(end, block_minutes)
        if stop > end_hour:
            head_minutes = _minutes(end_hour, stop)
            used.append((end_hour, stop))
    for (_, before), (after, _) in itertools.pairwise(used):
        assert before == after, f"rollup spans of [{first}, {end}) are not adjacent"
    covered_from, covered_to = (used[0][0], used[-1][1]) if used else (first, first)
    return RollupSpans(
        tail_start, tail_minutes, (hours[0], hours[1]),
        day_tail[0] if day_tail else whole_from, _minutes(*day_tail) if day_tail else 0,
        days or none,
        day_head[0] if day_head else whole_from, _minutes(*day_head) if day_head else 0,
        head_start, head_minutes, covered_from, covered_to,
    )


def _partition(moment: datetime) -> tuple[str, str]:
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


def _rollup_parameters(first: datetime, end: datetime, day_pieces: DayPieces) -> dict[str, Any]:
    """Return the rollup spans of [first, end) as the local coverage_cells' parameters."""
    spans = rollup_spans(first, end, COVERAGE_GRID_ROLLUP.block_minutes, day_pieces)
    day_tail_dt, day_tail_hr = _partition(spans.day_tail_start)
    day_head_dt, day_head_hr = _partition(spans.day_head_start + timedelta(minutes=spans.day_head_minutes)
                                          - timedelta(hours=1) if spans.day_head_minutes else spans.day_head_start)
    return {
        "hours_from": _sql_time(spans.hours[0][0]),
        "hours_to": _sql_time(spans.hours[0][1]),
        "more_hours_from": _sql_time(spans.hours[1][0]),
        "more_hours_to": _sql_time(spans.hours[1][1]),
        "day_tail_dt": day_tail_dt,
        "day_tail_hr": day_tail_hr,
        "day_tail_start": _sql_time(spans.day_tail_start),
        "day_tail_minutes": spans.day_tail_minutes,
        "days_from": _sql_time(spans.days[0]),
        "days_to": _sql_time(spans.days[1]),
        "day_head_dt": day_head_dt,
        "day_head_hr": day_head_hr,
        "day_head_start": _sql_time(spans.day_head_start),
        "day_head_minutes": spans.day_head_minutes,
        "tail_start": _sql_time(spans.tail_start),
        "tail_minutes": spans.tail_minutes,
        "head_start": _sql_time(spans.head_start),
        "head_minutes": spans.head_minutes,
        "covered_from": _sql_time(spans.covered_from),
        "covered_to": _sql_time(spans.covered_to),
    }


def bind(name: str, values: Mapping[str, Any] | None = None, *, local: bool = False,
         day_pieces: DayPieces = DayPieces()) -> tuple[NamedQuery, tuple[Any, ...]]:
    """Return the query and its positional parameters for `since` / `until` (both optional).

    `local`: the local lake's variant of the query when it has one (same result, reads rollups);
    `day_pieces`: the current day pieces it may read (from the same listing as its views).
    """
    query = LOCAL_QUERIES.get(name, get(name)) if local else get(name)
    values = dict(values or {})
    unknown = sorted(set(values) - {"since", "until"})
    if unknown:
        raise InputError(f"query {name} has no parameter {unknown[0]!r}")
    since = parse_time(values["since"], "since") if values.get("since") is not None else EARLIEST
    until = parse_time(values["until"], "until") if values.get("until") is not None else LATEST
    if until <= since:
        raise InputError(f"until ({_sql_time(until)}) must be after since ({_sql_time(since)})")
    # Partition bounds let DuckDB and Athena skip files; the time bounds decide which rows count. The
    # last partition is the one of the last instant before `until` (excluded): an `until` on the hour
    # does not read the next hour.
    first, end = _to_millis(since), _to_millis(until)
    last = end - timedelta(microseconds=1) if end > first else first  # an empty range reads one partition
    bound: dict[str, Any] = {
        "dt_from": first.strftime("%Y-%m-%d"),
        "hr_from": first.strftime("%H"),
        "dt_to": last.strftime("%Y-%m-%d"),
        "hr_to": last.strftime("%H"),
        "since": _sql_time(since),
        "until": _sql_time(until),
    }
    if any(p not in bound for p in query.parameters):  # only the local coverage_cells reads rollups
        bound.update(_rollup_parameters(first, end, day_pieces))
    return query, tuple(bound[p] for p in query.parameters)
