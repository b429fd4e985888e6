"""The record contract: normalisation of names, codes and numbers, event time and quarantine reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core import records as R

ARRIVAL = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
JUST_AFTER_MIDNIGHT = datetime(2026, 3, 1, 0, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("movistar", "Movistar"),
        (" MOVISTAR ", "Movistar"),
        ("Yoigo", "Yoigo"),
        ("YOIGO", "Yoigo"),
        ("digi", "DIGI"),
        ("vodafone   de", "Vodafone DE"),
        ("o2  -\tde", "O2 - DE"),
        ("", R.UNKNOWN),
        ("   ", R.UNKNOWN),
        (None, R.UNKNOWN),
        ("t-mobile xx", "T-mobile Xx"),
        ("  new   OPERATOR\tname ", "New Operator Name"),
    ],
)
def test_canonical_name_gives_one_spelling_per_operator(raw: object, expected: str) -> None:
    assert R.canonical_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("80333.0", "80333"),
        ("8001.0", "8001"),
        ("28047.00", "28047"),
        (28047.0, "28047"),
        (" 08001 ", "08001"),
        ("0.0", "0"),
        ("", R.UNKNOWN),
        (None, R.UNKNOWN),
        ("1.50", "1.50"),
    ],
)
def test_normalise_code_drops_only_a_float_suffix(raw: object, expected: str) -> None:
    assert R.normalise_code(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("4.0", 4.0),
        (" 12 ", 12.0),
        ("-3.5e2", -350.0),
        ("+5", 5.0),
        (".5", 0.5),
        (4, 4.0),
        (4.5, 4.5),
        (-90, -90.0),
    ],
)
def test_parse_number_reads_plain_decimals(raw: object, expected: float) -> None:
    assert R.parse_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["n/a", "-", "nan", "NaN", "inf", "-inf", "1e400", "", "   ", None, "1,5", "12 dBm", True, float("nan"),
     float("inf")],
)
def test_parse_number_gives_none_for_anything_else(raw: object) -> None:
    assert R.parse_number(raw) is None


def _fields(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {"hour": "11:00:00"}
    fields.update(overrides)
    return fields


def test_provider_is_lower_cased_and_labels_upper_cased() -> None:
    record = R.normalise(_fields(provider=" GPS ", activity="on_foot", description="state_in_service"),
                         stream_seq="s1", arrival=ARRIVAL)
    assert (record.provider, record.activity, record.description) == ("gps", "ON_FOOT", "STATE_IN_SERVICE")


@pytest.mark.parametrize(
    ("operator", "network", "status", "expected"),
    [
        # The handset's "emergency calls only" state in place of the operator: no operator, that status.
        ("Solo llamadas de emergencia", "Movistar", "0", (R.UNKNOWN, "Movistar", "2", "STATE_EMERGENCY_ONLY")),
        (" SOLO  llamadas de\temergencia ", "", "1.0", (R.UNKNOWN, R.UNKNOWN, "2", "STATE_EMERGENCY_ONLY")),
        ("Sólo llamadas de emergencia", "Orange", "", (R.UNKNOWN, "Orange", "2", "STATE_EMERGENCY_ONLY")),
        ("Emergency calls only", "Vodafone", "3", (R.UNKNOWN, "Vodafone", "2", "STATE_EMERGENCY_ONLY")),
        ("orange", "Sin servicio", "0", ("Orange", R.UNKNOWN, "1", "STATE_OUT_OF_SERVICE")),
        ("No service", "no service", "0", (R.UNKNOWN, R.UNKNOWN, "1", "STATE_OUT_OF_SERVICE")),
        # An operator whose name merely contains such words is an operator.
        ("Solo llamadas de emergencia 2", "Movistar", "0", ("Solo Llamadas De Emergencia 2", "Movistar", "0",
                                                            "STATE_IN_SERVICE")),
    ],
)
def test_a_service_state_in_the_operator_field_is_no_operator_and_sets_the_status(
        operator: str, network: str, status: str, expected: tuple[str, str, str, str]) -> None:
    record = R.normalise(_fields(operator=operator, network=network, status=status, description="STATE_IN_SERVICE"),
                         stream_seq="s1", arrival=ARRIVAL)
    assert (record.operator, record.network, record.status, record.description) == expected
    assert R.canonical_name(operator) == expected[0]


@pytest.mark.parametrize(
    ("lat", "long", "expected"),
    [
        ("40.4", "-3.7", (40.4, -3.7)),
        ("90", "180", (90.0, 180.0)),
        ("-90", "-180", (-90.0, -180.0)),
        ("90.0001", "-3.7", (None, -3.7)),
        ("40.4", "180.5", (40.4, None)),
        ("-91", "-181", (None, None)),
        ("n/a", "", (None, None)),
    ],
)
def test_coordinates_out_of_range_become_none(lat: str, long: str, expected: tuple[object, object]) -> None:
    record = R.normalise(_fields(lat=lat, long=long), stream_seq="s1", arrival=ARRIVAL)
    assert (record.lat, record.long) == expected


@pytest.mark.parametrize(
    ("event_time", "hour", "arrival", "expected"),
    [
        # an explicit event_time wins, converted to UTC
        ("2026-03-01T10:00:00Z", "garbage", ARRIVAL, datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("2026-03-01T10:00:00+01:00", "11:30:00", ARRIVAL, datetime(2026, 3, 1, 9, 0, tzinfo=UTC)),
        ("2026-03-01T10:00:00.250-02:30", None, ARRIVAL, datetime(2026, 3, 1, 12, 30, 0, 250000, tzinfo=UTC)),
        # an invalid event_time falls back to the hour
        ("2026-02-30T10:00:00Z", "11:30:00", ARRIVAL, datetime(2026, 3, 1, 11, 30, tzinfo=UTC)),
        ("yesterday", "11:30:00", ARRIVAL, datetime(2026, 3, 1, 11, 30, tzinfo=UTC)),
        # a full timestamp in hour
        (None, "2026-02-27 08:15:00", ARRIVAL, datetime(2026, 2, 27, 8, 15, tzinfo=UTC)),
        # a bare clock goes on the arrival date
        (None, "11:30:00", ARRIVAL, datetime(2026, 3, 1, 11, 30, tzinfo=UTC)),
        (None, "7:05:09", ARRIVAL, datetime(2026, 3, 1, 7, 5, 9, tzinfo=UTC)),
        # up to 2 minutes after arrival stays on the arrival date ...
        (None, "00:03:00", JUST_AFTER_MIDNIGHT, datetime(2026, 3, 1, 0, 3, tzinfo=UTC)),
        # ... later than that it is from the day before
        (None, "00:03:01", JUST_AFTER_MIDNIGHT, datetime(2026, 2, 28, 0, 3, 1, tzinfo=UTC)),
        (None, "23:59:00", JUST_AFTER_MIDNIGHT, datetime(2026, 2, 28, 23, 59, tzinfo=UTC)),
        # arrival in another offset: the clock is placed on the UTC arrival date
        (None, "01:00:00", datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2))),
         datetime(2026, 3, 2, 1, 0, tzinfo=UTC)),
    ],
)
def test_resolve_event_time_rules(event_time: object, hour: object, arrival: datetime, expected: datetime) -> None:
    resolved = R.resolve_event_time(event_time, hour, arrival)
    assert resolved == expected
    assert resolved is not None and resolved.utcoffset() == timedelta(0)


@pytest.mark.parametrize("hour", ["garbage", "", None, "24:00:00", "12:60:00", "12:00", "2026-03-01", "noon"])
def test_resolve_event_time_gives_none_without_a_usable_time(hour: object) -> None:
    assert R.resolve_event_time(None, hour, ARRIVAL) is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", R.REASON_EMPTY),
        (" \t\n", R.REASON_EMPTY),
        ("not json", R.REASON_NOT_AN_OBJECT),
        ("[1,2]", R.REASON_NOT_AN_OBJECT),
        ('"a string"', R.REASON_NOT_AN_OBJECT),
        ('{"a":', R.REASON_MALFORMED_JSON),
        ("{'hour': '11:00:00'}", R.REASON_MALFORMED_JSON),
        ('{"hour": "25:99:99", "signal": "12"}', R.REASON_NO_EVENT_TIME),
        ('{"signal": "12"}', R.REASON_NO_EVENT_TIME),
        ('{"event_time": "2026-03-01T12:02:01Z", "hour": "11:00:00"}', R.REASON_FUTURE_EVENT_TIME),
    ],
)
def test_parse_payload_quarantines_with_the_reason(payload: str, reason: str) -> None:
    record = R.parse_payload(payload, stream_seq="seq-7", arrival=ARRIVAL)
    assert record.quarantine_reason == reason
    assert record.record_key == "seq-7"


def test_event_time_within_tolerance_ahead_of_arrival_is_accepted() -> None:
    record = R.parse_payload('{"event_time": "2026-03-01T12:02:00Z"}', stream_seq="s", arrival=ARRIVAL)
    assert record.quarantine_reason is None
    assert record.event_time == datetime(2026, 3, 1, 12, 2, tzinfo=UTC)


def test_parse_payload_normalises_a_good_record() -> None:
    payload = (
        '{"hour": "11:00:00", "lat": "40.47", "long": -3.69, "signal": "12", "operator": " vodafone ",'
        ' "network": "ORANGE", "status": "0.0", "postal_code": 28047.0, "provider": "Network",'
        ' "satellites": "", "record_id": "r1"} trailing text is ignored'
    )
    record = R.parse_payload(payload, stream_seq="s", arrival=ARRIVAL)
    assert record.quarantine_reason is None
    assert record.event_time == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert (record.operator, record.network, record.status, record.postal_code, record.provider) == (
        "Vodafone", "Orange", "0", "28047", "network")
    assert (record.lat, record.long, record.signal, record.satellites) == (40.47, -3.69, 12.0, None)


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ('{"hour": "11:00:00", "record_id": "r-1"}', "r-1"),
        ('{"hour": "11:00:00", "record_id": "  r-1 "}', "r-1"),
        ('{"hour": "11:00:00"}', "seq-9"),
        ('{"hour": "11:00:00", "record_id": ""}', "seq-9"),
        ('{"hour": "11:00:00", "record_id": null}', "seq-9"),
        # quarantined records keep the stream's identity even with a record_id
        ('{"hour": "garbage", "record_id": "r-1"}', "seq-9"),
        ('{"event_time": "2026-03-01T13:00:00Z", "record_id": "r-1"}', "seq-9"),
    ],
)
def test_record_key_is_record_id_else_stream_seq(payload: str, key: str) -> None:
    assert R.parse_payload(payload, stream_seq="seq-9", arrival=ARRIVAL).record_key == key
