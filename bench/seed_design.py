"""The seed design, for comparison: three streaming queries over the same stream, one per aggregation.

This is the original plan users would otherwise run: each query reads the stream itself, parses the
envelope and the record with an explicit schema, and keeps a 1-minute tumbling-window aggregation
with a 10-minute watermark in append mode, writing Parquet to its own folder. In append mode a
window is written only once the watermark has passed its end, so a finished run also reports how
many windows were actually emitted.

Run by bench/job.py as a subprocess (so its peak memory is measured like our job's):
`python -m bench.seed_design --home DIR [--max-files N] [--cores 2]`; it prints one line
`SEED_RESULT {json}` on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.query import StreamingQuery

from core import records as R
from core.config import Settings
from glue_job.local import ENVELOPE_SCHEMA, build_session, stream_folder

RESULT_PREFIX = "SEED_RESULT "
WINDOW = "1 minute"
WATERMARK = "10 minutes"

# The seed's explicit record schema: every field arrives as a JSON string (the producer sends CSV
# cells as strings), so numbers are read as strings and cast, as the original plan did.
SEED_SCHEMA = T.StructType([T.StructField(name, T.StringType()) for name in R.RECORD_FIELDS])


@dataclass(frozen=True)
class SeedQuery:
    """One of the seed design's queries: its name, grouping keys and aggregate column."""

    name: str
    keys: tuple[str, ...]
    aggregate: Callable[[], Column]


SEED_QUERIES: tuple[SeedQuery, ...] = (
    SeedQuery("avg_signal_by_operator", ("operator",), lambda: F.avg("signal").alias("avg_signal")),
    SeedQuery("avg_precision_by_provider", ("provider",), lambda: F.avg("precission").alias("avg_precision")),
    SeedQuery("count_by_postal_code_status", ("postal_code", "status"), lambda: F.count(F.lit(1)).alias("records")),
)


def parsed_stream(spark: SparkSession, folder: Path, max_files_per_trigger: int) -> DataFrame:
    """Return the stream parsed the seed's way: envelope, then record, then typed columns."""
    lines = spark.readStream.format("text").option("maxFilesPerTrigger", max_files_per_trigger).load(str(folder))
    data = F.from_json(F.col("value"), ENVELOPE_SCHEMA)["data"]
    record = lines.select(F.from_json(data, SEED_SCHEMA).alias("r")).select("r.*")
    return record.select(
        F.col("event_time").cast(T.TimestampType()).alias("event_time"),
        "operator", "provider", "postal_code", "status",
        F.col("signal").cast(T.DoubleType()).alias("signal"),
        F.col("precission").cast(T.DoubleType()).alias("precission"),
    )


def start_queries(spark: SparkSession, folder: Path, output: Path, max_files_per_trigger: int) -> list[StreamingQuery]:
    """Start the three seed queries, each reading and parsing the stream on its own."""
    started = []
    for spec in SEED_QUERIES:
        # A separate source per query: that is what three independent queries cost (three reads,
        # three parses), and the reason our job has one query.
        records = parsed_stream(spark, folder, max_files_per_trigger).withWatermark("event_time", WATERMARK)
        aggregated = records.groupBy(F.window("event_time", WINDOW), *spec.keys).agg(spec.aggregate())
        query = (
            aggregated.writeStream.queryName(spec.name)
            .format("parquet")
            .outputMode("append")
            .option("path", str(output / spec.name))
            .option("checkpointLocation", str(output / "_checkpoints" / spec.name))
            .trigger(availableNow=True)
            .start()
        )
        started.append(query)
    return started


def emitted(folder: Path) -> tuple[int, int]:
    """Return (rows, distinct windows) written to a seed query's Parquet folder."""
    rows, windows = 0, set[str]()
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        table = pq.read_table(path, columns=["window"])
        rows += table.num_rows
        windows.update(str(w["start"]) for w in table.column("window").to_pylist())
    return rows, len(windows)


def query_summary(query: StreamingQuery, output: Path) -> dict[str, Any]:
    """Return what one seed query read and wrote."""
    progress = query.recentProgress
    rows, windows = emitted(output / str(query.name))
    return {
        "input_rows": sum(int(p.get("numInputRows") or 0) for p in progress),
        "batches": sum(1 for p in progress if int(p.get("numInputRows") or 0) > 0),
        "emitted_rows": rows,
        "emitted_windows": windows,
        "watermark": (progress[-1].get("eventTime") or {}).get("watermark") if progress else None,
    }


def run(home: Path, max_files_per_trigger: int, cores: str) -> dict[str, Any]:
    """Run the seed design over the stream in home with availableNow; return its summary."""
    started = time.perf_counter()
    settings = Settings.from_env({"SIGNAL_HOME": str(home)})
    spark = build_session(app_name="signal-stream-seed-design", cores=cores)
    spark.sparkContext.setLogLevel("WARN")
    session_seconds = time.perf_counter() - started
    output = home / "seed"
    try:
        queries = start_queries(spark, stream_folder(settings), output, max_files_per_trigger)
        for query in queries:
            query.awaitTermination()
        summaries = {str(q.name): query_summary(q, output) for q in queries}
    finally:
        spark.stop()
    return {"session_seconds": round(session_seconds, 2), "seconds": round(time.perf_counter() - started, 2),
            "queries": summaries}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run, print the summary line."""
    parser = argparse.ArgumentParser(prog="python -m bench.seed_design", description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="SIGNAL_HOME whose stream folder is read")
    parser.add_argument("--max-files", type=int, default=400, help="maxFilesPerTrigger of each query")
    parser.add_argument("--cores", default="2", help="local[N] cores")
    args = parser.parse_args(argv)
    print(RESULT_PREFIX + json.dumps(run(args.home, args.max_files, args.cores)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
