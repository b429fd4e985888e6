"""The job's exactly-once writer: per micro-batch, one Delta append per table, tagged with the batch.

Each append carries a Delta *app transaction* (`app_id` = the job and its checkpoint's identity,
glue_job/app_identity.py; `version` = batch_id) in the same commit as its rows, so a batch that is
retried after a crash is skipped for every table it already committed: the lake holds each batch
exactly once, whatever the moment of the crash. Aggregates are small (groups per window), so they
are collected to the driver as Arrow and written with delta-rs; the same code writes to a local
folder or to S3.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Field, Transaction, WriterProperties, write_deltalake
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from core.delta_lake import open_table, storage_options
from core.lake_layout import (
    AGGREGATION_TABLES,
    DEFAULT_RETENTION_SECONDS,
    LOG_RETENTION_PROPERTY,
    PARTITION_KEYS,
    QUARANTINE,
    RETENTION_PROPERTY,
    TABLES,
    TableSpec,
    table_properties,
    table_uri,
)
from glue_job import transforms

BATCH_ID = "batch_id"
# The lake is Snappy Parquet on both backends (delta-rs' default would be another codec on rewrites).
WRITER_PROPERTIES = WriterProperties(compression="SNAPPY")


class LakeTables:
    """The lake's Delta tables, opened once per job run and kept at their newest version by the writer."""

    def __init__(self, lake_uri: str, retention_seconds: int = DEFAULT_RETENTION_SECONDS) -> None:
        self.lake_uri = lake_uri.rstrip("/")
        self.properties = table_properties(retention_seconds)
        self._tables: dict[str, DeltaTable] = {}

    def table(self, spec: TableSpec) -> DeltaTable:
        """Return the table, created (empty, partitioned, with the lake's properties) if it is new."""
        table = self._tables.get(spec.name)
        if table is None:
            table = open_table(self.lake_uri, spec)
            if table is None:
                uri = table_uri(self.lake_uri, spec)
                table = DeltaTable.create(uri, spec.delta_schema, mode="ignore", partition_by=list(PARTITION_KEYS),
                                          name=spec.name, configuration=self.properties,
                                          storage_options=storage_options(uri))
            self._tables[spec.name] = table
        return table

    def refresh(self) -> None:
        """Bring every open table to its newest version (another process may have committed)."""
        for table in self._tables.values():
            table.update_incremental()

    def create_all(self) -> None:
        """Create every table that does not exist yet, so readers and crawlers find all of them, and give
        existing ones this run's retentions and the columns added since they were created."""
        for spec in TABLES:
            table = self.table(spec)
            configured = table.metadata().configuration
            changed = {key: self.properties[key] for key in (RETENTION_PROPERTY, LOG_RETENTION_PROPERTY)
                       if configured.get(key) != self.properties[key]}
            if changed:  # tables created by an earlier release, or with another SIGNAL_RETENTION_SECONDS
                table.alter.set_table_properties(changed)
            added = missing_columns(table, spec)
            if added:
                # Rows committed before read the new columns as NULL (Delta schema evolution; the readers
                # match columns by name).
                table.alter.add_columns(added)

    def committed_batch(self, spec: TableSpec, app_id: str) -> int | None:
        """Return the newest batch id this app committed to the table, or None."""
        return self.table(spec).transaction_version(app_id)

    def has_commits(self) -> bool:
        """Return whether any table holds a commit after its creation (any writer's)."""
        return any(self.table(spec).version() > 0 for spec in TABLES)

    def append(self, spec: TableSpec, rows: pa.Table, app_id: str, batch_id: int) -> bool:
        """Append one batch's rows in one commit that records (app_id, batch_id); return False (and
        write nothing) when that batch is already committed to this table."""
        table = self.table(spec)
        committed = table.transaction_version(app_id)
        if committed is not None and committed >= batch_id:
            return False
        write_deltalake(
            table, rows, mode="append", partition_by=list(PARTITION_KEYS), writer_properties=WRITER_PROPERTIES,
            commit_properties=CommitProperties(app_transactions=[Transaction(app_id, batch_id)],
                                               custom_metadata={"batch_id": str(batch_id)}),
        )
        return True


def missing_columns(table: DeltaTable, spec: TableSpec) -> list[Field]:
    """Return the spec's columns the table does not have yet, as nullable Delta fields."""
    present = set(table.schema().to_arrow().names)
    return [Field.from_arrow(field.with_nullable(True)) for field in spec.delta_schema if field.name not in present]


@dataclass(frozen=True)
class BatchOutput:
    """What one micro-batch wrote."""

    batch_id: int
    input_rows: int
    aggregated_rows: int
    quarantined_rows: int
    commits: int
    skipped_commits: int = 0


def _collect(frame: DataFrame, schema: pa.Schema, *extra: str) -> pa.Table:
    """Return the frame's schema columns (but batch_id) and extra columns as one Arrow table."""
    # Timestamps leave Spark as epoch millis: the conversion would otherwise go through the driver's
    # local time zone. Arrow collection (toPandas with spark.sql.execution.arrow.pyspark.enabled)
    # moves columns in bulk: a batch's coverage grid (tens of thousands of groups) took 1.8 s as
    # Row objects and 0.25 s as Arrow.
    selected = [
        F.unix_millis(F.col(f.name)).alias(f.name) if pa.types.is_timestamp(f.type) else F.col(f.name)
        for f in schema if f.name != BATCH_ID
    ]
    return pa.Table.from_pandas(frame.select(*selected, *extra).toPandas(), preserve_index=False)


def table_rows(collected: pa.Table, spec: TableSpec, batch_id: int) -> pa.Table:
    """Return collected rows in the table's Delta schema, batch_id filled in (not in Spark: see
    transforms._partitioned)."""
    columns: list[pa.Array | pa.ChunkedArray] = []
    for field in spec.delta_schema:
        if field.name == BATCH_ID:
            column = pa.repeat(pa.scalar(batch_id, pa.int64()), collected.num_rows)
        else:
            column = collected.column(field.name)
            if pa.types.is_timestamp(field.type):  # epoch millis from _collect
                column = column.cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=spec.delta_schema)


# Every column aggregate_tables yields, typed as the tables declare them.
_TABLE_FIELDS = {f.name: f for spec in AGGREGATION_TABLES for f in spec.schema if f.name != BATCH_ID}
_AGGREGATES_SCHEMA = pa.schema([pa.field("table", pa.string()), *_TABLE_FIELDS.values()])


def collect_aggregates(records: DataFrame, grid_degrees: float) -> pa.Table:
    """Return every table's partial aggregates of a batch (column `table` names the table), from one
    Spark job (transforms.aggregate_tables)."""
    return _collect(transforms.aggregate_tables(records, grid_degrees), _AGGREGATES_SCHEMA, "dt", "hr")


def commit_batch(tables: LakeTables, app_id: str, batch_id: int, aggregates: pa.Table,
                 quarantine: pa.Table | None = None) -> tuple[int, int]:
    """Commit one batch's collected aggregates (and quarantined records) to the lake; return the
    commits made and the ones skipped because the batch was already committed there."""
    names = aggregates.column("table")
    batch: list[tuple[TableSpec, pa.Table | None]] = [
        *((spec, aggregates.filter(pc.equal(names, spec.name))) for spec in AGGREGATION_TABLES),
        (QUARANTINE, quarantine),
    ]
    commits = skipped = 0
    for spec, rows in batch:
        if rows is None or rows.num_rows == 0:
            continue
        if tables.append(spec, table_rows(rows, spec, batch_id), app_id, batch_id):
            commits += 1
        else:
            skipped += 1
    return commits, skipped


def write_batch(records: DataFrame, batch_id: int, tables: LakeTables, app_id: str, *, grid_degrees: float,
                input_rows: int) -> BatchOutput:
    """Write one micro-batch's partial aggregates and quarantine; return what was written.

    `records` is the batch after parse, watermark and de-duplication; the caller persists it.
    Quarantine is read only when the batch has some.
    """
    aggregates = collect_aggregates(records, grid_degrees)
    quarantined_groups = aggregates.filter(pc.equal(aggregates.column("table"), transforms.QUARANTINED_TAG))
    quarantined = pc.sum(quarantined_groups.column("record_count")).as_py() or 0
    quarantine = _collect(transforms.quarantined(records), QUARANTINE.schema, "dt", "hr") if quarantined else None
    commits, skipped = commit_batch(tables, app_id, batch_id, aggregates, quarantine)
    return BatchOutput(batch_id, input_rows, input_rows - quarantined, quarantined, commits, skipped)
