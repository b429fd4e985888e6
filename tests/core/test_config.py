"""Settings: defaults, validation of every SIGNAL_* value, immutability and the to_env round trip."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from core.config import SETTINGS, Settings
from core.errors import ConfigError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.backend == "local"
    assert settings.trigger_seconds == 20
    assert settings.watermark_minutes == 10
    assert settings.demo_mode is True
    assert settings.home == Path(".signal_stream")
    assert settings.stream_name == "mobile_coverage_logs"
    assert settings.sample_csv == Path("data/mobile_logs.csv")


def test_every_setting_has_a_default_that_parses() -> None:
    defaults = {spec.env: spec.default for spec in SETTINGS}
    assert Settings.from_env(defaults) == Settings.from_env({})


def test_demo_mode_defaults_off_on_aws() -> None:
    assert Settings.from_env({"SIGNAL_BACKEND": "aws", "SIGNAL_LAKE_BUCKET": "lake-bucket"}).demo_mode is False
    assert Settings.from_env({"SIGNAL_BACKEND": " AWS ", "SIGNAL_LAKE_BUCKET": "lake-bucket"}).backend == "aws"


@pytest.mark.parametrize(
    ("backend", "raw", "expected"),
    [("aws", "1", True), ("aws", "yes", True), ("local", "off", False), ("local", " FALSE ", False)],
)
def test_demo_mode_can_be_set_either_way(backend: str, raw: str, expected: bool) -> None:
    settings = Settings.from_env({"SIGNAL_BACKEND": backend, "SIGNAL_DEMO_MODE": raw, "SIGNAL_LAKE_BUCKET": "b"})
    assert settings.demo_mode is expected


def test_conftest_points_home_at_the_test_folder(tmp_path: Path) -> None:
    assert not any(name.startswith("AWS_") for name in os.environ)
    settings = Settings.from_env(os.environ)
    assert settings.home.is_relative_to(tmp_path)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIGNAL_BACKEND": "gcp"}, "SIGNAL_BACKEND"),
        ({"SIGNAL_TRIGGER_SECONDS": "abc"}, "not a number"),
        ({"SIGNAL_TRIGGER_SECONDS": "0"}, "greater than 0"),
        ({"SIGNAL_TRIGGER_SECONDS": "-5"}, "greater than 0"),
        ({"SIGNAL_TRIGGER_SECONDS": ""}, "SIGNAL_TRIGGER_SECONDS"),
        ({"SIGNAL_WATERMARK_MINUTES": "2.5"}, "SIGNAL_WATERMARK_MINUTES"),
        ({"SIGNAL_WATERMARK_MINUTES": "3"}, "at least 5"),
        ({"SIGNAL_GRID_DEGREES": "0"}, "SIGNAL_GRID_DEGREES"),
        ({"SIGNAL_DEMO_MODE": "maybe"}, "not a boolean"),
        ({"SIGNAL_STREAM_NAME": "  "}, "must not be empty"),
        ({"SIGNAL_FOO": "1"}, "unknown setting SIGNAL_FOO"),
        ({"SIGNAL_BACKEND": "aws"}, "SIGNAL_LAKE_BUCKET is required"),
        ({"SIGNAL_AUTH": "alb"}, "SIGNAL_ALB_ARN"),
        ({"SIGNAL_AUTH": "alb", "SIGNAL_ALB_ARN": "arn:aws:iam::123456789012:role/x"}, "not an Application Load"),
        ({"SIGNAL_AUTH": "alb", "SIGNAL_ALB_ARN": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:"
          "loadbalancer/net/nlb/0123"}, "not an Application Load"),
        ({"SIGNAL_BIND_ADDRESS": " "}, "SIGNAL_BIND_ADDRESS"),
        ({"SIGNAL_BIND_ADDRESS": "0.0.0.0 8501"}, "SIGNAL_BIND_ADDRESS"),
    ],
)
def test_bad_values_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


ALB_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/signal-stream/50dc6c495c0c9188"


def test_the_console_binds_to_loopback_by_default() -> None:
    assert Settings.from_env({}).bind_address == "127.0.0.1"
    assert Settings.from_env({"SIGNAL_BIND_ADDRESS": "0.0.0.0"}).bind_address == "0.0.0.0"


def test_alb_auth_needs_the_load_balancer_arn_and_takes_its_region() -> None:
    settings = Settings.from_env({"SIGNAL_AUTH": "alb", "SIGNAL_ALB_ARN": ALB_ARN,
                                  "SIGNAL_OIDC_ISSUER": "https://idp.example.com"})
    assert (settings.alb_arn, settings.alb_region, settings.oidc_issuer) == (
        ALB_ARN, "eu-west-1", "https://idp.example.com")
    assert Settings.from_env({}).alb_region == ""


def test_signal_debug_and_other_variables_are_not_settings_errors() -> None:
    assert Settings.from_env({"SIGNAL_DEBUG": "1", "PATH": "/usr/bin", "AWS_REGION": "eu-west-1"}).backend == "local"


def test_nan_is_not_a_positive_number() -> None:
    with pytest.raises(ConfigError):
        Settings.from_env({"SIGNAL_TRIGGER_SECONDS": "nan"})


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.backend = "aws"  # type: ignore[misc]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"SIGNAL_BACKEND": "aws", "SIGNAL_LAKE_BUCKET": "lake-bucket"},
        {"SIGNAL_BACKEND": "aws", "SIGNAL_LAKE_BUCKET": "lake-bucket", "SIGNAL_DEMO_MODE": "on",
         "SIGNAL_TRIGGER_SECONDS": "2.5",
         "SIGNAL_WATERMARK_MINUTES": "7", "SIGNAL_GRID_DEGREES": "0.005", "SIGNAL_HOME": "/var/lib/signal",
         "SIGNAL_STREAM_NAME": "other_stream", "SIGNAL_DEMO_RATE": "12.5", "SIGNAL_SAMPLE_CSV": "x/y.csv"},
        {"SIGNAL_AUTH": "alb", "SIGNAL_ALB_ARN": "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
         "loadbalancer/app/console/0123456789abcdef", "SIGNAL_OIDC_ISSUER": "https://idp.example.com",
         "SIGNAL_BIND_ADDRESS": "0.0.0.0"},
    ],
)
def test_to_env_round_trips(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)
    exported = settings.to_env()
    assert set(exported) == {spec.env for spec in SETTINGS}
    assert all(isinstance(value, str) for value in exported.values())
    assert Settings.from_env(exported) == settings
