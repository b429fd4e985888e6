"""Who is using the console: an OIDC login, the load balancer's verified identity header, or the local setting.

The ALB tests sign tokens with locally generated EC P-256 keys and inject the key fetcher: no network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from core import auth
from core.auth import OPERATOR, VIEWER, User, alb_key_url, is_loopback, resolve_user
from core.config import Settings

ALB_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/signal-stream/50dc6c495c0c9188"
OTHER_ARN = "arn:aws:elasticloadbalancing:eu-west-1:210987654321:loadbalancer/app/attacker/0123456789abcdef"
ISSUER = "https://idp.example.com"
KID = "8e6b7a5c-1d2e-4f3a-9b8c-7d6e5f4a3b2c"
LOOPBACK = "127.0.0.1"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


ALB_KEY = new_key()


def b64(data: bytes) -> str:
    # The ALB keeps base64 padding in its segments; verification must accept that.
    return base64.urlsafe_b64encode(data).decode()


def alb_token(claims: dict[str, Any] | None = None, *, key: ec.EllipticCurvePrivateKey = ALB_KEY,
              **header: Any) -> str:
    """Return a token shaped like the ALB's x-amzn-oidc-data, signed with `key` (ES256)."""
    now = int(time.time())
    head = {"alg": "ES256", "kid": KID, "signer": ALB_ARN, "iss": ISSUER, "client": "console", "exp": now + 120,
            **header}
    body = {"sub": "1234", "email": "ana@example.com", "email_verified": "true", "exp": now + 120, "iss": ISSUER,
            **(claims or {})}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}"
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


class Keys:
    """An injected key fetcher: kid -> PEM, counting what it was asked."""

    def __init__(self, keys: dict[str, str] | None = None) -> None:
        self.keys = keys if keys is not None else {KID: pem(ALB_KEY)}
        self.asked: list[str] = []

    def __call__(self, kid: str) -> str:
        self.asked.append(kid)
        try:
            return self.keys[kid]
        except KeyError:
            raise OSError(f"HTTP 404 for {kid}") from None


def alb_settings(**extra: str) -> Settings:
    return Settings.from_env({"SIGNAL_AUTH": "alb", "SIGNAL_ALB_ARN": ALB_ARN, "SIGNAL_OPERATORS": "ana@example.com",
                              **extra})


def alb_user(token: str, settings: Settings | None = None, keys: Callable[[str], str] | None = None) -> User:
    return resolve_user(settings or alb_settings(), headers={"X-Amzn-Oidc-Data": token},
                        fetch_alb_key=keys or Keys())


# --- without a login: operator only on the local backend bound to loopback --------------------------


def test_local_default_is_operator_only_when_bound_to_loopback() -> None:
    local = Settings.from_env({})
    for address in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert resolve_user(local, bind_address=address).role == OPERATOR, address
    for address in (None, "", "0.0.0.0", "::", "192.168.1.20", "console.example.com", "unix:///tmp/console.sock"):
        assert resolve_user(local, bind_address=address).role == VIEWER, address


def test_an_explicit_operator_role_is_not_given_to_an_exposed_console() -> None:
    settings = Settings.from_env({"SIGNAL_ROLE": "operator"})
    assert resolve_user(settings, bind_address="0.0.0.0").role == VIEWER
    assert resolve_user(settings, bind_address=LOOPBACK).role == OPERATOR


def test_the_image_run_with_no_settings_on_every_interface_is_a_viewer() -> None:
    # The Dockerfile's CMD serves on 0.0.0.0; a `docker run` with no SIGNAL_* settings is the local backend.
    assert resolve_user(Settings.from_env({}), bind_address="0.0.0.0").role == VIEWER


def test_aws_default_is_viewer_even_on_loopback() -> None:
    aws = Settings.from_env({"SIGNAL_BACKEND": "aws", "SIGNAL_LAKE_BUCKET": "lake-bucket"})
    assert resolve_user(aws, bind_address=LOOPBACK).role == VIEWER
    aws_operator = Settings.from_env({"SIGNAL_BACKEND": "aws", "SIGNAL_LAKE_BUCKET": "b", "SIGNAL_ROLE": "operator"})
    assert resolve_user(aws_operator, bind_address=LOOPBACK).role == VIEWER
    assert resolve_user(Settings.from_env({"SIGNAL_ROLE": "viewer"}), bind_address=LOOPBACK).role == VIEWER


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback(" ::1 ") and is_loopback("LOCALHOST")
    assert not is_loopback("0.0.0.0") and not is_loopback(None) and not is_loopback("10.0.0.1")


# --- OIDC login ---------------------------------------------------------------------------------------


def test_oidc_operator_by_email_or_group() -> None:
    settings = Settings.from_env({"SIGNAL_OPERATORS": "Ana@Example.com, ops@example.com",
                                  "SIGNAL_OPERATOR_GROUP": "noc"})
    ana = resolve_user(settings, oidc_user={"is_logged_in": True, "email": "ana@example.com"})
    assert (ana.name, ana.role) == ("ana@example.com", OPERATOR)
    group = resolve_user(settings, oidc_user={"is_logged_in": True, "email": "x@example.com", "groups": ["noc"]})
    assert group.role == OPERATOR
    other = resolve_user(settings, oidc_user={"is_logged_in": True, "email": "bob@example.com"})
    assert other.role == VIEWER


# --- the ALB's signed identity header -----------------------------------------------------------------


def test_a_valid_alb_token_identifies_the_user() -> None:
    keys = Keys()
    ana = alb_user(alb_token(), keys=keys)
    assert (ana.name, ana.role) == ("ana@example.com", OPERATOR)
    assert keys.asked == [KID]
    bob = alb_user(alb_token({"email": "bob@example.com", "email_verified": True}))
    assert (bob.name, bob.role) == ("bob@example.com", VIEWER)
    noc = alb_user(alb_token({"email": "x@example.com", "groups": ["noc"]}),
                   alb_settings(SIGNAL_OPERATOR_GROUP="noc"))
    assert noc.role == OPERATOR


def test_a_valid_alb_token_passes_the_configured_issuer() -> None:
    assert alb_user(alb_token(), alb_settings(SIGNAL_OIDC_ISSUER=ISSUER)).role == OPERATOR


def unsigned(claims: dict[str, Any]) -> str:
    head = {"alg": "none", "kid": KID, "signer": ALB_ARN, "exp": int(time.time()) + 120}
    body = {"email": "ana@example.com", "email_verified": "true", **claims}
    return f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}."


FORGERIES: dict[str, Callable[[], str]] = {
    "unsigned (alg none)": lambda: unsigned({}),
    "unsigned, ES256 claimed": lambda: alb_token().rsplit(".", 1)[0] + ".",
    "the old unverified shape": lambda: _old_shape(),
    "signed with another key": lambda: alb_token(key=new_key()),
    "signed by another load balancer": lambda: alb_token(signer=OTHER_ARN),
    "no signer": lambda: alb_token(signer=None),
    "expired (header)": lambda: alb_token(exp=int(time.time()) - 600),
    "expired (claims)": lambda: alb_token({"exp": int(time.time()) - 600}),
    "email not verified": lambda: alb_token({"email_verified": "false"}),
    "email verification missing": lambda: alb_token({"email_verified": None}),
    "a claim changed after signing": lambda: _tampered(),
    "HS256 keyed with the public key": lambda: _hs256_with_public_key(),
    "a key id that leaves the key URL": lambda: alb_token(kid="../../attacker.example.com/key"),
    "an unknown key id": lambda: alb_token(kid="0000"),
    "not a token": lambda: "not-a-jwt",
}


def _old_shape() -> str:
    # What the console used to accept: any base64 claims, any "signature".
    part = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")  # noqa: E731
    return f"{part({'alg': 'ES256'})}.{part({'email': 'ana@example.com', 'email_verified': True})}.signature"


def _hs256_with_public_key() -> str:
    # Algorithm confusion: an HMAC keyed with the (public) PEM the verifier fetches.
    head = {"alg": "HS256", "kid": KID, "signer": ALB_ARN, "exp": int(time.time()) + 120}
    body = {"email": "ana@example.com", "email_verified": True}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}"
    signature = hmac.new(pem(ALB_KEY).encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _tampered() -> str:
    head, body, signature = alb_token({"email": "bob@example.com"}).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body))
    forged = b64(json.dumps({**claims, "email": "ana@example.com"}).encode())
    return f"{head}.{forged}.{signature}"


@pytest.mark.parametrize("forgery", FORGERIES, ids=list(FORGERIES))
def test_a_forged_alb_token_is_an_anonymous_viewer_and_is_logged(forgery: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    token = FORGERIES[forgery]()
    user = alb_user(token)
    assert (user.name, user.role) == ("anonymous", VIEWER)
    assert "rejected the load balancer identity header" in caplog.text
    assert token not in caplog.text  # the token is a credential: never logged


def test_a_wrong_issuer_is_an_anonymous_viewer(caplog: pytest.LogCaptureFixture) -> None:
    settings = alb_settings(SIGNAL_OIDC_ISSUER=ISSUER)
    assert alb_user(alb_token(iss="https://evil.example.com"), settings).name == "anonymous"
    assert alb_user(alb_token({"iss": "https://evil.example.com"}), settings).name == "anonymous"
    assert "InvalidIssuerError" in caplog.text


def test_the_key_is_not_fetched_for_another_signer_or_a_bad_key_id() -> None:
    keys = Keys()
    alb_user(alb_token(signer=OTHER_ARN), keys=keys)
    alb_user(alb_token(kid="../x"), keys=keys)
    alb_user(unsigned({}), keys=keys)
    assert keys.asked == []


def test_a_key_that_cannot_be_fetched_is_an_anonymous_viewer(caplog: pytest.LogCaptureFixture) -> None:
    assert alb_user(alb_token(), keys=Keys({})).name == "anonymous"
    assert "OSError" in caplog.text


def test_alb_without_the_header_is_an_anonymous_viewer() -> None:
    settings = alb_settings(SIGNAL_ROLE="operator")
    assert resolve_user(settings, headers={}, bind_address=LOOPBACK) == User("anonymous", VIEWER)


def test_the_default_key_fetcher_reads_the_region_endpoint_once_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []

    class Response:
        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self, limit: int) -> bytes:
            return pem(ALB_KEY).encode()

    def urlopen(url: str, timeout: float) -> Response:
        opened.append(url)
        return Response()

    monkeypatch.setattr(auth.urllib.request, "urlopen", urlopen)
    auth._fetch_alb_key.cache_clear()
    try:
        for _ in range(3):
            ana = resolve_user(alb_settings(), headers={"x-amzn-oidc-data": alb_token()})
            assert ana.role == OPERATOR
        assert opened == [f"https://public-keys.auth.elb.eu-west-1.amazonaws.com/{KID}"]
        assert alb_key_url("eu-west-1", KID) == opened[0]
        assert auth._fetch_alb_key.cache_info().maxsize is not None  # bounded
    finally:
        auth._fetch_alb_key.cache_clear()
