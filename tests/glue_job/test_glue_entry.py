"""The Glue entry (glue_job/job.py) run on the shared local session against a stand-in `awsglue`.

The stand-in (tests/glue_job/fake_awsglue/) reads Kinesis records from a local folder and hands
them out as Glue does for the job's options; its forEachBatch has Glue's semantics and runs the
backlog once. Also checked here: the job's arguments, the package Glue runs (dist/ via
glue_job/package.py), and that nothing else in the product imports awsglue.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T

import glue_job
from core import config
from core.lake_layout import QUARANTINE, SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT, TableSpec
from glue_job import package
from glue_job.status import STATUS_PATH

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAKE_AWSGLUE = Path(__file__).resolve().parent / "fake_awsglue"
STREAM = "mobile_coverage_logs"
STREAM_ARN = f"arn:aws:kinesis:eu-west-1:000000000000:stream/{STREAM}"
JOB_NAME = "etl_streaming_mobile_logs"
MALFORMED = '{"record_id": "bad-1", "signal": '
AWSGLUE_IMPORT = re.compile(r"^\s*(import\s+awsglue|from\s+awsglue[\s.])", re.MULTILINE)


def _entry_modules() -> list[str]:
    return [name for name in sys.modules if name == "awsglue" or name.startswith("awsglue.") or name == "glue_job.job"]


@pytest.fixture
def glue_entry(monkeypatch: pytest.MonkeyPatch, spark: SparkSession) -> Iterator[ModuleType]:
    """Import glue_job.job against the stand-in awsglue; forget both afterwards."""
    monkeypatch.syspath_prepend(str(FAKE_AWSGLUE))
    for name in _entry_modules():
        monkeypatch.delitem(sys.modules, name)
    yield importlib.import_module("glue_job.job")
    for name in _entry_modules():
        sys.modules.pop(name, None)
    if hasattr(glue_job, "job"):
        delattr(glue_job, "job")


def kinesis_record(sequence: int, payload: str, arrival: datetime) -> dict[str, str]:
    """Return one Kinesis record as the Kinesis API shows it (data base64-encoded)."""
    return {
        "data": base64.b64encode(payload.encode()).decode(),
        "sequenceNumber": f"49590338271490256608559692538361571095921575989136588898{sequence:02d}",
        "approximateArrivalTimestamp": arrival.isoformat().replace("+00:00", "Z"),
        "partitionKey": f"pk-{sequence}",
        "streamName": STREAM,
    }


def record(record_id: str, event_time: datetime, signal: int, operator: str) -> str:
    return json.dumps({
        "record_id": record_id, "event_time": event_time.strftime("%Y-%m-%dT%H:%M:%SZ"), "operator": operator,
        "network": operator, "signal": str(signal), "lat": "40.41678", "long": "-3.70379", "status": "0",
        "description": "STATE_IN_SERVICE", "provider": "gps", "precission": "4.0", "satellites": "8",
        "postal_code": "28013.0", "hour": event_time.strftime("%H:%M:%S"), "replay_id": "test",
    })


def lake_rows(lake: Path, spec: TableSpec) -> list[dict[str, Any]]:
    folder = lake / spec.prefix
    if not (folder / "_delta_log").exists():
        return []
    # As any Delta reader sees the table; timestamps as naive UTC, as the assertions write them.
    rows = DeltaTable(str(folder)).to_pyarrow_table().to_pylist()
    return [{k: v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v for k, v in row.items()}
            for row in rows]


def test_job_runs_the_stream_into_the_lake_with_quarantine(
    glue_entry: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = tmp_path / "kinesis"
    (streams / STREAM).mkdir(parents=True)
    monkeypatch.setenv("FAKE_AWSGLUE_STREAMS", str(streams))
    now = datetime.now(UTC).replace(microsecond=0)
    event = now - timedelta(minutes=1)
    payloads = [
        record("r-1", event, -70, "movistar"),
        record("r-2", event, -80, "MOVISTAR "),
        record("r-3", event, -90, "yoigo"),
        record("r-1", event, -70, "movistar"),  # the producer retried: same record_id, new sequence number
        MALFORMED,
    ]
    lines = [json.dumps(kinesis_record(i, p, now)) for i, p in enumerate(payloads)]
    (streams / STREAM / "shard-0.json").write_text("\n".join(lines) + "\n")
    lake = tmp_path / "lake"
    lake_uri = lake.as_uri()

    glue_entry.main(["job.py", "--JOB_NAME", JOB_NAME, "--stream_arn", STREAM_ARN, "--lake_uri", lake_uri,
                     "--job-bookmark-option", "job-bookmark-disable"])

    signal = lake_rows(lake, SIGNAL_STRENGTH_BY_OPERATOR)
    by_operator = {row["operator"]: (row["signal_count"], row["signal_sum"]) for row in signal}
    assert by_operator == {"Movistar": (2, -150.0), "Yoigo": (1, -90.0)}
    assert sum(row["record_count"] for row in lake_rows(lake, STATUS_COUNT)) == 3
    quarantine = lake_rows(lake, QUARANTINE)
    assert [(row["raw_payload"], row["reason"]) for row in quarantine] == [(MALFORMED, "malformed JSON")]
    assert quarantine[0]["stream_seq"].startswith("src:")

    status = json.loads((lake / STATUS_PATH).read_text())
    assert status["state"] == "STOPPED" and status["error"] is None
    totals = status["totals"]
    # Every record read is accounted for: aggregated, quarantined or counted as a duplicate.
    assert (totals["input_rows"], totals["aggregated_rows"], totals["quarantined_rows"]) == (5, 3, 1)
    assert (totals["duplicate_rows"], totals["late_rows"], totals["batches"]) == (1, 0, 1)

    fake_context = importlib.import_module("awsglue.context")
    fake_job = importlib.import_module("awsglue.job")
    context, job = fake_context.INSTANCES[-1], fake_job.INSTANCES[-1]
    assert context.kinesis_options == [glue_entry.kinesis_options(STREAM_ARN, "trim_horizon")]
    assert context.for_each_batch_options == [
        {"windowSize": "20 seconds", "checkpointLocation": f"{lake_uri}/checkpoints/{JOB_NAME}/"}
    ]
    assert [rows for _batch, rows in context.batches] == [4]
    assert (lake / "checkpoints" / JOB_NAME / "offsets").is_dir()
    assert job.name == JOB_NAME and job.committed


def test_source_options_ask_for_the_raw_record(glue_entry: ModuleType) -> None:
    options = glue_entry.kinesis_options(STREAM_ARN, "trim_horizon")
    assert options["inferSchema"] == "true" and "schema" not in options  # Glue must not parse the payload
    assert options["addRecordTimestamp"] == "true" and options["emitConsumerLagMetrics"] == "true"
    assert options["startingPosition"] == "trim_horizon"


def test_raw_records_from_the_deferred_frame(glue_entry: ModuleType, spark: SparkSession) -> None:
    arrival_ms = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
    schema = T.StructType([
        T.StructField("$json$data_infer_schema$.temporary$", T.StringType()),
        T.StructField("__src_timestamp", T.LongType()),
    ])
    frame = spark.createDataFrame([('{"a": 1}', arrival_ms), ('{"a": 1}', arrival_ms), ("oops", arrival_ms)], schema)
    rows = glue_entry.raw_records(frame).collect()
    assert [r["payload"] for r in rows] == ['{"a": 1}', '{"a": 1}', "oops"]
    assert {r["arrival_time"].astimezone(UTC) for r in rows} == {
        datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    }
    assert rows[0]["stream_seq"] == rows[1]["stream_seq"] != rows[2]["stream_seq"]
    assert rows[0]["stream_seq"].startswith(f"src:{arrival_ms}:")


def test_raw_records_from_connector_rows(glue_entry: ModuleType, spark: SparkSession) -> None:
    schema = T.StructType([
        T.StructField("data", T.BinaryType()), T.StructField("streamName", T.StringType()),
        T.StructField("partitionKey", T.StringType()), T.StructField("sequenceNumber", T.StringType()),
        T.StructField("approximateArrivalTimestamp", T.TimestampType()),
    ])
    arrival = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    frame = spark.createDataFrame([(bytearray(b'{"a": 1}'), STREAM, "pk", "4959001", arrival)], schema)
    row = glue_entry.raw_records(frame).collect()[0]
    assert (row["payload"], row["stream_seq"]) == ('{"a": 1}', "4959001")
    assert row["arrival_time"].astimezone(UTC) == arrival  # collect() gives naive local time


def test_raw_records_refuses_an_unknown_frame(glue_entry: ModuleType, spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="unexpected columns"):
        glue_entry.raw_records(spark.createDataFrame([("x",)], "value string"))


def test_arguments_default_to_the_settings_defaults(glue_entry: ModuleType) -> None:
    resolved = glue_entry.resolve_args(["job.py", "--JOB_NAME", JOB_NAME, "--stream_arn", STREAM_ARN,
                                        "--lake_uri", "s3://lake-bucket/signal/"])
    args = glue_entry.JobArgs.from_resolved(resolved)
    settings = config.Settings.from_env({})
    assert (args.database, args.trigger_seconds, args.watermark_minutes, args.grid_degrees) == (
        settings.database, settings.trigger_seconds, settings.watermark_minutes, settings.grid_degrees
    )
    assert glue_entry.MIN_WATERMARK_MINUTES == config.MIN_WATERMARK_MINUTES
    assert args.starting_position == "trim_horizon"
    assert args.checkpoint_location == f"s3://lake-bucket/signal/checkpoints/{JOB_NAME}/"


def test_arguments_are_checked(glue_entry: ModuleType) -> None:
    base = ["job.py", "--JOB_NAME", JOB_NAME, "--stream_arn", STREAM_ARN, "--lake_uri", "s3://b/p"]
    utils = importlib.import_module("awsglue.utils")
    with pytest.raises(utils.GlueArgumentError):
        glue_entry.resolve_args(base[:3])
    resolved = glue_entry.resolve_args([*base, "--starting_position=latest", "--trigger_seconds", "5"])
    args = glue_entry.JobArgs.from_resolved(resolved)
    assert (args.starting_position, args.window_size) == ("latest", "5 seconds")
    for extra, message in [
        (["--watermark_minutes", "2"], "too small"),
        (["--grid_degrees", "-1"], "not a positive number"),
        (["--starting_position", "NOW"], "starting_position"),
    ]:
        with pytest.raises(ValueError, match=message):
            glue_entry.JobArgs.from_resolved(glue_entry.resolve_args([*base, *extra]))
    with pytest.raises(ValueError, match="Kinesis stream ARN"):
        glue_entry.JobArgs.from_resolved(glue_entry.resolve_args(
            ["job.py", "--JOB_NAME", JOB_NAME, "--stream_arn", "mobile_coverage_logs", "--lake_uri", "s3://b/p"]
        ))


def test_only_the_glue_entry_imports_awsglue() -> None:
    importers = sorted(
        path.relative_to(PROJECT_ROOT).as_posix()
        for folder in ("core", "glue_job", "pages", "ui")
        for path in (PROJECT_ROOT / folder).rglob("*.py")
        if AWSGLUE_IMPORT.search(path.read_text(encoding="utf-8"))
    )
    assert importers == ["glue_job/job.py"]
    assert not AWSGLUE_IMPORT.search((PROJECT_ROOT / "Home.py").read_text(encoding="utf-8"))


def test_package_holds_what_the_job_imports_and_imports_from_the_zip(tmp_path: Path) -> None:
    assert package.missing_modules() == []
    archive, script = package.build(tmp_path / "dist")
    with zipfile.ZipFile(archive) as bundle:
        assert sorted(bundle.namelist()) == sorted(package.JOB_MODULES)
    assert script.read_bytes() == (PROJECT_ROOT / "glue_job" / "job.py").read_bytes()
    assert package.build(tmp_path / "again")[0].read_bytes() == archive.read_bytes()  # reproducible

    # A fresh interpreter that sees the zip but not the repository, as Glue does.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import glue_job.transforms, glue_job.sink, glue_job.status, core.records, core.lake_layout;"
        "assert all(m.__file__.startswith(sys.argv[1]) for m in (glue_job.sink, glue_job.status, core.records));"
        "assert 'core.backends' not in sys.modules and 'core.config' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-I", "-c", probe, str(archive)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_package_refuses_a_module_it_would_leave_out(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for relative in (*package.JOB_MODULES, package.SCRIPT, "core/config.py"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("")
    (root / "glue_job" / "sink.py").write_text("from core.config import Settings\n")
    assert package.missing_modules(root) == ["core.config"]
    with pytest.raises(SystemExit, match=r"core\.config"):
        package.build(tmp_path / "dist", root)
