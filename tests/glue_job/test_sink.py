"""The exactly-once per-batch writer: one Delta commit per table and batch, tagged with (app_id, batch_id)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
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
from glue_job.lake_files import LakeFiles
from glue_job.sink import BatchOutput, LakeTables, collect_aggregates, commit_batch, write_batch
from tests.lake_fixtures import signal_rows, write_rows

ARRIVAL = datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC)
GRID = 0.01
APP = "signal-stream/test/app-1"


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


def write(records: DataFrame, batch_id: int, root: Path, app_id: str = APP) -> BatchOutput:
    return write_batch(records, batch_id, LakeTables(str(root)), app_id, grid_degrees=GRID,
                       input_rows=len(PAYLOADS))


def delta(root: Path, spec: TableSpec) -> DeltaTable:
    return DeltaTable(str(root / spec.prefix))


def table(root: Path, spec: TableSpec) -> pa.Table:
    """Return a whole table of the lake as any Delta reader sees it, dt/hr included."""
    return delta(root, spec).to_pyarrow_table()


def total(root: Path, spec: TableSpec, column: str) -> int:
    return pc.sum(table(root, spec)[column]).as_py()


def versions(root: Path) -> dict[str, int]:
    return {spec.name: delta(root, spec).version() for spec in TABLES}


def test_a_batch_is_one_commit_per_table_in_dt_hr_partitions(first_write: tuple[Path, BatchOutput]) -> None:
    root, output = first_write

    assert output == BatchOutput(batch_id=3, input_rows=len(PAYLOADS), aggregated_rows=USABLE_ROWS,
                                 quarantined_rows=1, commits=5)
    for spec in TABLES:
        log = delta(root, spec)
        assert log.version() == 1, spec.name  # created (0), then the batch's append (1)
        assert log.transaction_version(APP) == 3
        assert pa.schema(log.schema().to_arrow()).equals(spec.delta_schema), spec.name
        assert log.metadata().partition_columns == ["dt", "hr"]
    partitions = {spec.name: sorted((p["dt"], p["hr"]) for p in delta(root, spec).partitions()) for spec in TABLES}
    assert partitions[SIGNAL_STRENGTH_BY_OPERATOR.name] == [("2024-05-01", "09"), ("2024-05-01", "10")]
    assert partitions[QUARANTINE.name] == [("2024-05-01", "10")]


def test_written_values(first_write: tuple[Path, BatchOutput]) -> None:
    root, _ = first_write

    signal = table(root, SIGNAL_STRENGTH_BY_OPERATOR).sort_by([("window_start", "ascending"),
                                                               ("operator", "ascending")]).to_pylist()
    # Timestamps are UTC instants, whatever the driver's time zone.
    assert [(r["window_start"], r["window_end"], r["operator"], r["network"], r["signal_sum"], r["signal_count"],
             r["signal_min"], r["signal_max"], r["record_count"], r["dt"], r["hr"]) for r in signal] == [
        (datetime(2024, 5, 1, 9, 59, tzinfo=UTC), datetime(2024, 5, 1, 10, 0, tzinfo=UTC), "Movistar", "Movistar",
         -170.0, 2, -90.0, -80.0, 2, "2024-05-01", "09"),
        (datetime(2024, 5, 1, 10, 0, tzinfo=UTC), datetime(2024, 5, 1, 10, 1, tzinfo=UTC), "Movistar", "Movistar",
         -60.0, 1, -60.0, -60.0, 1, "2024-05-01", "10"),
        (datetime(2024, 5, 1, 10, 0, tzinfo=UTC), datetime(2024, 5, 1, 10, 1, tzinfo=UTC), "Orange", "Orange",
         -70.0, 1, -70.0, -70.0, 1, "2024-05-01", "10"),
    ]
    assert {r["batch_id"] for r in signal} == {3}
    quarantine = table(root, QUARANTINE).to_pylist()
    assert [(r["arrival_time"], r["stream_seq"], r["reason"], r["raw_payload"]) for r in quarantine] == [
        (datetime(2024, 5, 1, 10, 0, 30, tzinfo=UTC), "seq-4", R.REASON_MALFORMED_JSON, PAYLOADS[4]),
    ]
    grid = table(root, COVERAGE_GRID).to_pylist()
    assert sorted((r["lat_cell"], r["lon_cell"]) for r in grid) == [(40.41, -3.71), (40.41, -3.71), (41.38, 2.17)]
    # coverage windows are 1 hour: 09:59 and 10:00 fall in 09:00 and 10:00
    assert sorted({(r["window_start"].strftime("%H:%M"), r["window_end"].strftime("%H:%M")) for r in grid}) == [
        ("09:00", "10:00"), ("10:00", "11:00"),
    ]


def test_a_retried_batch_is_skipped_and_totals_stay_exact(records: DataFrame, tmp_path: Path) -> None:
    write(records, 5, tmp_path)
    before = versions(tmp_path)

    retried = write(records, 5, tmp_path)  # the same batch after a crash

    assert (retried.commits, retried.skipped_commits) == (0, 5)
    assert versions(tmp_path) == before
    assert total(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, "signal_count") == USABLE_ROWS
    assert total(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, "record_count") == USABLE_ROWS
    assert total(tmp_path, GPS_PRECISION_BY_PROVIDER, "precision_count") == USABLE_ROWS
    assert total(tmp_path, STATUS_COUNT, "record_count") == USABLE_ROWS
    assert total(tmp_path, COVERAGE_GRID, "record_count") == USABLE_ROWS
    assert table(tmp_path, QUARANTINE).num_rows == 1


def test_a_batch_cut_short_between_tables_commits_only_the_rest_on_retry(records: DataFrame, tmp_path: Path) -> None:
    tables = LakeTables(str(tmp_path))
    aggregates = collect_aggregates(records, GRID)
    quarantine = None
    # The crash: only the first two tables committed batch 7.
    first_two = aggregates.filter(pc.is_in(aggregates.column("table"),
                                           pa.array([s.name for s in AGGREGATION_TABLES[:2]])))
    assert commit_batch(tables, APP, 7, first_two, quarantine) == (2, 0)

    assert commit_batch(LakeTables(str(tmp_path)), APP, 7, aggregates, quarantine) == (2, 2)

    for spec in AGGREGATION_TABLES:
        assert delta(tmp_path, spec).transaction_version(APP) == 7
    assert total(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, "signal_count") == USABLE_ROWS
    assert total(tmp_path, COVERAGE_GRID, "record_count") == USABLE_ROWS


def test_another_batch_adds_a_commit_and_totals_add_up(records: DataFrame, tmp_path: Path) -> None:
    write(records, 5, tmp_path)
    write(records, 6, tmp_path)

    assert set(versions(tmp_path).values()) == {2}
    assert total(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, "signal_count") == 2 * USABLE_ROWS
    assert total(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, "signal_sum") == 2 * (-80 - 90 - 70 - 60)
    assert total(tmp_path, STATUS_COUNT, "record_count") == 2 * USABLE_ROWS
    assert total(tmp_path, COVERAGE_GRID, "signal_count") == 2 * USABLE_ROWS
    assert set(table(tmp_path, QUARANTINE)["batch_id"].to_pylist()) == {5, 6}


def test_batch_ids_are_per_app_a_new_app_starts_its_own_count(records: DataFrame, tmp_path: Path) -> None:
    write(records, 0, tmp_path, app_id="signal-stream/test/old")
    # After a deliberate checkpoint reset the new app numbers batches from 0 again: not skipped.
    output = write(records, 0, tmp_path, app_id="signal-stream/test/new")

    assert output.commits == 5
    assert total(tmp_path, STATUS_COUNT, "record_count") == 2 * USABLE_ROWS


def assert_no_temporary_files(root: Path) -> None:
    assert [path for path in root.rglob("*") if path.name.startswith(".") and path.name.endswith(".tmp")] == []


def test_state_files_are_written_whole(tmp_path: Path) -> None:
    lake = LakeFiles(str(tmp_path))
    lake.write_json("_job/status.json", {"ok": True})
    lake.write_json("_job/status.json", {"ok": False})

    assert_no_temporary_files(tmp_path)
    assert lake.read_json("_job/status.json") == {"ok": False}
    assert json.loads((tmp_path / "_job" / "status.json").read_text()) == {"ok": False}


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


def test_a_table_from_before_a_column_was_added_gains_it_and_its_old_rows_read_null(
        records: DataFrame, tmp_path: Path) -> None:
    # signal_strength_by_operator as an earlier release created it: no record_count.
    spec = SIGNAL_STRENGTH_BY_OPERATOR
    write_rows(tmp_path, spec, 1, signal_rows(datetime(2024, 5, 1, 8, 0, tzinfo=UTC), "Yoigo", 12.0, 2),
               without=("record_count",))

    tables = LakeTables(str(tmp_path))
    tables.create_all()
    assert "record_count" in delta(tmp_path, spec).schema().to_arrow().names
    write(records, 5, tmp_path)

    rows = table(tmp_path, spec).to_pylist()
    assert sorted((r["operator"], r["record_count"]) for r in rows if r["hr"] == "08") == [("Yoigo", None)]
    assert total(tmp_path, spec, "record_count") == USABLE_ROWS  # the new batch's rows only
