"""Who is using the console: an OIDC login, the load balancer's identity header, or the local setting."""

from __future__ import annotations

import base64
import json

from core.auth import OPERATOR, VIEWER, resolve_user
from core.config import Settings


def alb_token(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'ES256'})}.{part(claims)}.signature"


def test_local_default_is_operator_and_aws_default_is_viewer() -> None:
    assert resolve_user(Settings.from_env({})).role == OPERATOR
    aws = Settings.from_env({"SIGNAL_BACKEND": "aws", "SIGNAL_LAKE_BUCKET": "lake-bucket"})
    assert resolve_user(aws).role == VIEWER
    assert resolve_user(Settings.from_env({"SIGNAL_ROLE": "viewer"})).role == VIEWER


def test_oidc_operator_by_email_or_group() -> None:
    settings = Settings.from_env({"SIGNAL_OPERATORS": "Ana@Example.com, ops@example.com",
                                  "SIGNAL_OPERATOR_GROUP": "noc"})
    ana = resolve_user(settings, oidc_user={"is_logged_in": True, "email": "ana@example.com"})
    assert (ana.name, ana.role) == ("ana@example.com", OPERATOR)
    group = resolve_user(settings, oidc_user={"is_logged_in": True, "email": "x@example.com", "groups": ["noc"]})
    assert group.role == OPERATOR
    other = resolve_user(settings, oidc_user={"is_logged_in": True, "email": "bob@example.com"})
    assert other.role == VIEWER


def test_alb_identity_from_the_oidc_data_header() -> None:
    settings = Settings.from_env({"SIGNAL_AUTH": "alb", "SIGNAL_OPERATORS": "ana@example.com"})
    ana = resolve_user(settings, headers={"X-Amzn-Oidc-Data": alb_token({"email": "ana@example.com"})})
    assert (ana.name, ana.role) == ("ana@example.com", OPERATOR)
    bob = resolve_user(settings, headers={"x-amzn-oidc-data": alb_token({"email": "bob@example.com"})})
    assert bob.role == VIEWER


def test_alb_without_or_with_a_broken_header_is_an_anonymous_viewer() -> None:
    settings = Settings.from_env({"SIGNAL_AUTH": "alb", "SIGNAL_ROLE": "operator"})
    assert resolve_user(settings, headers={}).role == VIEWER
    assert resolve_user(settings, headers={"x-amzn-oidc-data": "not-a-jwt"}).name == "anonymous"
