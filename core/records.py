"""The stream record contract: fields, parsing and normalisation, in one place.

Replay validation and the tests use the Python functions here; the streaming job applies the same
rules with native Spark expressions built from the same constants (glue_job/transforms.py), and
tests/glue_job/test_parity.py proves both give the same answer on the same messy records. The
patterns only use syntax that means the same in Python's `re` and Java's regex.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SOURCE_FIELDS: tuple[str, ...] = (
    "hour", "lat", "long", "signal", "network", "operator", "status", "description",
    "speed", "satellites", "precission", "provider", "activity", "postal_code",
)
NUMERIC_FIELDS: tuple[str, ...] = ("lat", "long", "signal", "speed", "satellites", "precission")
PRODUCER_FIELDS: tuple[str, ...] = ("record_id", "event_time", "replay_id")
RECORD_FIELDS: tuple[str, ...] = (*SOURCE_FIELDS, *PRODUCER_FIELDS)

UNKNOWN = "unknown"

# Explicit classes rather than \s and \d: Python's match Unicode, Java's only ASCII.
WHITESPACE_CHARS = " \t\n\r\f\v"
WHITESPACE = "[ \t\n\r\f\v]"
EDGE_WHITESPACE_PATTERN = f"^{WHITESPACE}+|{WHITESPACE}+$"
INNER_WHITESPACE_PATTERN = f"{WHITESPACE}+"
NUMBER_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
NUMBER_CHARS = "0123456789+-.eE"  # every character NUMBER_PATTERN can match
TIMESTAMP_PATTERN = (  # offsets as far as Spark takes them: +-18:00
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-](0[0-9]|1[0-7]):[0-5][0-9]|[+-]18:00)?$"
)
CLOCK_PATTERN = r"^[0-9]{1,2}:[0-9]{2}:[0-9]{2}$"
FLOAT_SUFFIX_PATTERN = r"\.0+$"

# Canonical spellings of the operators seen in the fleet; any other name is shown word-capitalised.
KNOWN_OPERATORS: dict[str, str] = {
    "movistar": "Movistar",
    "yoigo": "Yoigo",
    "orange": "Orange",
    "vodafone": "Vodafone",
    "simyo": "Simyo",
    "masmovil": "MasMovil",
    "pepephone": "Pepephone",
    "jazztel": "Jazztel",
    "lowi": "Lowi",
    "digi": "DIGI",
    "tuenti": "Tuenti",
    "o2": "O2",
    "t-mobile": "T-Mobile",
    "vodafone de": "Vodafone DE",
    "o2 - de": "O2 - DE",
    "o2 - uk": "O2 - UK",
    "ee": "EE",
    "sfr": "SFR",
    "tim": "TIM",
}

# What a handset puts in the operator (or network) field when it has no operator to show: its service
# state, not a network. Such a record has no operator (unknown) and this status, whatever status it
# reported; keyed by the cleaned, lower-cased text.
NO_SERVICE_LABELS: dict[str, str] = {
    "solo llamadas de emergencia": "2",
    "sólo llamadas de emergencia": "2",
    "emergency calls only": "2",
    "sin servicio": "1",
    "no service": "1",
}
# Android's ServiceState codes and the descriptions the source logs carry with them.
SERVICE_STATES: dict[str, str] = {
    "0": "STATE_IN_SERVICE",
    "1": "STATE_OUT_OF_SERVICE",
    "2": "STATE_EMERGENCY_ONLY",
    "3": "STATE_POWER_OFF",
}

LAT_RANGE = (-90.0, 90.0)
LON_RANGE = (-180.0, 180.0)

# A bare HH:MM:SS is placed on the arrival date; a clock time this far after the arrival is taken
# to be from the day before (a record from 23:59 arriving at 00:01), so it cannot drag the
# watermark a day ahead and turn every other record late.
CLOCK_AHEAD_TOLERANCE = timedelta(minutes=2)
# Event times further ahead of their arrival than this come from a wrong clock, so they go to
# quarantine: the watermark follows the newest event time, and a record from the future would turn
# the on-time records after it late. It must stay well below the watermark delay (config checks).
FUTURE_TOLERANCE = timedelta(minutes=2)

REASON_EMPTY = "empty payload"
REASON_MALFORMED_JSON = "malformed JSON"
REASON_NOT_AN_OBJECT = "not a JSON object"
REASON_NO_EVENT_TIME = "no usable event time"
REASON_FUTURE_EVENT_TIME = "event time ahead of arrival"

_EDGE_WS = re.compile(EDGE_WHITESPACE_PATTERN)
_INNER_WS = re.compile(INNER_WHITESPACE_PATTERN)
_NUMBER = re.compile(NUMBER_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_CLOCK = re.compile(CLOCK_PATTERN)
_FLOAT_SUFFIX = re.compile(FLOAT_SUFFIX_PATTERN)
_DECODER = json.JSONDecoder()


def as_text(value: Any) -> str:
    """Return a raw field value as text, the way Spark reads any JSON value into a string column."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def clean_text(value: Any) -> str:
    """Return the value with edge whitespace removed and inner runs collapsed to one space."""
    return _INNER_WS.sub(" ", _EDGE_WS.sub("", as_text(value)))


def parse_number(value: Any) -> float | None:
    """Return the value as a finite float, or None when it is not a plain decimal number."""
    text = _EDGE_WS.sub("", as_text(value))
    if not _NUMBER.match(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def canonical_name(value: Any) -> str:
    """Return one spelling for an operator or network name, whatever its case and spacing; a service
    state written in its place (NO_SERVICE_LABELS) is no name: unknown."""
    lowered = clean_text(value).lower()
    if not lowered or lowered in NO_SERVICE_LABELS:
        return UNKNOWN
    known = KNOWN_OPERATORS.get(lowered)
    if known:
        return known
    # Spark's initcap: words split on single spaces, first letter upper, the rest lower.
    return " ".join(word[:1].upper() + word[1:] for word in lowered.split(" "))


def no_service_status(operator: Any, network: Any) -> str | None:
    """Return the status code a no-service label in the operator, else the network, field stands for."""
    return NO_SERVICE_LABELS.get(clean_text(operator).lower()) or NO_SERVICE_LABELS.get(clean_text(network).lower())


def normalise_code(value: Any) -> str:
    """Return a code (postal code, status) without a float suffix: '80333.0' -> '80333'."""
    text = _FLOAT_SUFFIX.sub("", clean_text(value))
    return text or UNKNOWN


def normalise_label(value: Any, *, upper: bool = False, lower: bool = False) -> str:
    """Return a label trimmed, optionally case-folded, 'unknown' when empty."""
    text = clean_text(value)
    if upper:
        text = text.upper()
    if lower:
        text = text.lower()
    return text or UNKNOWN


def parse_timestamp(value: Any) -> datetime | None:
    """Return an ISO-8601 / 'YYYY-MM-DD HH:MM:SS' timestamp as aware UTC, or None."""
    text = _EDGE_WS.sub("", as_text(value))
    if not _TIMESTAMP.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_clock(value: Any) -> timedelta | None:
    """Return an 'HH:MM:SS' clock time as the offset from midnight, or None."""
    text = _EDGE_WS.sub("", as_text(value))
    if not _CLOCK.match(text):
        return None
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def resolve_event_time(event_time: Any, hour: Any, arrival: datetime) -> datetime | None:
    """Return the record's event time: event_time, else a full `hour`, else arrival date + hour."""
    explicit = parse_timestamp(event_time)
    if explicit is not None:
        return explicit
    full_hour = parse_timestamp(hour)
    if full_hour is not None:
        return full_hour
    clock = parse_clock(hour)
    if clock is None:
        return None
    arrival_utc = arrival.astimezone(UTC)
    midnight = arrival_utc.replace(hour=0, minute=0, second=0, microsecond=0)
    candidate = midnight + clock
    if candidate > arrival_utc + CLOCK_AHEAD_TOLERANCE:
        candidate -= timedelta(days=1)
    return candidate


def _in_range(value: float | None, bounds: tuple[float, float]) -> float | None:
    if value is None or not bounds[0] <= value <= bounds[1]:
        return None
    return value


@dataclass(frozen=True)
class NormalisedRecord:
    """A record after normalisation; `quarantine_reason` is set when it cannot be aggregated."""

    record_key: str
    event_time: datetime | None
    quarantine_reason: str | None
    operator: str = UNKNOWN
    network: str = UNKNOWN
    status: str = UNKNOWN
    description: str = UNKNOWN
    provider: str = UNKNOWN
    activity: str = UNKNOWN
    postal_code: str = UNKNOWN
    lat: float | None = None
    long: float | None = None
    signal: float | None = None
    speed: float | None = None
    satellites: float | None = None
    precission: float | None = None


def normalise(fields: Mapping[str, Any], *, stream_seq: str, arrival: datetime) -> NormalisedRecord:
    """Return the normalised record for the fields of one stream record."""
    event_time = resolve_event_time(fields.get("event_time"), fields.get("hour"), arrival)
    reason = None
    if event_time is None:
        reason = REASON_NO_EVENT_TIME
    elif event_time > arrival + FUTURE_TOLERANCE:
        reason = REASON_FUTURE_EVENT_TIME
    # A quarantined record keeps the stream's identity: its record_id may be as broken as the rest.
    record_key = (reason is None and clean_text(fields.get("record_id"))) or stream_seq
    no_service = no_service_status(fields.get("operator"), fields.get("network"))
    return NormalisedRecord(
        record_key=record_key,
        event_time=event_time,
        quarantine_reason=reason,
        operator=canonical_name(fields.get("operator")),
        network=canonical_name(fields.get("network")),
        status=no_service or normalise_code(fields.get("status")),
        description=SERVICE_STATES[no_service] if no_service else normalise_label(fields.get("description"),
                                                                                  upper=True),
        provider=normalise_label(fields.get("provider"), lower=True),
        activity=normalise_label(fields.get("activity"), upper=True),
        postal_code=normalise_code(fields.get("postal_code")),
        lat=_in_range(parse_number(fields.get("lat")), LAT_RANGE),
        long=_in_range(parse_number(fields.get("long")), LON_RANGE),
        signal=parse_number(fields.get("signal")),
        speed=parse_number(fields.get("speed")),
        satellites=parse_number(fields.get("satellites")),
        precission=parse_number(fields.get("precission")),
    )


def parse_payload(payload: str, *, stream_seq: str, arrival: datetime) -> NormalisedRecord:
    """Return the normalised record for one raw stream payload (quarantined when unusable)."""
    text = _EDGE_WS.sub("", payload)
    if not text:
        return NormalisedRecord(stream_seq, None, REASON_EMPTY)
    if not text.startswith("{"):
        return NormalisedRecord(stream_seq, None, REASON_NOT_AN_OBJECT)
    try:
        # raw_decode ignores what follows the object, as Spark's JSON reader does; like Jackson it
        # takes only JSON's own whitespace before the object, not \f or \v.
        decoded, _ = _DECODER.raw_decode(payload.lstrip(" \t\n\r"))
    except ValueError:
        return NormalisedRecord(stream_seq, None, REASON_MALFORMED_JSON)
    return normalise(decoded, stream_seq=stream_seq, arrival=arrival)
