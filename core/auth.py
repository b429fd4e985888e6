"""Roles and the server-side check every mutating action goes through.

Who the user is (OIDC, load-balancer headers, local setting) is resolved by the console; here a
`User` is checked against the action and the attempt is written to the audit log either way.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from core.audit import AuditEntry, Outcome
from core.config import Settings
from core.errors import PermissionDeniedError, SignalStreamError

VIEWER = "viewer"
OPERATOR = "operator"
ROLES = (VIEWER, OPERATOR)

T = TypeVar("T")


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


ALB_CLAIMS_HEADER = "x-amzn-oidc-data"


def _jwt_claims(token: str) -> dict[str, Any]:
    # The ALB signs this token and strips any copy a client sends; the task accepts traffic from the
    # ALB only (infra), so the claims are read here and not re-verified.
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _groups(claims: Mapping[str, Any]) -> set[str]:
    raw = claims.get("groups") or claims.get("cognito:groups") or []
    return {raw} if isinstance(raw, str) else {str(g) for g in raw}


def _role_for(settings: Settings, email: str, groups: set[str]) -> str:
    if email.lower() in settings.operators or (settings.operator_group and settings.operator_group in groups):
        return OPERATOR
    return VIEWER


def resolve_user(settings: Settings, *, oidc_user: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> User:
    """Return who is using the console: an OIDC login, the ALB's identity headers, or the local setting."""
    if oidc_user and oidc_user.get("is_logged_in"):
        email = str(oidc_user.get("email") or oidc_user.get("sub") or "unknown")
        return User(email, _role_for(settings, email, _groups(oidc_user)))
    if settings.auth == "alb":
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        claims = _jwt_claims(lowered.get(ALB_CLAIMS_HEADER, ""))
        email = str(claims.get("email") or "")
        if not email:
            return User("anonymous", VIEWER)
        return User(email, _role_for(settings, email, _groups(claims)))
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "local"
    return User(name, settings.role)


def perform(user: User, action: str, target: str, run: Callable[[], T], audit: AuditLog) -> T:
    """Run an operator action after checking the role; audit the attempt and its outcome.

    A viewer is refused (PermissionDeniedError) whatever the page showed them; a failure of the
    action itself is audited as failed and re-raised.
    """

    def record(outcome: Outcome, reason: str = "") -> None:
        audit.append(AuditEntry(datetime.now(UTC), user.name, user.role, action, target, outcome, reason))

    if not user.is_operator:
        reason = f"role {user.role} may not {action}"
        record("refused", reason)
        raise PermissionDeniedError(f"{user.name}: {reason}", next_step="ask an operator")
    try:
        result = run()
    except SignalStreamError as error:
        record("failed", str(error))
        raise
    record("ok")
    return result
