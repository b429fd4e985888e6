"""Writing lake rows directly as Delta commits, for tests of the readers (crawlers, SQL, console)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake

from core.lake_layout import PARTITION_KEYS, SIGNAL_STRENGTH_BY_OPERATOR, TableSpec, table_properties


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def delta_rows(spec: TableSpec, batch_id: int, rows: list[dict[str, Any]], without: tuple[str, ...] = ()
               ) -> pa.Table:
    """Return rows in the table's Delta schema less the `without` columns (a table as an earlier release wrote
    it), in the dt/hr partition of the first row's window_start (or arrival_time; naive means UTC)."""
    first = _utc(rows[0].get("window_start") or rows[0]["arrival_time"])
    partition = {"dt": first.strftime("%Y-%m-%d"), "hr": first.strftime("%H")}
    return pa.Table.from_pylist(
        [{**{k: _utc(v) if isinstance(v, datetime) else v for k, v in r.items()}, "batch_id": batch_id, **partition}
         for r in rows],
        schema=pa.schema([f for f in spec.delta_schema if f.name not in without]),
    )


def write_rows(lake_root: Path, spec: TableSpec, batch_id: int, rows: list[dict[str, Any]],
               without: tuple[str, ...] = ()) -> Path:
    """Append rows as one Delta commit (as one batch of the job would, without its app transaction), in the
    table's schema less the `without` columns; return the table's folder."""
    table = delta_rows(spec, batch_id, rows, without)
    folder = lake_root / spec.prefix
    write_deltalake(str(folder), table, mode="append", partition_by=list(PARTITION_KEYS),
                    configuration=table_properties())
    return folder


def signal_rows(start: datetime, operator: str, signal_sum: float, signal_count: int) -> list[dict[str, Any]]:
    """Return one partial aggregate row of signal_strength_by_operator."""
    return [{
        "window_start": start, "window_end": start + timedelta(minutes=1), "operator": operator,
        "network": operator, "signal_sum": signal_sum, "signal_count": signal_count,
        "signal_min": 1.0, "signal_max": 30.0, "record_count": signal_count,
    }]


SIGNAL = SIGNAL_STRENGTH_BY_OPERATOR
