"""What a console URL names: the live page's range and filters, the wall's views and range.

A view is its URL, so a link reproduces what its sender saw. Pages read and write the URL through
ui.share; the parsing is here, plain: URL parameters in, a view and a notice per value not understood
out (that value falls back to its default, never an exception); a view back to parameters, its
defaults left out so an untouched page keeps a clean URL.

    /live_aggregations?range=6h&operator=Movistar&operator=Yoigo&provider=gps
    /live_aggregations?range=custom&from=2026-12-01T08:00Z&to=2026-12-01T20:00Z
    /wall_display?kiosk=1&views=signal,coverage&range=6h
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from core.errors import InputError
from core.queries import parse_time

# Parameters as st.query_params holds them: every value of a key, in order (a key may repeat).
Params = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class Preset:
    """A preset event-time range: its URL token, the label the page shows, its length."""

    token: str
    label: str
    length: timedelta


PRESETS: tuple[Preset, ...] = (
    Preset("15m", "15 min", timedelta(minutes=15)),
    Preset("1h", "1 h", timedelta(hours=1)),
    Preset("6h", "6 h", timedelta(hours=6)),
    Preset("24h", "24 h", timedelta(hours=24)),
)
CUSTOM = "Custom"
CUSTOM_TOKEN = "custom"
DEFAULT_RANGE = "1 h"
LIVE_KEYS = ("range", "from", "to", "operator", "provider")
WALL_KEYS = ("views", "range")


@dataclass(frozen=True)
class LiveView:
    """What the live page shows: a preset's label or CUSTOM (then `start` and `end`, UTC), and its filters."""

    range: str = DEFAULT_RANGE
    start: datetime | None = None
    end: datetime | None = None
    operators: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()


@dataclass(frozen=True)
class WallView:
    """What the wall rotates through (view names, in order) and the range of its charts (a preset's label)."""

    views: tuple[str, ...]
    range: str = DEFAULT_RANGE


def default_custom(today: date) -> tuple[datetime, datetime]:
    """Return the custom range the page offers first: today, midnight to midnight (UTC)."""
    start = datetime.combine(today, datetime.min.time(), UTC)
    return start, start + timedelta(days=1)


def _last(params: Params, key: str) -> str | None:
    # A single-valued key given twice counts once, as st.query_params reads it: the last value.
    values = [value.strip() for value in params.get(key, ()) if value.strip()]
    return values[-1] if values else None


def _preset(token: str) -> Preset | None:
    wanted = token.lower().replace(" ", "")
    return next((p for p in PRESETS if wanted in (p.token, p.label.replace(" ", ""))), None)


def _tokens(*, custom: bool) -> str:
    return ", ".join([p.token for p in PRESETS] + ([CUSTOM_TOKEN] if custom else []))


def _range(params: Params, notices: list[str], *, custom: bool) -> str:
    token = _last(params, "range")
    if token is None:
        return DEFAULT_RANGE
    if custom and token.lower() == CUSTOM_TOKEN:
        return CUSTOM
    preset = _preset(token)
    if preset is None:
        notices.append(f"The link's range {token!r} is not one of {_tokens(custom=custom)}: showing {DEFAULT_RANGE}.")
        return DEFAULT_RANGE
    return preset.label


def _time(params: Params, key: str, notices: list[str]) -> datetime | None:
    text = _last(params, key)
    if text is None:
        return None
    try:
        moment = parse_time(text, key)
    except InputError:
        notices.append(f"The link's {key} {text!r} is not a time like 2026-12-01T08:00Z (UTC).")
        return None
    return moment.replace(second=0, microsecond=0)  # the page's time inputs work in whole minutes


def _chosen(params: Params, key: str, options: Sequence[str], notices: list[str]) -> tuple[str, ...]:
    known = set(options)
    chosen = list(dict.fromkeys(value.strip() for value in params.get(key, ()) if value.strip()))
    unknown = [value for value in chosen if value not in known]
    if unknown:
        notices.append(f"The link's {key} {', '.join(map(repr, unknown))}: none in the last 24 h, left out.")
    return tuple(value for value in chosen if value in known)


def parse_live(params: Params, *, operators: Sequence[str], providers: Sequence[str],
               custom: tuple[datetime, datetime]) -> tuple[LiveView, list[str]]:
    """Return the live page's view a URL names, and a notice per value left at its default.

    Operators and providers must be among `operators` and `providers` (the filters' options); `custom` is the
    custom range a link with range=custom but without a usable from or to gets.
    """
    notices: list[str] = []
    label = _range(params, notices, custom=True)
    start = end = None
    if label == CUSTOM:
        start, end = _time(params, "from", notices) or custom[0], _time(params, "to", notices) or custom[1]
        if end <= start:
            notices.append(f"The link's to ({end:%Y-%m-%d %H:%M}) is not after its from ({start:%Y-%m-%d %H:%M}): "
                           f"showing {custom[0]:%Y-%m-%d %H:%M} to {custom[1]:%Y-%m-%d %H:%M} UTC.")
            start, end = custom
    elif _last(params, "from") or _last(params, "to"):
        notices.append(f"The link's from and to apply to range=custom only: showing the last {label}.")
    view = LiveView(label, start, end, _chosen(params, "operator", operators, notices),
                    _chosen(params, "provider", providers, notices))
    return view, notices


def _url_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def live_params(view: LiveView) -> dict[str, list[str]]:
    """Return the URL parameters of a live page's view, leaving out what is at its default."""
    params: dict[str, list[str]] = {}
    if view.range == CUSTOM and view.start is not None and view.end is not None:
        params |= {"range": [CUSTOM_TOKEN], "from": [_url_time(view.start)], "to": [_url_time(view.end)]}
    elif view.range != DEFAULT_RANGE:
        params["range"] = [next(p.token for p in PRESETS if p.label == view.range)]
    if view.operators:
        params["operator"] = list(view.operators)
    if view.providers:
        params["provider"] = list(view.providers)
    return params


def parse_wall(params: Params, names: Sequence[str]) -> tuple[WallView, list[str]]:
    """Return the wall's views (`views=a,b`: some of `names`, in that order; all by default) and its charts' range
    (a preset: the wall follows the clock), and a notice per value left at its default."""
    notices: list[str] = []
    label = _range(params, notices, custom=False)
    asked = [name.strip().lower() for value in params.get("views", ()) for name in value.split(",") if name.strip()]
    unknown = [name for name in dict.fromkeys(asked) if name not in names]
    if unknown:
        notices.append(f"The link's views {', '.join(map(repr, unknown))}: unknown, the wall's are {', '.join(names)}.")
    views = tuple(dict.fromkeys(name for name in asked if name in names)) or tuple(names)
    return WallView(views, label), notices
