"""Stand-in for awsglue.context: a GlueContext over a real local SparkSession.

`create_data_frame.from_options(connection_type="kinesis")` reads a local folder of Kinesis records,
one JSON object per line, shaped as the Kinesis API returns them:

    {"data": <base64>, "sequenceNumber": ..., "approximateArrivalTimestamp": <ISO-8601>,
     "partitionKey": ..., "streamName": ...}

from `$FAKE_AWSGLUE_STREAMS/<stream name>/`, and hands them out as Glue does for the options given.
Only the shape the job relies on is modelled: classification json with inferSchema true, where Glue
defers parsing and gives the raw data as one string column (plus `__src_timestamp` with
addRecordTimestamp). Anything else, or an option Glue does not document, is refused, so a typo in
the job's options fails the test instead of being silently ignored as Glue would.

`forEachBatch` has the semantics of Glue's: it checks windowSize and checkpointLocation, persists
each micro-batch, counts it, skips it when empty and otherwise calls batch_function(data_frame,
batch_id). It runs the backlog once (trigger availableNow) instead of every windowSize, so the test
ends, and it blocks until the query ends, as Glue's does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.context import SparkContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

STREAMS_ENV = "FAKE_AWSGLUE_STREAMS"
DEFERRED_COLUMN = "$json$data_infer_schema$_temporary$"
SOURCE_TIMESTAMP = "__src_timestamp"
# The read options of https://docs.aws.amazon.com/glue/latest/dg/aws-glue-programming-etl-connect-kinesis-home.html
DOCUMENTED_KINESIS_OPTIONS = frozenset({
    "streamARN", "classification", "streamName", "endpointUrl", "delimiter", "startingPosition",
    "failOnDataLoss", "awsSTSRoleARN", "awsSTSSessionName", "awsSTSEndpoint", "maxFetchTimeInMs",
    "maxFetchRecordsPerShard", "maxRecordPerRead", "addIdleTimeBetweenReads", "idleTimeBetweenReadsInMs",
    "describeShardInterval", "numRetries", "retryIntervalMs", "maxRetryIntervalMs", "avoidEmptyBatches",
    "schema", "inferSchema", "addRecordTimestamp", "emitConsumerLagMetrics", "fanoutConsumerARN",
})
STARTING_POSITION_PATTERN = r"^(latest|trim_horizon|earliest|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2}))$"
WINDOW_SIZE_PATTERN = r"^\d+(\.\d+)? (second|seconds|minute|minutes)$"
KINESIS_RECORD = T.StructType([
    T.StructField("data", T.StringType()),
    T.StructField("sequenceNumber", T.StringType()),
    T.StructField("approximateArrivalTimestamp", T.StringType()),
    T.StructField("partitionKey", T.StringType()),
    T.StructField("streamName", T.StringType()),
])

INSTANCES: list[GlueContext] = []


class _DataFrameReader:
    def __init__(self, context: GlueContext) -> None:
        self._context = context

    def from_options(self, connection_type: str, connection_options: dict[str, str] | None = None,
                     format: str | None = None, format_options: dict[str, Any] | None = None,
                     transformation_ctx: str = "", push_down_predicate: str = "", **kwargs: Any) -> DataFrame:
        """Return the Kinesis stream as Glue hands it out for these options."""
        if connection_type != "kinesis":
            raise NotImplementedError(f"the stand-in only reads Kinesis, not {connection_type!r}")
        options = dict(connection_options or {})
        unknown = sorted(set(options) - DOCUMENTED_KINESIS_OPTIONS)
        if unknown:
            raise ValueError(f"Kinesis options Glue does not document: {unknown}")
        if "streamARN" not in options:
            raise ValueError("streamARN is required")
        if options.get("classification") != "json":
            raise NotImplementedError("the stand-in models classification json only")
        if options.get("inferSchema", "false").lower() != "true":
            raise NotImplementedError("the stand-in models the deferred (inferSchema true) shape only")
        position = options.get("startingPosition", "latest")
        if not re.match(STARTING_POSITION_PATTERN, position):
            raise ValueError(f"startingPosition {position!r} is not one Glue takes")
        self._context.kinesis_options.append(options)

        folder = Path(os.environ[STREAMS_ENV]) / options["streamARN"].rsplit("/", 1)[-1]
        folder.mkdir(parents=True, exist_ok=True)
        records = self._context.spark_session.readStream.schema(KINESIS_RECORD).json(str(folder))
        columns = [F.unbase64(F.col("data")).cast(T.StringType()).alias(DEFERRED_COLUMN)]
        if options.get("addRecordTimestamp", "false").lower() == "true":
            columns.append(F.to_timestamp(F.col("approximateArrivalTimestamp")).alias(SOURCE_TIMESTAMP))
        return records.select(*columns)


class GlueContext:
    """The parts of Glue's GlueContext the job uses, recording what it was asked."""

    def __init__(self, spark_context: SparkContext, **options: Any) -> None:
        self.spark_context = spark_context
        self.spark_session = SparkSession.builder.getOrCreate()
        self.create_data_frame = _DataFrameReader(self)
        self.kinesis_options: list[dict[str, str]] = []
        self.for_each_batch_options: list[dict[str, str]] = []
        self.batches: list[tuple[int, int]] = []  # (batch_id, rows) of the batches handed out
        INSTANCES.append(self)

    def forEachBatch(self, frame: DataFrame, batch_function: Any, options: dict[str, str] | None = None) -> None:
        """Run batch_function on each non-empty micro-batch of the stream, until the backlog is done."""
        options = dict(options or {})
        for key in ("windowSize", "checkpointLocation"):
            if key not in options:
                raise Exception(f"Missing {key} argument")
        if not re.match(WINDOW_SIZE_PATTERN, options["windowSize"]):
            raise ValueError(f"windowSize {options['windowSize']!r} is not an interval")
        self.for_each_batch_options.append(options)

        def batch_function_with_persist(data_frame: DataFrame, batch_id: int) -> None:
            data_frame.persist(StorageLevel.MEMORY_AND_DISK)
            rows = data_frame.count()
            if rows > 0:
                self.batches.append((batch_id, rows))
                batch_function(data_frame, batch_id)
            data_frame.unpersist()

        query = (
            frame.writeStream.foreachBatch(batch_function_with_persist)
            .trigger(availableNow=True)
            .option("checkpointLocation", options["checkpointLocation"])
            .start()
        )
        query.awaitTermination()
