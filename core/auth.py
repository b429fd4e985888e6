"""Roles and the server-side check every mutating action goes through.

Who the user is (OIDC, load-balancer headers, local setting) is resolved by the console; here a
`User` is checked against the action and the attempt is written to the audit log either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from core.audit import AuditEntry, Outcome
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
