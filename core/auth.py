"""Who is using the console, with which role, and the server-side check every mutating action goes through.

Identity, strongest first: an OIDC login (st.login); the identity header an authenticating ALB signs
(SIGNAL_AUTH=alb), verified here; otherwise nobody is identified and the role is the local setting,
which grants operator only on the local backend served on loopback (the person at the machine).

`perform` checks a `User` against the action and audits it fail-closed: `requested` is written before
the action runs (no entry, no action), then `succeeded` or `failed`; a role refusal is `refused`.
"""

from __future__ import annotations

import getpass
import ipaddress
import logging
import re
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import jwt

from core.audit import AuditEntry, Outcome
from core.config import Settings
from core.errors import PermissionDeniedError, SignalStreamError

VIEWER = "viewer"
OPERATOR = "operator"
ROLES = (VIEWER, OPERATOR)

T = TypeVar("T")

log = logging.getLogger(__name__)

# What an audit log's append raises when it cannot write: the local file's OSError, the S3 log's translated
# errors.
_AUDIT_WRITE_ERRORS = (OSError, SignalStreamError)


class AuditLog(Protocol):
    """Where attempted actions are recorded."""

    def append(self, entry: AuditEntry) -> None: ...


@dataclass(frozen=True)
class User:
    """The person using the console and the role they act with."""

    name: str
    role: str

    @property
    def is_operator(self) -> bool:
        """Return True when the user may run operator actions."""
        return self.role == OPERATOR


ANONYMOUS = User("anonymous", VIEWER)

# --- the load balancer's signed identity header -------------------------------------------------

ALB_CLAIMS_HEADER = "x-amzn-oidc-data"
ALB_ALGORITHM = "ES256"  # the only algorithm an ALB signs its identity header with
ALB_LEEWAY_SECONDS = 30  # clock skew between the load balancer and this task
ALB_KEY_TIMEOUT_SECONDS = 5
# The key id goes into the key URL: anything but the ALB's id alphabet could point the fetch elsewhere.
_KID = re.compile(r"[A-Za-z0-9-]{1,128}")

KeyFetcher = Callable[[str], str]
"""Return the PEM public key of a key id (kid) the ALB signed with."""


def alb_key_url(region: str, kid: str) -> str:
    """Return where AWS publishes the ALB signing key `kid` of `region`."""
    return f"https://public-keys.auth.elb.{region}.amazonaws.com/{kid}"


@lru_cache(maxsize=32)
def _fetch_alb_key(region: str, kid: str) -> str:
    # A key id names one key for good, so a fetched key is kept; a failed fetch raises and is not cached.
    # The cache is bounded: forged key ids cannot grow it.
    with urllib.request.urlopen(alb_key_url(region, kid), timeout=ALB_KEY_TIMEOUT_SECONDS) as response:
        return str(response.read(16_384).decode("ascii"))


def alb_key_fetcher(region: str) -> KeyFetcher:
    """Return a fetcher of the region's ALB signing keys, cached per process."""
    return lambda kid: _fetch_alb_key(region, kid)


def verify_alb_token(token: str, *, alb_arn: str, fetch_key: KeyFetcher, issuer: str = "",
                     leeway: float = ALB_LEEWAY_SECONDS) -> dict[str, Any]:
    """Return the claims of an ALB identity token once it is proven genuine; jwt.InvalidTokenError otherwise.

    Checked: ES256 signature by the key the header names; the header's signer is our load balancer
    (a token another ALB signed is valid, but not for us); not expired; the issuer when configured;
    a verified e-mail.
    """
    header = jwt.get_unverified_header(token)
    if header.get("alg") != ALB_ALGORITHM:
        raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not {ALB_ALGORITHM}")
    if header.get("signer") != alb_arn:
        raise jwt.InvalidTokenError(f"signed by {header.get('signer')!r}, not by SIGNAL_ALB_ARN")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise jwt.InvalidTokenError("no usable key id")
    claims: dict[str, Any] = jwt.decode(
        token, fetch_key(kid), algorithms=[ALB_ALGORITHM], leeway=leeway,
        # The payload is the IdP's user info: no audience of ours; the issuer is checked below, in both parts.
        options={"verify_aud": False, "verify_iss": False},
    )
    # The ALB puts exp (and iss) in the header; the payload may carry its own. Every copy must hold.
    expiries = [part["exp"] for part in (header, claims) if "exp" in part]
    if not expiries:
        raise jwt.MissingRequiredClaimError("exp")
    for exp in expiries:
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            raise jwt.InvalidTokenError("exp is not a number")
        if exp < time.time() - leeway:
            raise jwt.ExpiredSignatureError("the identity token has expired")
    if issuer:
        issuers = [part["iss"] for part in (header, claims) if "iss" in part]
        if not issuers or any(found != issuer for found in issuers):
            raise jwt.InvalidIssuerError(f"issuer {issuers} is not SIGNAL_OIDC_ISSUER")
    if str(claims.get("email_verified", "")).lower() != "true":  # some IdPs send the string "true"
        raise jwt.InvalidTokenError("the e-mail address is not verified")
    return claims


def _alb_user(settings: Settings, headers: Mapping[str, str] | None, fetch_key: KeyFetcher | None) -> User:
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    token = lowered.get(ALB_CLAIMS_HEADER, "")
    if not token:
        return ANONYMOUS
    try:
        claims = verify_alb_token(token, alb_arn=settings.alb_arn, issuer=settings.oidc_issuer,
                                  fetch_key=fetch_key or alb_key_fetcher(settings.alb_region))
    except (jwt.PyJWTError, OSError, ValueError) as error:
        # Never the token itself in the log: it is a credential until it expires.
        log.warning("rejected the load balancer identity header (%s: %s); the user is an anonymous viewer",
                    type(error).__name__, error)
        return ANONYMOUS
    email = str(claims.get("email") or "")
    if not email:
        return ANONYMOUS
    return User(email, _role_for(settings, email, _groups(claims)))


# --- roles ----------------------------------------------------------------------------------------


def _groups(claims: Mapping[str, Any]) -> set[str]:
    raw = claims.get("groups") or claims.get("cognito:groups") or []
    return {raw} if isinstance(raw, str) else {str(g) for g in raw}


def _role_for(settings: Settings, email: str, groups: set[str]) -> str:
    if email.lower() in settings.operators or (settings.operator_group and settings.operator_group in groups):
        return OPERATOR
    return VIEWER


def is_loopback(address: str | None) -> bool:
    """Return True when a server bound to `address` is reachable from this machine only."""
    if not address:
        return False  # no address: Streamlit listens on every interface
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or a unix socket: possibly reachable from elsewhere


def resolve_user(settings: Settings, *, oidc_user: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, bind_address: str | None = None,
                 fetch_alb_key: KeyFetcher | None = None) -> User:
    """Return who is using the console: an OIDC login, the ALB's verified identity header, or the local setting.

    `bind_address` is the address the console really listens on (the UI reads Streamlit's option):
    without a login, operator is given only on the local backend bound to loopback, viewer otherwise.
    """
    if oidc_user and oidc_user.get("is_logged_in"):
        email = str(oidc_user.get("email") or oidc_user.get("sub") or "unknown")
        return User(email, _role_for(settings, email, _groups(oidc_user)))
    if settings.auth == "alb":
        return _alb_user(settings, headers, fetch_alb_key)
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "local"
    # Anyone who reaches an exposed console would be this user: only the machine's own user may operate.
    local_only = settings.backend == "local" and is_loopback(bind_address)
    return User(name, settings.role if local_only else VIEWER)


# --- the audited action ---------------------------------------------------------------------------


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def perform(user: User, action: str, target: str, run: Callable[[], T], audit: AuditLog, *,
            detail: str = "", describe: Callable[[T], str] | None = None) -> T:
    """Run an operator action after checking the role; audit the request before it runs, then its outcome.

    A viewer is refused (PermissionDeniedError) whatever the page showed them. An action whose
    `requested` entry cannot be written is refused too (PermissionDeniedError): nothing runs unaudited.
    Any failure of the action is audited as failed with its error class, and re-raised. `detail` is the
    reason of the `requested` entry; `describe(result)` that of `succeeded`.
    """

    def record(outcome: Outcome, reason: str = "") -> None:
        audit.append(AuditEntry(datetime.now(UTC), user.name, user.role, action, target, outcome, reason))

    if not user.is_operator:
        reason = f"role {user.role} may not {action}"
        try:
            record("refused", reason)
        except _AUDIT_WRITE_ERRORS:  # refused either way; the refusal's entry is lost, say so in the server log
            log.exception("could not audit the refusal of %s %s for %s", action, target, user.name)
        raise PermissionDeniedError(f"{user.name}: {reason}", next_step="ask an operator")
    try:
        record("requested", detail)
    except _AUDIT_WRITE_ERRORS as error:
        log.exception("refused %s %s for %s: the audit log cannot be written", action, target, user.name)
        raise PermissionDeniedError(
            f"the audit log cannot be written, so {action.replace('_', ' ')} {target} did not run "
            f"({_describe(error)})",
            next_step="actions run only when they are audited; check the audit log's storage (space, permissions)",
        ) from error
    try:
        result = run()
    except BaseException as error:  # any failure, even an interrupt, closes the request it opened
        _record_outcome(record, "failed", _describe(error))
        raise
    _record_outcome(record, "succeeded", describe(result) if describe else "")
    return result


def _record_outcome(record: Callable[[Outcome, str], None], outcome: Outcome, reason: str) -> None:
    # The action has already run: failing now would report a done action as not done. Its `requested`
    # entry is on record; the missing outcome goes to the server log.
    try:
        record(outcome, reason)
    except _AUDIT_WRITE_ERRORS:
        log.exception("could not audit the outcome %s (%s)", outcome, reason)
