"""Settings: every SIGNAL_* environment variable, read once into a frozen Settings.

SETTINGS below is the one list; README.md documents each entry and tests/core/test_config.py keeps
the two in step.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from core import job_defaults
from core.errors import ConfigError
from core.job_defaults import MIN_WATERMARK_MINUTES
from core.records import FUTURE_TOLERANCE

# An Application Load Balancer's ARN; its region names the endpoint of the keys the ALB signs with.
ALB_ARN = re.compile(r"arn:aws[a-z-]*:elasticloadbalancing:(?P<region>[a-z0-9-]+):\d{12}:"
                     r"loadbalancer/app/[^/\s]+/[^/\s]+")


@dataclass(frozen=True)
class SettingSpec:
    """One environment variable: its name, the Settings field it fills, default and meaning."""

    env: str
    field: str
    default: str
    doc: str


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("SIGNAL_BACKEND", "backend", "local", "`local` (embedded: PySpark, DuckDB, files) or `aws`"),
    SettingSpec("SIGNAL_HOME", "home", ".signal_stream", "local data folder: stream, lake, catalog, job state"),
    SettingSpec("SIGNAL_STREAM_NAME", "stream_name", "mobile_coverage_logs", "stream the producer writes to"),
    SettingSpec("SIGNAL_DATABASE", "database", job_defaults.DATABASE, "catalog database of the tables"),
    SettingSpec("SIGNAL_JOB_NAME", "job_name", "etl_streaming_mobile_logs", "name of the streaming job"),
    SettingSpec("SIGNAL_TRIGGER_SECONDS", "trigger_seconds", job_defaults.TRIGGER_SECONDS,
                "micro-batch trigger interval of the job"),
    SettingSpec("SIGNAL_WATERMARK_MINUTES", "watermark_minutes", job_defaults.WATERMARK_MINUTES,
                "how late a record may arrive (at least 5)"),
    SettingSpec("SIGNAL_MAX_FILES_PER_BATCH", "max_files_per_batch", "200",
                "local stream: at most this many stream files (each <= 500 records) per micro-batch"),
    SettingSpec("SIGNAL_GRID_DEGREES", "grid_degrees", job_defaults.GRID_DEGREES,
                "cell size of coverage_grid in degrees"),
    SettingSpec("SIGNAL_COMPACT_SECONDS", "compact_seconds", "60",
                "local job: compact the lake's partitions that are due at most this often"),
    SettingSpec("SIGNAL_VACUUM_SECONDS", "vacuum_seconds", "600",
                "local job: vacuum the lake's replaced files at most this often"),
    SettingSpec("SIGNAL_RETENTION_SECONDS", "retention_seconds", "3600",
                "local job: replaced files stay readable this long (longer than the slowest query), then vacuum "
                "deletes them"),
    SettingSpec("SIGNAL_REFRESH_SECONDS", "refresh_seconds", "20", "console refresh interval and data cache TTL"),
    SettingSpec("SIGNAL_DEMO_MODE", "demo_mode", "", "allow replaying producer data from the console "
                "(default: on for the local backend, off for aws)"),
    SettingSpec("SIGNAL_DEMO_RATE", "demo_rate", "50", "records/s that `make run` replays the sample at"),
    SettingSpec("SIGNAL_SAMPLE_CSV", "sample_csv", "data/mobile_logs.csv", "the bundled sample replayed by demo mode"),
    SettingSpec("SIGNAL_UPLOAD_LIMIT_MB", "upload_limit_mb", "50", "largest CSV the demo page accepts"),
    SettingSpec("SIGNAL_STALE_AFTER_SECONDS", "stale_after_seconds", "60",
                "a pipeline hop older than this is amber"),
    SettingSpec("SIGNAL_DEAD_AFTER_SECONDS", "dead_after_seconds", "300",
                "a pipeline hop older than this is red; the wall display shows a stale banner"),
    SettingSpec("SIGNAL_ROTATE_SECONDS", "rotate_seconds", "30", "wall display: seconds per view"),
    SettingSpec("SIGNAL_MAP_TILES", "map_tiles", "carto", "base map of the coverage map, loaded by the viewer's "
                "browser: `carto` (CARTO basemaps), `osm` (OpenStreetMap), an XYZ tile URL with {z}, {x} and {y}, or "
                "`off` (lon/lat axes, nothing loaded from elsewhere: for screens with no internet)"),
    SettingSpec("SIGNAL_BIND_ADDRESS", "bind_address", "127.0.0.1",
                "address `make run` serves the console on; anything but loopback exposes it to the network, and "
                "then no one is an operator without a login"),
    SettingSpec("SIGNAL_AUTH", "auth", "local", "`local` (role from SIGNAL_ROLE) or `alb` (identity from the "
                "load balancer's signed OIDC header); OIDC via st.login when [auth] is in secrets.toml"),
    SettingSpec("SIGNAL_ROLE", "role", "", "role without a login: `operator` or `viewer` (default: operator on the "
                "local backend, viewer on aws); operator only on the local backend served on loopback"),
    SettingSpec("SIGNAL_OPERATORS", "operators", "", "comma-separated e-mails that get the operator role"),
    SettingSpec("SIGNAL_OPERATOR_GROUP", "operator_group", "", "OIDC group claim value that gets the operator role"),
    SettingSpec("SIGNAL_ALB_ARN", "alb_arn", "", "alb: ARN of the load balancer whose signed identity header is "
                "trusted (required with `alb`)"),
    SettingSpec("SIGNAL_OIDC_ISSUER", "oidc_issuer", "", "alb: when set, the identity token's issuer must be this "
                "OIDC issuer URL"),
    SettingSpec("SIGNAL_LAKE_BUCKET", "lake_bucket", "", "aws: the S3 bucket of the lake (required with aws)"),
    SettingSpec("SIGNAL_LAKE_PREFIX", "lake_prefix", "lake", "aws: the key prefix of the lake in the bucket"),
    SettingSpec("SIGNAL_ATHENA_WORKGROUP", "athena_workgroup", "signal_stream",
                "aws: Athena workgroup (enforces the result location and a bytes-scanned limit)"),
    SettingSpec("SIGNAL_ATHENA_TIMEOUT_SECONDS", "athena_timeout_seconds", "60", "aws: give up on a query after this"),
    SettingSpec("SIGNAL_ALERT_WEBHOOK", "alert_webhook", "", "http(s) URL that `alerts run` posts each firing and "
                "resolved alert to, as Slack-compatible JSON (`{\"text\": ...}`); empty: the alert log only"),
    SettingSpec("SIGNAL_ALERT_STALE_SECONDS", "alert_stale_seconds", "300",
                "alert when a hop of the freshness chain (last record sent, stream backlog, newest lake commit) is "
                "older than this, or the catalog or a starting job stays unready this long"),
    SettingSpec("SIGNAL_ALERT_QUARANTINE_PERCENT", "alert_quarantine_percent", "5",
                "alert when more than this percent of the job's input of the last 5 minutes was quarantined"),
    SettingSpec("SIGNAL_ALERT_LATE_PERCENT", "alert_late_percent", "5",
                "alert when more than this percent of the job's input of the last 5 minutes came too late "
                "(behind the watermark)"),
    SettingSpec("SIGNAL_ALERT_SIGNAL_DROP", "alert_signal_drop", "5",
                "alert when an operator's average signal (raw units) over the last hour is this much below the "
                "hour before"),
)

# The coverage map's named base maps (core.charts.MAP_STYLES) and `off`, the lon/lat view without one.
MAP_TILES = ("carto", "osm", "off")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(env: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{env}={raw!r} is not a boolean", next_step="use 1/0, true/false, yes/no or on/off")


def _parse_positive(env: str, raw: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{env}={raw!r} must be a finite number greater than 0")
    return value


def _parse_percent(env: str, raw: str) -> float:
    value: float = _parse_positive(env, raw, float)
    if value > 100:
        raise ConfigError(f"{env}={raw!r} is a percent: at most 100")
    return value


def tile_url_template(value: str) -> bool:
    """Return True when a value is an http(s) XYZ tile URL template (with {z}, {x} and {y})."""
    return value.startswith(("https://", "http://")) and all(part in value for part in ("{z}", "{x}", "{y}"))


def _parse_map_tiles(raw: str) -> str:
    if tile_url_template(raw):
        return raw
    if raw.lower() not in MAP_TILES:
        raise ConfigError(f"SIGNAL_MAP_TILES={raw!r} is not a base map",
                          next_step=f"use one of {', '.join(MAP_TILES)}, or a tile URL like "
                          "https://tiles.example.com/{z}/{x}/{y}.png")
    return raw.lower()


@dataclass(frozen=True)
class Settings:
    """Every setting of the project, read once from the environment."""

    backend: str
    home: Path
    stream_name: str
    database: str
    job_name: str
    trigger_seconds: float
    watermark_minutes: int
    max_files_per_batch: int
    grid_degrees: float
    compact_seconds: float
    vacuum_seconds: float
    retention_seconds: int
    refresh_seconds: int
    demo_mode: bool
    demo_rate: float
    sample_csv: Path
    upload_limit_mb: float
    stale_after_seconds: float
    dead_after_seconds: float
    rotate_seconds: float
    map_tiles: str
    bind_address: str
    auth: str
    role: str
    operators: tuple[str, ...]
    operator_group: str
    alb_arn: str
    oidc_issuer: str
    lake_bucket: str
    lake_prefix: str
    athena_workgroup: str
    athena_timeout_seconds: float
    alert_webhook: str
    alert_stale_seconds: float
    alert_quarantine_percent: float
    alert_late_percent: float
    alert_signal_drop: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Return settings from an environment mapping; unknown SIGNAL_* names are an error."""
        known = {spec.env for spec in SETTINGS}
        unknown = sorted(k for k in environ if k.startswith("SIGNAL_") and k not in known and k != "SIGNAL_DEBUG")
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]}", next_step="see the Settings table in README.md")
        raw = {spec.field: environ.get(spec.env, spec.default).strip() for spec in SETTINGS}

        backend = raw["backend"].lower()
        if backend not in ("local", "aws"):
            raise ConfigError(f"SIGNAL_BACKEND={raw['backend']!r} is not one of local, aws")
        for name in ("stream_name", "database", "job_name"):
            if not raw[name]:
                raise ConfigError(f"{_env_of(name)} must not be empty")
        watermark_minutes = _parse_positive("SIGNAL_WATERMARK_MINUTES", raw["watermark_minutes"], int)
        if watermark_minutes < MIN_WATERMARK_MINUTES:
            raise ConfigError(f"SIGNAL_WATERMARK_MINUTES={watermark_minutes} is too small",
                              next_step=f"use at least {MIN_WATERMARK_MINUTES}: records may run up to "
                              f"{FUTURE_TOLERANCE.seconds // 60} min ahead of their arrival")
        demo_raw = raw["demo_mode"]
        demo_mode = _parse_bool("SIGNAL_DEMO_MODE", demo_raw) if demo_raw else backend == "local"
        auth = raw["auth"].lower()
        if auth not in ("local", "alb"):
            raise ConfigError(f"SIGNAL_AUTH={raw['auth']!r} is not one of local, alb")
        if auth == "alb" and not ALB_ARN.fullmatch(raw["alb_arn"]):
            raise ConfigError(f"SIGNAL_ALB_ARN={raw['alb_arn']!r} is not an Application Load Balancer ARN",
                              next_step="SIGNAL_AUTH=alb trusts only the identity header this load balancer signs; "
                              "set SIGNAL_ALB_ARN to its ARN")
        bind_address = raw["bind_address"]
        if not bind_address or any(c.isspace() for c in bind_address):
            raise ConfigError(f"SIGNAL_BIND_ADDRESS={bind_address!r} is not an address",
                              next_step="use 127.0.0.1 (this machine only) or the address to expose it on")
        role = raw["role"].lower() or ("operator" if backend == "local" else "viewer")
        if role not in ("operator", "viewer"):
            raise ConfigError(f"SIGNAL_ROLE={raw['role']!r} is not one of operator, viewer")
        stale = _parse_positive("SIGNAL_STALE_AFTER_SECONDS", raw["stale_after_seconds"], float)
        dead = _parse_positive("SIGNAL_DEAD_AFTER_SECONDS", raw["dead_after_seconds"], float)
        if dead <= stale:
            raise ConfigError(f"SIGNAL_DEAD_AFTER_SECONDS ({dead:g}) must be greater than "
                              f"SIGNAL_STALE_AFTER_SECONDS ({stale:g})")
        if backend == "aws" and not raw["lake_bucket"]:
            raise ConfigError("SIGNAL_LAKE_BUCKET is required with SIGNAL_BACKEND=aws",
                              next_step="set it to the bucket the CloudFormation stack created")
        webhook = raw["alert_webhook"]
        parsed = urllib.parse.urlsplit(webhook)
        if webhook and (parsed.scheme not in ("http", "https") or not parsed.hostname):
            # The URL is a secret (whoever has it can post to the channel): never echoed back.
            raise ConfigError("SIGNAL_ALERT_WEBHOOK is not an http(s) URL",
                              next_step="set it to the incoming webhook's URL, e.g. https://hooks.example.com/...")
        quarantine_percent, late_percent = (
            _parse_percent(name, raw[field]) for name, field in (
                ("SIGNAL_ALERT_QUARANTINE_PERCENT", "alert_quarantine_percent"),
                ("SIGNAL_ALERT_LATE_PERCENT", "alert_late_percent")))
        return cls(
            backend=backend,
            home=Path(raw["home"] or ".signal_stream").expanduser(),
            stream_name=raw["stream_name"],
            database=raw["database"],
            job_name=raw["job_name"],
            trigger_seconds=_parse_positive("SIGNAL_TRIGGER_SECONDS", raw["trigger_seconds"], float),
            watermark_minutes=watermark_minutes,
            max_files_per_batch=_parse_positive("SIGNAL_MAX_FILES_PER_BATCH", raw["max_files_per_batch"], int),
            grid_degrees=_parse_positive("SIGNAL_GRID_DEGREES", raw["grid_degrees"], float),
            compact_seconds=_parse_positive("SIGNAL_COMPACT_SECONDS", raw["compact_seconds"], float),
            vacuum_seconds=_parse_positive("SIGNAL_VACUUM_SECONDS", raw["vacuum_seconds"], float),
            retention_seconds=_parse_positive("SIGNAL_RETENTION_SECONDS", raw["retention_seconds"], int),
            refresh_seconds=_parse_positive("SIGNAL_REFRESH_SECONDS", raw["refresh_seconds"], int),
            demo_mode=demo_mode,
            demo_rate=_parse_positive("SIGNAL_DEMO_RATE", raw["demo_rate"], float),
            sample_csv=Path(raw["sample_csv"]),
            upload_limit_mb=_parse_positive("SIGNAL_UPLOAD_LIMIT_MB", raw["upload_limit_mb"], float),
            stale_after_seconds=stale,
            dead_after_seconds=dead,
            rotate_seconds=_parse_positive("SIGNAL_ROTATE_SECONDS", raw["rotate_seconds"], float),
            map_tiles=_parse_map_tiles(raw["map_tiles"]),
            bind_address=bind_address,
            auth=auth,
            role=role,
            operators=tuple(e.strip().lower() for e in raw["operators"].split(",") if e.strip()),
            operator_group=raw["operator_group"],
            alb_arn=raw["alb_arn"],
            oidc_issuer=raw["oidc_issuer"],
            lake_bucket=raw["lake_bucket"],
            lake_prefix=raw["lake_prefix"].strip("/"),
            athena_workgroup=raw["athena_workgroup"],
            athena_timeout_seconds=_parse_positive("SIGNAL_ATHENA_TIMEOUT_SECONDS", raw["athena_timeout_seconds"],
                                                   float),
            alert_webhook=webhook,
            alert_stale_seconds=_parse_positive("SIGNAL_ALERT_STALE_SECONDS", raw["alert_stale_seconds"], float),
            alert_quarantine_percent=quarantine_percent,
            alert_late_percent=late_percent,
            alert_signal_drop=_parse_positive("SIGNAL_ALERT_SIGNAL_DROP", raw["alert_signal_drop"], float),
        )

    @property
    def alb_region(self) -> str:
        """Return the AWS region of SIGNAL_ALB_ARN ("" when it is not set)."""
        match = ALB_ARN.fullmatch(self.alb_arn)
        return match["region"] if match else ""

    def to_env(self) -> dict[str, str]:
        """Return these settings as environment variables (for child processes)."""
        env: dict[str, str] = {}
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for spec in SETTINGS:
            value = values[spec.field]
            if isinstance(value, bool):
                env[spec.env] = "1" if value else "0"
            elif isinstance(value, tuple):
                env[spec.env] = ",".join(value)
            else:
                env[spec.env] = str(value)
        return env


def _env_of(field_name: str) -> str:
    return next(spec.env for spec in SETTINGS if spec.field == field_name)
