"""The project's exceptions: one small tree that pages and the CLI catch and show with a next step.

    SignalStreamError             base; str() is a one-line message for the user
    ├── ConfigError               a setting is missing or malformed
    ├── InputError                bad user input: a CSV, a CLI argument, a query parameter
    ├── NotFoundError             a table, query, crawler or file that does not exist (yet)
    ├── ConflictError             the action cannot run now (a crawler is already running)
    ├── PermissionDeniedError     the role or the cloud credentials do not allow the action
    └── BackendError              the stream, job, catalog or SQL engine failed
        ├── ThrottledError        the service asked us to slow down; retry later
        └── QueryError            a query failed to run
"""

from __future__ import annotations


class SignalStreamError(Exception):
    """Base of every error the project raises on purpose."""

    def __init__(self, message: str, *, next_step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.next_step = next_step

    def __str__(self) -> str:
        if self.next_step:
            return f"{self.message} ({self.next_step})"
        return self.message


class ConfigError(SignalStreamError):
    """A setting is missing or malformed."""


class InputError(SignalStreamError):
    """Input from a user or a file is not usable."""


class NotFoundError(SignalStreamError):
    """Something named does not exist (yet)."""


class ConflictError(SignalStreamError):
    """The action conflicts with the current state, e.g. a crawler that is already running."""


class PermissionDeniedError(SignalStreamError):
    """The user's role or the backend's credentials do not allow the action."""


class BackendError(SignalStreamError):
    """A backend service failed."""


class ThrottledError(BackendError):
    """The backend throttled us."""


class QueryError(BackendError):
    """A query failed."""
