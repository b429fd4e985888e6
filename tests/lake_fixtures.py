"""Writing lake files directly with pyarrow, for tests of the readers (crawlers, SQL, console)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR, TableSpec, batch_file_name, partition_path


def write_rows(lake_root: Path, spec: TableSpec, batch_id: int, rows: list[dict[str, Any]]) -> Path:
    """Write rows as one batch file in the dt/hr partition of their window_start (or arrival_time)."""
    first = rows[0].get("window_start") or rows[0]["arrival_time"]
    folder = lake_root / partition_path(spec, first.strftime("%Y-%m-%d"), first.strftime("%H"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / batch_file_name(batch_id)
    table = pa.Table.from_pylist([{**r, "batch_id": batch_id} for r in rows], schema=spec.schema)
    pq.write_table(table, path, compression="snappy")
    return path


def signal_rows(start: datetime, operator: str, signal_sum: float, signal_count: int) -> list[dict[str, Any]]:
    """Return one partial aggregate row of signal_strength_by_operator."""
    return [{
        "window_start": start, "window_end": start + timedelta(minutes=1), "operator": operator,
        "network": operator, "signal_sum": signal_sum, "signal_count": signal_count,
        "signal_min": 1.0, "signal_max": 30.0,
    }]


SIGNAL = SIGNAL_STRENGTH_BY_OPERATOR
