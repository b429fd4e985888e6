"""AWS Glue 5.x entry of the streaming job: Kinesis -> the same transforms, sink and status as local.py.

The only module that imports `awsglue`. Glue runs it as the job script (`dist/job.py`), with the
modules it imports shipped in `dist/signal_stream_job.zip` through `--extra-py-files`; `make
package-job` builds both. Job arguments (`--name value`):

    JOB_NAME, --stream_arn (Kinesis), --lake_uri (s3://bucket/prefix)        required
    --database, --trigger_seconds, --watermark_minutes, --grid_degrees,
    --starting_position, --reset_checkpoint, --metrics_namespace              optional (defaults below)

The wiring is a few small functions so tests/glue_job/test_glue_entry.py can run it on a local
SparkSession against a stand-in `awsglue` package.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from awsglue.context import GlueContext
from awsglue.job import Job
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQueryListener

from core import job_defaults
from core.job_defaults import MIN_WATERMARK_MINUTES
from core.lake_layout import CHECKPOINTS_PREFIX
from glue_job import app_identity, transforms
from glue_job.lake_files import LakeFiles
from glue_job.maintenance import LakeMaintenance
from glue_job.sink import LakeTables, write_batch
from glue_job.status import MetricsPublisher, StatusTracker

REQUIRED_ARGS: tuple[str, ...] = ("JOB_NAME", "stream_arn", "lake_uri")
# The settings' defaults, from the one module both read (core/job_defaults.py ships in the package).
# Starting position: the Kinesis default is LATEST, which silently skips whatever the producer sent
# before the job's first micro-batch (Glue takes a minute or more to start, and a replay may already
# be running). TRIM_HORIZON reads the stream's whole retention on the first start instead: nothing
# is lost, a record read twice is de-duplicated by record_id, and late ones are counted. It only
# applies without a checkpoint; afterwards the checkpoint decides where reading resumes.
OPTIONAL_ARGS: dict[str, str] = {
    "database": job_defaults.DATABASE,
    "trigger_seconds": job_defaults.TRIGGER_SECONDS,
    "watermark_minutes": job_defaults.WATERMARK_MINUTES,
    "grid_degrees": job_defaults.GRID_DEGREES,
    "starting_position": "TRIM_HORIZON",
    # An operator's choice for one run, never a default argument (glue_job/app_identity.py).
    "reset_checkpoint": "false",
    # CloudWatch namespace of the job's figures and heartbeat; empty publishes none. The template sets the
    # namespace its alarms watch and its job role may write.
    "metrics_namespace": "",
}
STARTING_POSITIONS = ("LATEST", "TRIM_HORIZON", "EARLIEST")
STARTING_TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$"

# What Glue's Kinesis source hands out with classification json and inferSchema true: the record's
# data as one string column, parsed by nobody until the batch function asks (some Glue releases
# spell it `$json$data_infer_schema$.temporary$`), plus `__src_timestamp` from addRecordTimestamp.
DEFERRED_PAYLOAD_PREFIX = "$json$data_infer_schema$"
SOURCE_TIMESTAMP = "__src_timestamp"
# The Kinesis connector's own rows (`data` binary plus record metadata), should a release hand them out.
CONNECTOR_COLUMNS = ("data", "sequenceNumber", "approximateArrivalTimestamp")
SYNTHETIC_SEQ_PREFIX = "src"
TERMINATION_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class JobArgs:
    """The job's arguments, parsed and checked."""

    job_name: str
    stream_arn: str
    lake_uri: str
    database: str
    trigger_seconds: float
    watermark_minutes: int
    grid_degrees: float
    starting_position: str
    reset_checkpoint: bool = False
    metrics_namespace: str = ""

    @classmethod
    def from_resolved(cls, resolved: Mapping[str, Any]) -> JobArgs:
        """Return the arguments from getResolvedOptions' answer (defaults filled in); raise ValueError."""
        stream_arn = str(resolved["stream_arn"])
        if ":kinesis:" not in stream_arn or ":stream/" not in stream_arn:
            raise ValueError(f"--stream_arn={stream_arn!r} is not a Kinesis stream ARN")
        lake_uri = str(resolved["lake_uri"]).rstrip("/")
        if not lake_uri:
            raise ValueError("--lake_uri is empty")
        watermark_minutes = _positive("watermark_minutes", resolved["watermark_minutes"], int)
        if watermark_minutes < MIN_WATERMARK_MINUTES:
            raise ValueError(f"--watermark_minutes={watermark_minutes} is too small: at least {MIN_WATERMARK_MINUTES}")
        return cls(
            job_name=str(resolved["JOB_NAME"]),
            stream_arn=stream_arn,
            lake_uri=lake_uri,
            database=str(resolved["database"]),
            trigger_seconds=_positive("trigger_seconds", resolved["trigger_seconds"], float),
            watermark_minutes=watermark_minutes,
            grid_degrees=_positive("grid_degrees", resolved["grid_degrees"], float),
            starting_position=starting_position(str(resolved["starting_position"])),
            reset_checkpoint=_flag("reset_checkpoint", resolved["reset_checkpoint"]),
            metrics_namespace=str(resolved["metrics_namespace"]).strip(),
        )

    @property
    def checkpoint_location(self) -> str:
        """Return the streaming checkpoint folder, under the lake like the local job's."""
        return f"{self.lake_uri}/{CHECKPOINTS_PREFIX}/{self.job_name}/"

    @property
    def window_size(self) -> str:
        """Return the micro-batch trigger as Glue's forEachBatch takes it."""
        return f"{self.trigger_seconds:g} seconds"


def _flag(name: str, text: Any) -> bool:
    value = str(text).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"--{name}={text!r}: use true or false")
    return value == "true"


def _positive(name: str, text: Any, kind: Callable[[str], float]) -> Any:
    try:
        value = kind(str(text))
    except ValueError:
        value = 0
    if not value > 0:
        raise ValueError(f"--{name}={text!r} is not a positive number")
    return value


def starting_position(text: str) -> str:
    """Return the Kinesis starting position as Glue spells it (`trim_horizon`, ...) or a timestamp."""
    if text.upper() in STARTING_POSITIONS:
        return text.lower()
    if re.match(STARTING_TIMESTAMP_PATTERN, text):
        return text
    raise ValueError(f"--starting_position={text!r}: use LATEST, TRIM_HORIZON, EARLIEST or YYYY-MM-DDTHH:MM:SSZ")


def resolve_args(argv: Sequence[str]) -> dict[str, Any]:
    """Return the job arguments from argv (argv[0] is the script), optional ones defaulted."""
    # getResolvedOptions makes every name it is given required, so optional ones are only asked
    # for when present.
    present = [name for name in OPTIONAL_ARGS
               if any(arg == f"--{name}" or arg.startswith(f"--{name}=") for arg in argv[1:])]
    resolved = dict(getResolvedOptions(list(argv), [*REQUIRED_ARGS, *present]))
    for name, default in OPTIONAL_ARGS.items():
        if resolved.get(name) is None:
            resolved[name] = default
    return resolved


def kinesis_options(stream_arn: str, starting_position: str) -> dict[str, str]:
    """Return the connection options of the Kinesis source.

    Glue parses a record itself when it is given a schema (inferSchema false), and a payload that is
    not valid JSON then becomes a row of nulls: its raw text, which quarantine must keep, is gone.
    With inferSchema true Glue defers parsing to the batch function and hands it the raw data as one
    string column, which our transforms parse with their own rules (and an explicit schema).
    addRecordTimestamp adds the arrival time (`__src_timestamp`); emitConsumerLagMetrics publishes
    glue.driver.streaming.maxConsumerLagInMs to CloudWatch, which the health page reads.
    """
    return {
        "streamARN": stream_arn,
        "startingPosition": starting_position,
        "classification": "json",
        "inferSchema": "true",
        "addRecordTimestamp": "true",
        "emitConsumerLagMetrics": "true",
    }


def _timestamp(frame: DataFrame, name: str) -> Column:
    # Decided from the schema, not per row: a timestamp as is, a number as epoch milliseconds.
    column = F.col(f"`{name}`")
    data_type = frame.schema[name].dataType
    if isinstance(data_type, T.TimestampType | T.TimestampNTZType):
        value = column.cast(T.TimestampType())
    elif isinstance(data_type, T.IntegralType | T.DecimalType | T.DoubleType | T.FloatType):
        value = F.timestamp_millis(column.cast(T.LongType()))
    else:
        text = column.cast(T.StringType())
        value = F.when(text.rlike(r"^[0-9]+$"), F.timestamp_millis(text.cast(T.LongType()))).otherwise(
            text.cast(T.TimestampType())
        )
    return F.coalesce(value, F.current_timestamp())


def raw_records(frame: DataFrame) -> DataFrame:
    """Return the Kinesis source's frame as (payload, stream_seq, arrival_time), the transforms' input.

    The deferred-inference frame carries no sequence number, so a record's stream identity (used to
    de-duplicate records without record_id, and shown in quarantine) is derived from its arrival
    time and a hash of its payload: a byte-identical record arriving in the same millisecond counts
    as a duplicate, which is what a producer's retried PutRecords is.
    """
    names = frame.columns
    if all(name in names for name in CONNECTOR_COLUMNS):
        return frame.select(
            F.col("data").cast(T.StringType()).alias("payload"),
            F.col("sequenceNumber").cast(T.StringType()).alias("stream_seq"),
            _timestamp(frame, "approximateArrivalTimestamp").alias("arrival_time"),
        )
    deferred = [name for name in names if name.startswith(DEFERRED_PAYLOAD_PREFIX)]
    if len(deferred) != 1 or SOURCE_TIMESTAMP not in names:
        raise ValueError(f"unexpected columns from the Kinesis source: {names}")
    with_payload = frame.select(
        F.col(f"`{deferred[0]}`").cast(T.StringType()).alias("payload"),
        _timestamp(frame, SOURCE_TIMESTAMP).alias("arrival_time"),
    )
    payload_hash = F.sha2(F.coalesce(F.col("payload"), F.lit("")), 256).substr(1, 24)
    return with_payload.select(
        "payload",
        F.concat_ws(":", F.lit(SYNTHETIC_SEQ_PREFIX), F.unix_millis(F.col("arrival_time")).cast(T.StringType()),
                    payload_hash).alias("stream_seq"),
        "arrival_time",
    )


def raw_kinesis_frame(glue_context: GlueContext, stream_arn: str, starting_position: str) -> DataFrame:
    """Return the Kinesis stream as a streaming DataFrame of (payload, stream_seq, arrival_time)."""
    source = glue_context.create_data_frame.from_options(
        connection_type="kinesis",
        connection_options=kinesis_options(stream_arn, starting_position),
        transformation_ctx="kinesis_source",
    )
    return raw_records(source)


class StatusListener(StreamingQueryListener):
    """Feeds Spark's progress reports and the batches' outputs into the job's status document.

    Glue's forEachBatch owns the streaming query, so progress comes from a listener rather than
    from polling the query as local.py does. Callbacks run on other threads than the batches: one
    lock guards the tracker.
    """

    def __init__(self, tracker: StatusTracker, heartbeat: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.tracker = tracker
        self.heartbeat = heartbeat
        self.lock = threading.Lock()
        self.query_id: str | None = None
        self.terminated = threading.Event()
        self.closed = False

    def onQueryStarted(self, event: Any) -> None:
        """Follow the first query started (restarts after a failure keep its id)."""
        with self.lock:
            if self.query_id is None:
                self.query_id = str(event.id)
            if str(event.id) == self.query_id:
                self.terminated.clear()

    def onQueryProgress(self, event: Any) -> None:
        """Fold one finished micro-batch into the status document."""
        progress = event.progress
        with self.lock:
            if self.closed or str(progress.id) != self.query_id:
                return
            self.tracker.absorb([_progress_dict(progress)])
            if self.heartbeat is not None:
                self.heartbeat()

    def onQueryIdle(self, event: Any) -> None:
        """Send a heartbeat (an idle query still runs); the status document keeps its last batch."""
        with self.lock:
            if self.heartbeat is not None and not self.closed:
                self.heartbeat()

    def onQueryTerminated(self, event: Any) -> None:
        """Note that the query ended; its progress reports were all delivered before this event."""
        if str(event.id) == self.query_id:
            self.terminated.set()

    def record_output(self, output: Any) -> None:
        """Remember what a batch wrote, until its progress report arrives."""
        with self.lock:
            self.tracker.record_output(output)

    def record_maintenance(self, runs: Any) -> None:
        """Keep the newest compaction and vacuum runs in the status document."""
        with self.lock:
            self.tracker.record_maintenance(runs)

    def close(self, error: str | None) -> None:
        """Wait for the query's last reports, then record that the run ended."""
        if self.query_id is not None:
            self.terminated.wait(TERMINATION_WAIT_SECONDS)
        with self.lock:
            self.closed = True
            self.tracker.finish(error)


def _progress_dict(progress: Any) -> dict[str, Any]:
    return dict(json.loads(progress.json))


def process_batch(frame: DataFrame, batch_id: int, tables: LakeTables, app_id: str, listener: StatusListener,
                  grid_degrees: float, maintenance: LakeMaintenance) -> None:
    """Write one non-empty micro-batch (Glue's forEachBatch has persisted and counted it), then run the
    lake's compaction and vacuum when they are due."""
    rows = frame.count()  # served from the persisted batch
    listener.record_output(write_batch(frame, batch_id, tables, app_id, grid_degrees=grid_degrees, input_rows=rows))
    listener.record_maintenance(maintenance.maybe_run())


def main(argv: Sequence[str]) -> None:
    """Run the streaming job until Glue stops it; raise when it fails, so the run shows FAILED."""
    resolved = resolve_args(argv)
    args = JobArgs.from_resolved(resolved)
    glue_context = GlueContext(SparkContext.getOrCreate())
    spark = glue_context.spark_session
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # dt/hr partitions and event times are UTC
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")  # the sink collects aggregates as Arrow
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")  # a batch is cached for one pass
    job = Job(glue_context)
    job.init(args.job_name, resolved)
    print(f"{args.job_name}: {args.stream_arn} -> {args.lake_uri} (catalog database {args.database})", flush=True)

    lake = LakeFiles(args.lake_uri)
    tables = LakeTables(args.lake_uri)
    metrics = None
    if args.metrics_namespace:  # the stream's region is the job's (arn:partition:kinesis:region:account:...)
        cloudwatch = boto3.client("cloudwatch", region_name=args.stream_arn.split(":")[3])
        metrics = MetricsPublisher(cloudwatch, args.job_name, args.metrics_namespace)
    tracker = StatusTracker(lake, args.job_name, on_batch=metrics.batch if metrics else None)
    tables.create_all()
    try:
        identity = app_identity.resolve(lake, tables, args.job_name, reset=args.reset_checkpoint)
    except app_identity.CheckpointRefused as refusal:
        tracker.finish(str(refusal))
        raise  # the run shows FAILED with the refusal, which says what to do
    tracker.record_app(identity.app_id)
    listener = StatusListener(tracker, heartbeat=metrics.heartbeat if metrics else None)
    maintenance = LakeMaintenance(tables, args.watermark_minutes)
    records = transforms.parse_records(raw_kinesis_frame(glue_context, args.stream_arn, args.starting_position))
    deduplicated = transforms.deduplicate_within_watermark(transforms.sink_columns(records), args.watermark_minutes)

    def batch_function(frame: DataFrame, batch_id: int) -> None:
        process_batch(frame, batch_id, tables, identity.app_id, listener, args.grid_degrees, maintenance)

    spark.streams.addListener(listener)
    error: str | None = None
    try:
        glue_context.forEachBatch(
            frame=deduplicated,
            batch_function=batch_function,
            options={"windowSize": args.window_size, "checkpointLocation": args.checkpoint_location},
        )
    except Exception as exc:
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise
    finally:
        listener.close(error)
        spark.streams.removeListener(listener)
    job.commit()


if __name__ == "__main__":
    main(sys.argv)
