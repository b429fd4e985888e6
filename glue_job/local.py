"""Local entry of the streaming job: SparkSession local[*] over the local file stream.

Mirrors glue_job/job.py: the same transforms and sink, and a small shim with the semantics of
Glue's forEachBatch (persist the batch, count it, skip it when empty). Run it through the CLI:
`python -m core.cli job run [--available-now]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core.backends.local_job import REFUSED_EXIT_CODE
from core.config import Settings
from core.errors import SignalStreamError
from glue_job import app_identity, transforms
from glue_job.lake_files import LakeFiles
from glue_job.maintenance import LakeMaintenance
from glue_job.sink import LakeTables, write_batch
from glue_job.status import StatusTracker

ENVELOPE_SCHEMA = T.StructType([
    T.StructField("seq", T.StringType()),
    T.StructField("arrival", T.StringType()),
    T.StructField("data", T.StringType()),
])


def stream_folder(settings: Settings) -> Path:
    """Return the folder of the local stream (shared with core.backends.local)."""
    return (settings.home / "stream" / settings.stream_name).resolve()


def lake_folder(settings: Settings) -> Path:
    """Return the local lake root."""
    return (settings.home / "lake").resolve()


def build_session(app_name: str = "signal-stream-job", cores: str = "*", master: str | None = None) -> SparkSession:
    """Return a local SparkSession tuned for small micro-batches on a laptop."""
    return (
        SparkSession.builder.master(master or f"local[{cores}]")
        .appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")  # the sink collects aggregates as Arrow
        # A batch is cached for one pass of the sink: compressing it costs more than it saves.
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        # Listing a batch's files in a Spark job of its own costs more than it saves on a laptop.
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        # The normalisation compiles to one generated method above HotSpot's 8,000-byte JIT limit; by
        # default such a method runs interpreted, at half the speed (measured on 400k records).
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC -XX:-DontCompileHugeMethods")
        .getOrCreate()
    )


def read_local_stream(spark: SparkSession, folder: Path, max_files_per_trigger: int) -> DataFrame:
    """Return the local stream as (payload, stream_seq, arrival_time), like Kinesis data + metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = (
        spark.readStream.format("text")
        .option("maxFilesPerTrigger", max_files_per_trigger)
        .option("cleanSource", "delete")  # the job owns the local stream: processed files go
        .load(str(folder))
    )
    envelope = F.from_json(F.col("value"), ENVELOPE_SCHEMA)
    # A line whose envelope does not parse (a torn write) has no seq: its file and content identify it, so
    # two such lines are two records to quarantine, not duplicates of one.
    own_identity = F.concat_ws(":", F.lit("line"), F.input_file_name(), F.sha2(F.col("value"), 256).substr(1, 24))
    return lines.select(envelope.alias("e"), F.col("value")).select(
        F.coalesce(F.col("e.data"), F.col("value")).alias("payload"),
        F.coalesce(F.col("e.seq"), own_identity).alias("stream_seq"),
        F.coalesce(transforms.utc_timestamp(F.col("e.arrival")), F.current_timestamp()).alias("arrival_time"),
    )


def for_each_batch(process: Callable[[DataFrame, int, int], None]) -> Callable[[DataFrame, int], None]:
    """Return a foreachBatch function with Glue's forEachBatch semantics: persist, count, skip empty."""

    def run(frame: DataFrame, batch_id: int) -> None:
        frame.persist()
        try:
            rows = frame.count()
            if rows:
                process(frame, batch_id, rows)
        finally:
            frame.unpersist()

    return run


def run(settings: Settings, *, available_now: bool = False, cores: str = "*", master: str | None = None,
        reset_checkpoint: bool = False) -> int:
    """Run the streaming job until stopped (or, with available_now, until the backlog is done).

    `master` overrides local[cores] (tests run a local-cluster with several executor JVMs).
    """
    lake = LakeFiles(str(lake_folder(settings)))
    tables = LakeTables(lake.uri, settings.retention_seconds)
    tracker = StatusTracker(lake, settings.job_name)
    try:
        tables.create_all()
        identity = app_identity.resolve(lake, tables, settings.job_name, reset=reset_checkpoint)
    except app_identity.CheckpointRefused as refusal:
        tracker.finish(str(refusal))
        print(f"error: {refusal}", file=sys.stderr)
        return REFUSED_EXIT_CODE
    tracker.record_app(identity.app_id)
    spark = build_session(cores=cores, master=master)
    spark.sparkContext.setLogLevel("WARN")
    stop_requested = threading.Event()
    maintenance = LakeMaintenance(tables, settings.watermark_minutes,
                                  interval=timedelta(seconds=settings.compact_seconds),
                                  vacuum_interval=timedelta(seconds=settings.vacuum_seconds))

    def process(frame: DataFrame, batch_id: int, rows: int) -> None:
        tracker.record_output(write_batch(frame, batch_id, tables, identity.app_id,
                                          grid_degrees=settings.grid_degrees, input_rows=rows))
        tracker.record_maintenance(maintenance.maybe_run())

    records = transforms.parse_records(read_local_stream(spark, stream_folder(settings), settings.max_files_per_batch))
    deduplicated = transforms.deduplicate_within_watermark(transforms.sink_columns(records), settings.watermark_minutes)
    writer = (
        deduplicated.writeStream.queryName(settings.job_name)
        .foreachBatch(for_each_batch(process))
        .option("checkpointLocation", lake.path(identity.checkpoint))
    )
    trigger: dict[str, Any] = (
        {"availableNow": True} if available_now else {"processingTime": f"{settings.trigger_seconds} seconds"}
    )
    query = writer.trigger(**trigger).start()

    def request_stop(signum: int, _frame: Any) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    error: str | None = None
    try:
        while query.isActive:
            query.awaitTermination(1)
            tracker.absorb(query.recentProgress)
            if stop_requested.is_set():
                query.stop()
        exception = query.exception()
        if exception is not None:
            error = str(exception).splitlines()[0]
    finally:
        tracker.absorb(query.recentProgress, state="RUNNING")
        tracker.finish(error)
        spark.stop()
    if error:
        print(f"error: streaming job failed: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m glue_job.local [--available-now] [--reset-checkpoint]`: what `core.cli job run` starts."""
    parser = argparse.ArgumentParser(prog="python -m glue_job.local", description="the local streaming job")
    parser.add_argument("--available-now", action="store_true", help="process what is in the stream, then exit")
    parser.add_argument("--reset-checkpoint", action="store_true", help="start on a new checkpoint (audited by "
                        "the CLI that starts this)")
    args = parser.parse_args(argv)
    # The CLI's promise holds for the job it starts: an error is one line on stderr, never a traceback.
    try:
        return run(Settings.from_env(os.environ), available_now=args.available_now,
                   reset_checkpoint=args.reset_checkpoint)
    except SignalStreamError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk or a lost folder under the lake or the job's state
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
