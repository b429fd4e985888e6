"""Pure DataFrame -> DataFrame transforms of the streaming job.

The rules are those of core/records.py, written as native Spark expressions from the same
constants so the job never pays for a Python UDF; tests/glue_job/test_parity.py checks that both
give the same answer. Nothing here knows where the data comes from or goes to.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core import records as R
from core.lake_layout import (
    COVERAGE_GRID,
    GPS_PRECISION_BY_PROVIDER,
    SIGNAL_STRENGTH_BY_OPERATOR,
    STATUS_COUNT,
    WINDOW_SECONDS,
)

CORRUPT_COLUMN = "_corrupt_record"
RAW_COLUMNS = ("payload", "stream_seq", "arrival_time")

RECORD_SCHEMA = T.StructType(
    [T.StructField(name, T.StringType()) for name in R.RECORD_FIELDS]
    + [T.StructField(CORRUPT_COLUMN, T.StringType())]
)


def _strip(column: Column) -> Column:
    # btrim with a character set: the same as the edge-whitespace pattern, without a regex per row.
    return F.call_function("btrim", column, F.lit(R.WHITESPACE_CHARS))


def _clean(column: Column) -> Column:
    text = _strip(column)
    # Collapsing needs a regex, but only a value with a run of spaces or another whitespace character
    # changes; a few substring tests per value cost far less than a regex on every one.
    changes = text.contains("  ")
    for character in R.WHITESPACE_CHARS.replace(" ", ""):
        changes = changes | text.contains(character)
    return F.when(changes, F.regexp_replace(text, R.INNER_WHITESPACE_PATTERN, " ")).otherwise(text)


def _or_unknown(column: Column) -> Column:
    return F.when(column == "", F.lit(R.UNKNOWN)).otherwise(column)


def _number(column: Column) -> Column:
    text = _strip(F.coalesce(column, F.lit("")))
    # NUMBER_PATTERN's texts use only these characters, and over them Spark's cast (Java's
    # Double.parseDouble) accepts exactly what the pattern accepts; a character filter costs a fraction
    # of the regex. The parity test holds both to core/records.parse_number.
    plain = (text != "") & (F.translate(text, R.NUMBER_CHARS, "") == "")
    value = F.when(plain, text.cast(T.DoubleType()))
    infinite = (value == float("inf")) | (value == float("-inf")) | F.isnan(value)
    return F.when(infinite, F.lit(None).cast(T.DoubleType())).otherwise(value)


def _in_range(column: Column, bounds: tuple[float, float]) -> Column:
    return F.when(column.between(bounds[0], bounds[1]), column)


def _lowered(column: Column) -> Column:
    return F.lower(_clean(F.coalesce(column, F.lit(""))))


def _literal_map(mapping: dict[str, str]) -> Column:
    return F.create_map(*[F.lit(x) for pair in mapping.items() for x in pair])


def _canonical_name(lowered: Column) -> Column:
    # From the cleaned, lower-cased text (_lowered): a no-service label is no name, like an empty one.
    known = _literal_map(R.KNOWN_OPERATORS)
    no_name = (lowered == "") | lowered.isin(list(R.NO_SERVICE_LABELS))
    return F.when(no_name, F.lit(R.UNKNOWN)).otherwise(F.coalesce(known[lowered], F.initcap(lowered)))


def _without_float_suffix(text: Column) -> Column:
    # FLOAT_SUFFIX_PATTERN without a regex: the part after the last dot is one or more zeros.
    tail = F.substring_index(text, ".", -1)
    zeros = text.contains(".") & (tail != "") & (F.translate(tail, "0", "") == "")
    return F.when(zeros, text.substr(F.lit(1), F.length(text) - F.length(tail) - 1)).otherwise(text)


def _code(column: Column) -> Column:
    return _or_unknown(_without_float_suffix(_clean(F.coalesce(column, F.lit("")))))


def _label(column: Column, case: str | None = None) -> Column:
    text = _clean(F.coalesce(column, F.lit("")))
    if case == "upper":
        text = F.upper(text)
    elif case == "lower":
        text = F.lower(text)
    return _or_unknown(text)


def utc_timestamp(text: Column) -> Column:
    """Return an ISO timestamp text cast to a timestamp, its `Z` (UTC) suffix dropped first.

    The session time zone is UTC (both entries set it), so the cast means the same without the
    suffix; with it, Spark resolves the zone through a regex compiled per row (4% of a batch).
    """
    utc = text.endswith("Z")
    return F.when(utc, text.substr(F.lit(1), F.length(text) - 1)).otherwise(text).cast(T.TimestampType())


def _timestamp(column: Column) -> Column:
    text = _strip(F.coalesce(column, F.lit("")))
    return F.when(text.rlike(R.TIMESTAMP_PATTERN), utc_timestamp(text))


def _clock_on_arrival_date(hour: Column, arrival: Column) -> Column:
    text = _strip(F.coalesce(hour, F.lit("")))
    padded = F.lpad(text, 8, "0")
    candidate = F.when(
        text.rlike(R.CLOCK_PATTERN),
        F.concat(F.date_format(arrival, "yyyy-MM-dd"), F.lit(" "), padded).cast(T.TimestampType()),
    )
    tolerance = int(R.CLOCK_AHEAD_TOLERANCE.total_seconds())
    too_far_ahead = candidate > arrival + F.expr(f"INTERVAL {tolerance} SECONDS")
    return F.when(too_far_ahead, candidate - F.expr("INTERVAL 1 DAY")).otherwise(candidate)


def parse_records(raw: DataFrame) -> DataFrame:
    """Return normalised records (one per raw payload) with `quarantine_reason` set when unusable.

    Input columns: payload (string), stream_seq (string), arrival_time (timestamp). Quarantined rows
    keep their raw payload and take the arrival time as event time so they pass the watermark; usable
    rows have a null payload.
    Built in steps so each expression is computed once per row: Spark does not merge steps that
    would evaluate an expensive expression (regex, JSON) twice.
    """
    options = {"columnNameOfCorruptRecord": CORRUPT_COLUMN, "allowSingleQuotes": "false"}
    decoded = raw.select(
        *RAW_COLUMNS,
        # Empty and not-an-object need only the left edge: trimming the right edge too costs two
        # payload-sized arrays per row in Spark's btrim.
        # (Spark's ltrim takes the characters first, unlike btrim.)
        F.call_function("ltrim", F.lit(R.WHITESPACE_CHARS), F.coalesce(F.col("payload"), F.lit(""))).alias("_trimmed"),
        F.from_json(F.col("payload"), RECORD_SCHEMA, options).alias("_r"),
    )
    r = F.col("_r")
    fields = decoded.select(
        *RAW_COLUMNS, "_trimmed", r.isNull().alias("_null"),
        *[r[name].alias(f"_{name}") for name in (*R.RECORD_FIELDS, CORRUPT_COLUMN)],
        # Both the name and the status read these (a no-service label in place of the operator).
        _lowered(r["operator"]).alias("_operator_key"), _lowered(r["network"]).alias("_network_key"),
    )
    event_time = F.coalesce(
        _timestamp(F.col("_event_time")),
        _timestamp(F.col("_hour")),
        _clock_on_arrival_date(F.col("_hour"), F.col("arrival_time")),
    )
    labels = _literal_map(R.NO_SERVICE_LABELS)
    no_service = F.coalesce(labels[F.col("_operator_key")], labels[F.col("_network_key")])
    normalised = fields.select(
        *RAW_COLUMNS, "_trimmed", "_null", F.col(f"_{CORRUPT_COLUMN}").alias("_corrupt"),
        event_time.alias("_event_time"),
        _clean(F.coalesce(F.col("_record_id"), F.lit(""))).alias("_record_id"),
        _canonical_name(F.col("_operator_key")).alias("operator"),
        _canonical_name(F.col("_network_key")).alias("network"),
        F.coalesce(no_service, _code(F.col("_status"))).alias("status"),
        F.when(no_service.isNotNull(), _literal_map(R.SERVICE_STATES)[no_service])
        .otherwise(_label(F.col("_description"), "upper")).alias("description"),
        _label(F.col("_provider"), "lower").alias("provider"),
        _label(F.col("_activity"), "upper").alias("activity"),
        _code(F.col("_postal_code")).alias("postal_code"),
        _in_range(_number(F.col("_lat")), R.LAT_RANGE).alias("lat"),
        _in_range(_number(F.col("_long")), R.LON_RANGE).alias("long"),
        _number(F.col("_signal")).alias("signal"),
        _number(F.col("_speed")).alias("speed"),
        _number(F.col("_satellites")).alias("satellites"),
        _number(F.col("_precission")).alias("precission"),
        F.col("_replay_id").alias("replay_id"),
    )
    trimmed, event = F.col("_trimmed"), F.col("_event_time")
    future_seconds = int(R.FUTURE_TOLERANCE.total_seconds())
    reason = (
        F.when(trimmed == "", F.lit(R.REASON_EMPTY))
        .when(~trimmed.startswith("{"), F.lit(R.REASON_NOT_AN_OBJECT))
        .when(F.col("_null") | F.col("_corrupt").isNotNull(), F.lit(R.REASON_MALFORMED_JSON))
        .when(event.isNull(), F.lit(R.REASON_NO_EVENT_TIME))
        .when(event > F.col("arrival_time") + F.expr(f"INTERVAL {future_seconds} SECONDS"),
              F.lit(R.REASON_FUTURE_EVENT_TIME))
    )
    reasoned = normalised.withColumn("quarantine_reason", reason)
    usable = F.col("quarantine_reason").isNull()
    return reasoned.select(
        F.when(usable & (F.col("_record_id") != ""), F.col("_record_id")).otherwise(F.col("stream_seq"))
        .alias("record_key"),
        F.when(usable, event).otherwise(F.col("arrival_time")).alias("event_time"),
        "quarantine_reason",
        # Only quarantine keeps the raw payload; dropping it from usable rows spares the shuffle of the
        # de-duplication and the batch cache most of their bytes.
        F.when(~usable, F.col("payload")).alias("payload"), "stream_seq", "arrival_time",
        "operator", "network", "status", "description", "provider", "activity", "postal_code",
        "lat", "long", "signal", "speed", "satellites", "precission", "replay_id",
    )


# What the sink reads of a record (aggregate_tables, quarantined). speed, activity and replay_id are
# normalised for the record contract, but no table uses them; carried on, they would be shuffled by
# the de-duplication and held in the batch cache, since Spark prunes no column through a stateful
# operator or a foreachBatch.
SINK_COLUMNS = (
    "record_key", "event_time", "quarantine_reason", "payload", "stream_seq", "arrival_time",
    "operator", "network", "status", "description", "provider", "postal_code",
    "lat", "long", "signal", "satellites", "precission",
)


def sink_columns(records: DataFrame) -> DataFrame:
    """Return parse_records' output narrowed to the columns the sink reads."""
    return records.select(*SINK_COLUMNS)


def deduplicate_within_watermark(records: DataFrame, watermark_minutes: int) -> DataFrame:
    """Return the stream with late rows dropped and each record_key kept once within the watermark."""
    return records.withWatermark("event_time", f"{watermark_minutes} minutes").dropDuplicatesWithinWatermark(
        ["record_key"]
    )


def _partitioned(frame: DataFrame, time_column: str) -> DataFrame:
    # No batch_id here: a literal that changes every batch makes Spark generate and compile the
    # batch's code anew (and the JIT warm it up anew); the sink adds batch_id to what it collects.
    return frame.withColumn("dt", F.date_format(F.col(time_column), "yyyy-MM-dd")).withColumn(
        "hr", F.date_format(F.col(time_column), "HH")
    )


def usable_records(records: DataFrame) -> DataFrame:
    """Return the records that can be aggregated."""
    return records.where(F.col("quarantine_reason").isNull())


QUARANTINED_TAG = "quarantined"
GRID_KEYS = ("lat_cell", "lon_cell")
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    SIGNAL_STRENGTH_BY_OPERATOR.name: ("operator", "network"),
    GPS_PRECISION_BY_PROVIDER.name: ("provider",),
    STATUS_COUNT.name: ("postal_code", "status", "description"),
    COVERAGE_GRID.name: ("lat_cell", "lon_cell", "operator"),
}
TABLE_METRICS: dict[str, tuple[str, ...]] = {
    SIGNAL_STRENGTH_BY_OPERATOR.name: ("signal_sum", "signal_count", "signal_min", "signal_max", "record_count"),
    GPS_PRECISION_BY_PROVIDER.name: ("precision_sum", "precision_count", "satellites_sum", "satellites_count"),
    STATUS_COUNT.name: ("record_count",),
    COVERAGE_GRID.name: ("signal_sum", "signal_count", "record_count"),
}
_KEY_COLUMNS = ("operator", "network", "provider", "postal_code", "status", "description", *GRID_KEYS)
_METRIC_COLUMNS = ("signal_sum", "signal_count", "signal_min", "signal_max", "precision_sum", "precision_count",
                   "satellites_sum", "satellites_count", "record_count")


def aggregate_tables(records: DataFrame, grid_degrees: float) -> DataFrame:
    """Return every aggregation table's partial aggregates per window (1 minute; coverage_grid's coarser),
    from one pass.

    Each record fans out into one row per table (coverage_grid only when located) and one groupBy
    computes every partial aggregate: one scan of the batch and one shuffle, where a job per table
    scanned and shuffled it four times (half of a batch's time). Column `table` names the table; the
    other tables' key columns are null. Quarantined records are counted under QUARANTINED_TAG
    (record_count), so the caller knows whether there is quarantine to write.
    """
    # The fan-out is a constant array of table numbers, and each key column is "this column when the
    # row's table has it": no struct per row and table, which cost a third more (measured on 200k
    # records). window_end is derived after the groupBy rather than grouped on.
    tables = (*TABLE_KEYS, QUARANTINED_TAG)
    number = F.col("_table")
    usable = F.col("quarantine_reason").isNull()
    located = usable & F.col("lat").isNotNull() & F.col("long").isNotNull()
    kept = (
        F.when(number == tables.index(COVERAGE_GRID.name), located)
        .when(number == tables.index(QUARANTINED_TAG), ~usable)
        .otherwise(usable)
    )
    cells = {
        "lat_cell": F.round(F.floor(F.col("lat") / grid_degrees) * grid_degrees, 6),
        "lon_cell": F.round(F.floor(F.col("long") / grid_degrees) * grid_degrees, 6),
    }
    keys = [
        F.when(number.isin([i for i, table in enumerate(tables) if name in TABLE_KEYS.get(table, ())]),
               cells.get(name, F.col(name))).alias(name)
        for name in _KEY_COLUMNS
    ]
    fanned = records.select("*", F.explode(F.array(*[F.lit(i) for i in range(len(tables))])).alias("_table"))
    # coverage_grid's windows are coarser (core.lake_layout.COVERAGE_WINDOW_SECONDS), the others' 1 minute.
    coverage = number == tables.index(COVERAGE_GRID.name)
    window_seconds = F.when(coverage, F.lit(COVERAGE_GRID.window_seconds)).otherwise(F.lit(WINDOW_SECONDS))
    window_start = F.timestamp_seconds(F.floor(F.unix_seconds(F.col("event_time")) / window_seconds) * window_seconds)
    aggregate = fanned.where(kept).select(
        window_start.alias("window_start"), "_table", *keys,
        "signal", "precission", "satellites",
    ).groupBy("window_start", "_table", *_KEY_COLUMNS).agg(
        F.sum("signal").alias("signal_sum"),
        F.count("signal").alias("signal_count"),
        F.min("signal").alias("signal_min"),
        F.max("signal").alias("signal_max"),
        F.sum("precission").alias("precision_sum"),
        F.count("precission").alias("precision_count"),
        F.sum("satellites").alias("satellites_sum"),
        F.count("satellites").alias("satellites_count"),
        F.count(F.lit(1)).alias("record_count"),
    )
    window_end = F.timestamp_seconds(F.unix_seconds(F.col("window_start")) + window_seconds)
    table = F.element_at(F.array(*[F.lit(name) for name in tables]), number + 1)
    return _partitioned(
        aggregate.select("window_start", window_end.alias("window_end"), table.alias("table"), *_KEY_COLUMNS,
                         *_METRIC_COLUMNS),
        "window_start",
    )


def table_rows(aggregates: DataFrame, table: str, batch_id: int) -> DataFrame:
    """Return one table's rows of aggregate_tables' output, in that table's columns."""
    return aggregates.where(F.col("table") == table).select(
        "window_start", "window_end", *TABLE_KEYS[table], *TABLE_METRICS[table],
        F.lit(batch_id).cast(T.LongType()).alias("batch_id"), "dt", "hr",
    )


def quarantined(records: DataFrame) -> DataFrame:
    """Return the quarantined records with their raw payload and reason, partitioned by arrival."""
    rows = records.where(F.col("quarantine_reason").isNotNull()).select(
        "arrival_time", "stream_seq", F.col("quarantine_reason").alias("reason"),
        F.col("payload").alias("raw_payload"),
    )
    return _partitioned(rows, "arrival_time")
