"""The idempotent per-batch writer: deterministic files per table, partition and batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession

from core import records as R
from core.lake_layout import (
    AGGREGATION_TABLES,
    COVERAGE_GRID,
    GPS_PRECISION_BY_PROVIDER,
    QUARANTINE,
    SIGNAL_STRENGTH_BY_OPERATOR,
    STATUS_COUNT,
    TABLES,
    TableSpec,
)
from glue_job import transforms
from glue_job.sink import BatchOutput, LakeFiles, write_batch

ARRIVAL = datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC)
GRID = 0.01
PARTITIONING = ds.partitioning(pa.schema([("dt", pa.string()), ("hr", pa.string())]), flavor="hive")


def payload(event_time: str, operator: str, signal: str, lat: str = "40.41678", long: str = "-3.70379") -> str:
    return json.dumps({
        "record_id": f"{operator}-{event_time}", "event_time": event_time, "operator": operator, "network": operator,
        "signal": signal, "lat": lat, "long": long, "provider": "gps", "precission": "4.0", "satellites": "8",
        "status": "0", "description": "STATE_IN_SERVICE", "postal_code": "28013.0",
    })


PAYLOADS = (
    payload("2024-05-01T09:59:10Z", "movistar", "-80"),
    payload("2024-05-01T09:59:40Z", "MOVISTAR", "-90"),
    payload("2024-05-01T10:00:05Z", "orange", "-70", lat="41.38", long="2.17"),
    payload("2024-05-01T10:00:20Z", "movistar", "-60"),
    '{"record_id": "broken", "event_time": ',  # malformed: quarantined by arrival time
)
USABLE_ROWS = len(PAYLOADS) - 1


@pytest.fixture(scope="module")
def records(spark: SparkSession) -> DataFrame:
    raw = spark.createDataFrame([(p, f"seq-{i}", ARRIVAL) for i, p in enumerate(PAYLOADS)],
                                "payload string, stream_seq string, arrival_time timestamp")
    return transforms.parse_records(raw).cache()


@pytest.fixture(scope="module")
def first_write(records: DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BatchOutput]:
    """Return a lake holding batch 3 only, and what write_batch reported."""
    root = tmp_path_factory.mktemp("lake")
    return root, write(records, 3, root)


def write(records: DataFrame, batch_id: int, root: Path) -> BatchOutput:
    return write_batch(records, batch_id, LakeFiles(str(root)), grid_degrees=GRID, input_rows=len(PAYLOADS))


def lake_files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def table(root: Path, spec: TableSpec) -> pa.Table:
    """Return a whole table of the lake, with its dt/hr partition columns as strings."""
    return ds.dataset(root / spec.prefix, format="parquet", partitioning=PARTITIONING).to_table()


def total(root: Path, spec: TableSpec, column: str) -> int:
    return pc.sum(table(root, spec)[column]).as_py()


def expected_files(batch_id: int) -> set[str]:
    name = f"batch-{batch_id}.snappy.parquet"
    files = {
        f"aggregations/{spec.name}/dt=2024-05-01/hr={hr}/{name}" for spec in AGGREGATION_TABLES for hr in ("09", "10")
    }
    return files | {f"quarantine/dt=2024-05-01/hr=10/{name}"}


def assert_no_temporary_files(root: Path) -> None:
    assert [path for path in root.rglob("*") if path.name.startswith(".")] == []


def test_files_land_in_dt_hr_partitions_with_the_lake_schemas(first_write: tuple[Path, BatchOutput]) -> None:
    tmp_path, output = first_write

    assert output == BatchOutput(batch_id=3, input_rows=len(PAYLOADS), aggregated_rows=USABLE_ROWS,
                                 quarantined_rows=1, files_written=9)
    assert lake_files(tmp_path) == expected_files(3)
    specs = {spec.prefix: spec for spec in TABLES}
    for relative in lake_files(tmp_path):
        spec = specs[relative.rsplit("/dt=", 1)[0]]
        schema = pq.read_schema(tmp_path / relative).remove_metadata()
        assert schema.equals(spec.schema), (relative, schema, spec.schema)


def test_written_values(first_write: tuple[Path, BatchOutput]) -> None:
    tmp_path, _ = first_write

    signal = table(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR).sort_by([("window_start", "ascending"),
                                                                   ("operator", "ascending")]).to_pylist()
    # Timestamps are UTC wall-clock values in the files, whatever the driver's time zone.
    assert [(r["window_start"], r["window_end"], r["operator"], r["network"], r["signal_sum"], r["signal_count"],
             r["signal_min"], r["signal_max"], r["dt"], r["hr"]) for r in signal] == [
        (datetime(2024, 5, 1, 9, 59), datetime(2024, 5, 1, 10, 0), "Movistar", "Movistar", -170.0, 2, -90.0, -80.0,
         "2024-05-01", "09"),
        (datetime(2024, 5, 1, 10, 0), datetime(2024, 5, 1, 10, 1), "Movistar", "Movistar", -60.0, 1, -60.0, -60.0,
         "2024-05-01", "10"),
        (datetime(2024, 5, 1, 10, 0), datetime(2024, 5, 1, 10, 1), "Orange", "Orange", -70.0, 1, -70.0, -70.0,
         "2024-05-01", "10"),
    ]
    assert {r["batch_id"] for r in signal} == {3}
    quarantine = table(tmp_path, QUARANTINE).to_pylist()
    assert [(r["arrival_time"], r["stream_seq"], r["reason"], r["raw_payload"]) for r in quarantine] == [
        (datetime(2024, 5, 1, 10, 0, 30), "seq-4", R.REASON_MALFORMED_JSON, PAYLOADS[4]),
    ]
    grid = table(tmp_path, COVERAGE_GRID)
    assert sorted(zip(grid["lat_cell"].to_pylist(), grid["lon_cell"].to_pylist(), strict=True)) == [
        (40.41, -3.71), (40.41, -3.71), (41.38, 2.17),
    ]


def test_same_batch_twice_leaves_the_same_files_and_totals(records: DataFrame, tmp_path: Path) -> None:
    write(records, 5, tmp_path)
    files = lake_files(tmp_path)
    contents = {relative: pq.read_table(tmp_path / relative) for relative in files}

    write(records, 5, tmp_path)  # a retried batch

    assert lake_files(tmp_path) == files == expected_files(5)
    for relative, before in contents.items():
        assert pq.read_table(tmp_path / relative).equals(before), relative
    assert total(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, "signal_count") == USABLE_ROWS
    assert total(tmp_path, GPS_PRECISION_BY_PROVIDER, "precision_count") == USABLE_ROWS
    assert total(tmp_path, STATUS_COUNT, "record_count") == USABLE_ROWS
    assert total(tmp_path, COVERAGE_GRID, "record_count") == USABLE_ROWS
    assert table(tmp_path, QUARANTINE).num_rows == 1
    assert_no_temporary_files(tmp_path)


def test_another_batch_adds_files_and_totals_add_up(records: DataFrame, tmp_path: Path) -> None:
    write(records, 5, tmp_path)
    write(records, 6, tmp_path)

    assert lake_files(tmp_path) == expected_files(5) | expected_files(6)
    assert total(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, "signal_count") == 2 * USABLE_ROWS
    assert total(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, "signal_sum") == 2 * (-80 - 90 - 70 - 60)
    assert total(tmp_path, STATUS_COUNT, "record_count") == 2 * USABLE_ROWS
    assert total(tmp_path, COVERAGE_GRID, "signal_count") == 2 * USABLE_ROWS
    assert table(tmp_path, QUARANTINE).num_rows == 2
    assert set(table(tmp_path, QUARANTINE)["batch_id"].to_pylist()) == {5, 6}
    assert_no_temporary_files(tmp_path)


def test_no_temporary_files_are_left(first_write: tuple[Path, BatchOutput]) -> None:
    tmp_path, _ = first_write
    lake = LakeFiles(str(tmp_path))
    lake.write_json("_job/status.json", {"ok": True})
    lake.write_json("_job/status.json", {"ok": False})

    assert_no_temporary_files(tmp_path)
    assert lake.read_json("_job/status.json") == {"ok": False}


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path: Path) -> None:
    lake = LakeFiles(str(tmp_path))
    lake.write_json("status/doc.json", {"version": 1})

    def half_then_fail(path: str) -> None:
        Path(path).write_text('{"version": 2, "half', encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        lake.write_atomically(lake.path("status/doc.json"), half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        lake.write_atomically(lake.path("status/new.json"), half_then_fail)

    assert sorted(p.name for p in (tmp_path / "status").iterdir()) == ["doc.json"]
    assert lake.read_json("status/doc.json") == {"version": 1}
