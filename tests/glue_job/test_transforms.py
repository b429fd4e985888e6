"""The job's DataFrame transforms on small inline batches, compared as whole DataFrames (chispa)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from core import records as R
from glue_job import transforms
from tests import reference

RAW_SCHEMA = "payload string, stream_seq string, arrival_time timestamp"
WINDOW_SCHEMA = "window_start timestamp, window_end timestamp"
PARTITION_SCHEMA = "batch_id bigint, dt string, hr string"
BATCH_ID = 7
GRID = 0.01


def ts(text: str) -> datetime:
    """Return an aware UTC datetime (PySpark stores aware datetimes by their instant)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def payload(**fields: Any) -> str:
    return json.dumps(fields)


def raw_frame(spark: SparkSession, rows: list[tuple[str, str, datetime]]) -> DataFrame:
    return spark.createDataFrame(rows, RAW_SCHEMA)


def usable(spark: SparkSession, records: list[dict[str, Any]], arrival: str = "2024-05-01 12:00:00") -> DataFrame:
    """Return the usable parsed records of the given record dicts (all arriving at `arrival`)."""
    rows = [(payload(**record), f"seq-{i}", ts(arrival)) for i, record in enumerate(records)]
    parsed = transforms.parse_records(raw_frame(spark, rows))
    assert parsed.where(F.col("quarantine_reason").isNotNull()).count() == 0
    return transforms.usable_records(parsed)


def assert_equal(actual: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_parse_records_good_malformed_and_missing_event_time(spark: SparkSession) -> None:
    arrival = ts("2024-05-01 10:00:00.500")
    good = payload(record_id=" r-1 ", event_time="2024-05-01T09:59:30Z", operator=" movistar ", network="YOIGO ",
                   signal="-85", lat="40.41678", long="-3.70379")
    malformed = '{"record_id": "r-2", "event_time": "2024-05-01T09:59:30Z", "signal": '
    no_time = payload(record_id="r-3", hour="not a time", operator="orange", signal="-90")
    raw = raw_frame(spark, [(good, "s-1", arrival), (malformed, "s-2", arrival), (no_time, "s-3", arrival)])

    actual = transforms.parse_records(raw).select(
        "record_key", "event_time", "quarantine_reason", "payload", "stream_seq", "operator", "network", "signal",
        "lat", "long",
    )

    expected = spark.createDataFrame(
        [
            # Usable rows drop the raw payload; quarantined rows keep it and take the arrival time as event time.
            ("r-1", ts("2024-05-01 09:59:30"), None, None, "s-1", "Movistar", "Yoigo", -85.0, 40.41678, -3.70379),
            ("s-2", arrival, R.REASON_MALFORMED_JSON, malformed, "s-2", "unknown", "unknown", None, None, None),
            ("s-3", arrival, R.REASON_NO_EVENT_TIME, no_time, "s-3", "Orange", "unknown", -90.0, None, None),
        ],
        "record_key string, event_time timestamp, quarantine_reason string, payload string, stream_seq string, "
        "operator string, network string, signal double, lat double, long double",
    )
    assert_equal(actual, expected)


def test_parse_records_keeps_one_row_per_payload_and_the_raw_payload_of_quarantined_rows(spark: SparkSession) -> None:
    arrival = ts("2024-05-01 10:00:00")
    payloads = ["", "[1,2]", "not json", payload(hour="09:00:00"), payload(event_time="2030-01-01T00:00:00Z")]
    raw = raw_frame(spark, [(p, f"s-{i}", arrival) for i, p in enumerate(payloads)])

    actual = transforms.parse_records(raw).select("stream_seq", "payload", "arrival_time", "quarantine_reason")

    expected = spark.createDataFrame(
        [
            ("s-0", "", arrival, R.REASON_EMPTY),
            ("s-1", "[1,2]", arrival, R.REASON_NOT_AN_OBJECT),
            ("s-2", "not json", arrival, R.REASON_NOT_AN_OBJECT),
            ("s-3", None, arrival, None),  # usable: its payload is not carried on
            ("s-4", payloads[4], arrival, R.REASON_FUTURE_EVENT_TIME),
        ],
        "stream_seq string, payload string, arrival_time timestamp, quarantine_reason string",
    )
    assert_equal(actual, expected)


def table_of(name: str, records: DataFrame, batch_id: int = BATCH_ID, grid: float = GRID) -> DataFrame:
    """Return one table's rows of the job's aggregation, as the sink takes them."""
    return transforms.table_rows(transforms.aggregate_tables(records, grid), name, batch_id)


AGGREGATES = ("signal_strength_by_operator", "gps_precision_by_provider", "status_count", "coverage_grid")


@pytest.mark.parametrize("name", AGGREGATES)
def test_window_columns_of_every_aggregate(spark: SparkSession, name: str) -> None:
    located = {"lat": "40.4", "long": "-3.7", "operator": "movistar", "signal": "-80"}
    records = usable(spark, [
        {"event_time": "2024-05-01T09:59:59.999Z", **located},
        {"event_time": "2024-05-01T10:00:00Z", **located},
        {"event_time": "2024-05-01T10:00:59.999Z", **located},
        {"event_time": "2024-05-01T23:59:30Z", **located},  # window ends the next day: dt/hr from its start
    ], arrival="2024-05-02 00:00:00")

    actual = table_of(name, records).select("window_start", "window_end", "batch_id", "dt", "hr")

    # coverage_grid sums 1-hour windows, the others 1-minute ones.
    first, last = ("09:00", "23:00") if name == "coverage_grid" else ("09:59", "23:59")
    end = "11:00" if name == "coverage_grid" else "10:01"
    expected = spark.createDataFrame(
        [
            (ts(f"2024-05-01 {first}:00"), ts("2024-05-01 10:00:00"), BATCH_ID, "2024-05-01", "09"),
            (ts("2024-05-01 10:00:00"), ts(f"2024-05-01 {end}:00"), BATCH_ID, "2024-05-01", "10"),
            (ts(f"2024-05-01 {last}:00"), ts("2024-05-02 00:00:00"), BATCH_ID, "2024-05-01", "23"),
        ],
        f"{WINDOW_SCHEMA}, {PARTITION_SCHEMA}",
    )
    assert_equal(actual, expected)


def test_signal_strength_by_operator(spark: SparkSession) -> None:
    records = usable(spark, [
        {"hour": "10:00:05", "operator": "movistar", "network": "Movistar", "signal": "-80"},
        {"hour": "10:00:10", "operator": " MOVISTAR", "network": "movistar ", "signal": "-90"},
        {"hour": "10:00:20", "operator": "Movistar", "network": "MOVISTAR", "signal": "n/a"},  # no signal: not counted
        {"hour": "10:00:30", "operator": "orange", "network": "Yoigo", "signal": -70},
        {"hour": "10:00:40", "operator": "yoigo", "network": "yoigo"},  # the only row of its group has no signal
        {"hour": "10:01:00", "operator": "movistar", "network": "Movistar", "signal": "-60"},
    ])

    actual = table_of("signal_strength_by_operator", records)

    w0 = (ts("2024-05-01 10:00:00"), ts("2024-05-01 10:01:00"))
    w1 = (ts("2024-05-01 10:01:00"), ts("2024-05-01 10:02:00"))
    partition = (BATCH_ID, "2024-05-01", "10")
    expected = spark.createDataFrame(
        [
            # The records are every usable record, with a signal or not: Movistar's 'n/a' and Yoigo's none.
            (*w0, "Movistar", "Movistar", -170.0, 2, -90.0, -80.0, 3, *partition),
            (*w0, "Orange", "Yoigo", -70.0, 1, -70.0, -70.0, 1, *partition),
            (*w0, "Yoigo", "Yoigo", None, 0, None, None, 1, *partition),
            (*w1, "Movistar", "Movistar", -60.0, 1, -60.0, -60.0, 1, *partition),
        ],
        f"{WINDOW_SCHEMA}, operator string, network string, signal_sum double, signal_count bigint, "
        f"signal_min double, signal_max double, record_count bigint, {PARTITION_SCHEMA}",
    )
    assert_equal(actual, expected)


def test_gps_precision_by_provider(spark: SparkSession) -> None:
    records = usable(spark, [
        {"hour": "10:00:05", "provider": "gps", "precission": "3.5", "satellites": "7"},
        {"hour": "10:00:10", "provider": " GPS ", "precission": 4.5, "satellites": "x"},
        {"hour": "10:00:20", "provider": "network", "precission": "", "satellites": "3"},
        {"hour": "10:00:30", "provider": "", "precission": "10"},
    ])

    actual = table_of("gps_precision_by_provider", records)

    w0 = (ts("2024-05-01 10:00:00"), ts("2024-05-01 10:01:00"))
    partition = (BATCH_ID, "2024-05-01", "10")
    expected = spark.createDataFrame(
        [
            (*w0, "gps", 8.0, 2, 7.0, 1, *partition),
            (*w0, "network", None, 0, 3.0, 1, *partition),
            (*w0, "unknown", 10.0, 1, None, 0, *partition),
        ],
        f"{WINDOW_SCHEMA}, provider string, precision_sum double, precision_count bigint, satellites_sum double, "
        f"satellites_count bigint, {PARTITION_SCHEMA}",
    )
    assert_equal(actual, expected)


def test_status_count(spark: SparkSession) -> None:
    records = usable(spark, [
        {"hour": "10:00:05", "postal_code": "28013", "status": "1", "description": "ok"},
        {"hour": "10:00:10", "postal_code": "28013.0", "status": "1.0", "description": " OK "},
        {"hour": "10:00:20", "postal_code": 28013.0, "status": 0, "description": "no signal"},
        {"hour": "10:00:30", "status": "0.0"},
        {"hour": "10:01:30", "postal_code": "28013", "status": "1", "description": "ok"},
    ])

    actual = table_of("status_count", records)

    w0 = (ts("2024-05-01 10:00:00"), ts("2024-05-01 10:01:00"))
    w1 = (ts("2024-05-01 10:01:00"), ts("2024-05-01 10:02:00"))
    partition = (BATCH_ID, "2024-05-01", "10")
    expected = spark.createDataFrame(
        [
            (*w0, "28013", "1", "OK", 2, *partition),
            (*w0, "28013", "0", "NO SIGNAL", 1, *partition),
            (*w0, "unknown", "0", "unknown", 1, *partition),
            (*w1, "28013", "1", "OK", 1, *partition),
        ],
        f"{WINDOW_SCHEMA}, postal_code string, status string, description string, record_count bigint, "
        f"{PARTITION_SCHEMA}",
    )
    assert_equal(actual, expected)


def test_coverage_grid_cells_and_rows_without_a_position(spark: SparkSession) -> None:
    records = usable(spark, [
        {"hour": "10:00:05", "operator": "movistar", "lat": "40.41678", "long": "-3.70379", "signal": "-80"},
        {"hour": "10:00:10", "operator": "movistar", "lat": 40.419, "long": -3.7001, "signal": "n/a"},
        {"hour": "10:00:15", "operator": "orange", "lat": "-33.86785", "long": "151.20732", "signal": "-70"},
        {"hour": "10:00:20", "operator": "movistar", "long": "-3.70379", "signal": "-50"},  # no lat
        {"hour": "10:00:25", "operator": "movistar", "lat": "40.41678", "long": "", "signal": "-50"},  # no long
        {"hour": "10:00:30", "operator": "movistar", "lat": "999", "long": "-3.70379", "signal": "-50"},  # off range
    ])

    actual = table_of("coverage_grid", records)

    w0 = (ts("2024-05-01 10:00:00"), ts("2024-05-01 11:00:00"))  # one 1-hour coverage window
    partition = (BATCH_ID, "2024-05-01", "10")
    expected = spark.createDataFrame(
        [
            (*w0, 40.41, -3.71, "Movistar", -80.0, 1, 2, *partition),
            (*w0, -33.87, 151.2, "Orange", -70.0, 1, 1, *partition),
        ],
        f"{WINDOW_SCHEMA}, lat_cell double, lon_cell double, operator string, signal_sum double, "
        f"signal_count bigint, record_count bigint, {PARTITION_SCHEMA}",
    )
    assert_equal(actual, expected)


def test_no_service_texts_in_place_of_an_operator_are_counted_as_the_reference_counts_them(spark: SparkSession) -> None:
    # As the real logs carry them: the handset's "emergency calls only" state in the operator field.
    header = ("hour", "operator", "network", "signal", "status", "description", "postal_code")
    rows = [
        ("10:00:05", "Movistar", "Movistar", "20", "0", "STATE_IN_SERVICE", "28013.0"),
        ("10:00:10", "Solo llamadas de emergencia", "Movistar", "4", "0", "STATE_IN_SERVICE", "28013.0"),
        ("10:00:15", " SOLO LLAMADAS DE  EMERGENCIA", "", "2", "1", "STATE_OUT_OF_SERVICE", "28013.0"),
        ("10:00:20", "orange", "Sin servicio", "9", "0", "STATE_IN_SERVICE", "28047.0"),
        ("10:00:25", "", "", "11", "3", "STATE_POWER_OFF", ""),
        ("10:00:30", "Yoigo", "Yoigo", "15", "2", "STATE_EMERGENCY_ONLY", "28047.0"),
    ]
    source = pd.DataFrame(rows, columns=list(header), dtype=str)
    records = usable(spark, [dict(zip(header, row, strict=True)) for row in rows])

    signal = table_of("signal_strength_by_operator", records).groupBy(F.lower("operator").alias("operator")).agg(
        F.sum("signal_sum").alias("signal_sum"), F.sum("signal_count").alias("samples")).toPandas()
    got = signal.assign(avg_signal=signal["signal_sum"] / signal["samples"])[["operator", "avg_signal", "samples"]]
    want = reference.signal_by_operator(source)
    pd.testing.assert_frame_equal(got.sort_values("operator", ignore_index=True), want, check_dtype=False)
    # Neither spelling of the state became an operator of its own: both are in "unknown" with the empty one.
    assert want.set_index("operator").loc["unknown", "samples"] == 3

    status = table_of("status_count", records).groupBy("postal_code", "status", "description").agg(
        F.sum("record_count").alias("records")).toPandas()
    want_status = reference.status_by_postal_code(source)
    keys = ["postal_code", "status", "description"]
    pd.testing.assert_frame_equal(status.sort_values(keys, ignore_index=True),
                                  want_status.sort_values(keys, ignore_index=True), check_dtype=False)
    assert want_status.set_index(keys).loc[("28013", "2", "STATE_EMERGENCY_ONLY"), "records"] == 2


def test_quarantined_rows_are_partitioned_by_arrival_time(spark: SparkSession) -> None:
    before_midnight = ts("2024-05-01 23:59:59.500")
    after_midnight = ts("2024-05-02 00:00:01")
    malformed = '{"hour": "23:59:00", '
    future = payload(record_id="r-f", event_time="2024-05-02T03:00:00Z")
    good = payload(record_id="r-g", hour="23:59:00")
    raw = raw_frame(spark, [(malformed, "s-1", before_midnight), (future, "s-2", after_midnight),
                            (good, "s-3", before_midnight)])
    # Move every event time hours away: the quarantine partition must follow the arrival time only.
    records = transforms.parse_records(raw).withColumn("event_time", F.col("event_time") + F.expr("INTERVAL 5 HOURS"))

    actual = transforms.quarantined(records)

    expected = spark.createDataFrame(
        [
            (before_midnight, "s-1", R.REASON_MALFORMED_JSON, malformed, "2024-05-01", "23"),
            (after_midnight, "s-2", R.REASON_FUTURE_EVENT_TIME, future, "2024-05-02", "00"),
        ],
        "arrival_time timestamp, stream_seq string, reason string, raw_payload string, dt string, hr string",
    )
    assert_equal(actual, expected)
