"""Translating AWS errors into the project's errors, each with the next step for the user.

The only place that knows botocore's exceptions; every AWS adapter wraps its calls in `aws_errors`.
The messages reach every viewer of the console: `redact` takes ARNs (an AccessDenied names the role
and the resource) and 12-digit account ids out of them, and leaves the rest of the message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from core.errors import (
    BackendError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SignalStreamError,
    ThrottledError,
)

ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
                 "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException"}
THROTTLED = {"Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
             "ProvisionedThroughputExceededException", "RequestLimitExceeded", "SlowDown", "LimitExceededException"}
NOT_FOUND = {"ResourceNotFoundException", "EntityNotFoundException", "NoSuchBucket", "NoSuchKey", "NotFound",
             "404", "InvalidRequestException"}
CONFLICT = {"CrawlerRunningException", "ConcurrentRunsExceededException", "ResourceInUseException"}
ARN_PLACEHOLDER = "<arn>"
ACCOUNT_PLACEHOLDER = "<account>"
# arn:partition:service:region:account:resource, up to a space or a quote or bracket, without the
# punctuation that ends a sentence around it.
_ARN = re.compile(r"\barn:aws[a-z-]*:[^\s\"'`<>()\[\]{}]*[^\s\"'`<>()\[\]{}.,;:!?]")
_ACCOUNT_ID = re.compile(r"(?<!\d)\d{12}(?!\d)")


def redact(text: str) -> str:
    """Return `text` with every ARN and every 12-digit account id replaced by a placeholder."""
    return _ACCOUNT_ID.sub(ACCOUNT_PLACEHOLDER, _ARN.sub(ARN_PLACEHOLDER, text))


def translate(error: Exception, action: str) -> SignalStreamError:
    """Return the project's error for an AWS error raised while doing `action`, its message redacted."""
    translated = _translate(error, action)
    translated.message = redact(translated.message)
    translated.args = (translated.message,)
    return translated


def _translate(error: Exception, action: str) -> SignalStreamError:
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return PermissionDeniedError(f"{action}: no AWS credentials found",
                                     next_step="run with a task role, or set AWS_PROFILE / AWS credentials")
    if isinstance(error, NoRegionError):
        return ConfigError(f"{action}: no AWS region configured", next_step="set AWS_REGION")
    if isinstance(error, EndpointConnectionError):
        return BackendError(f"{action}: cannot reach AWS ({error})", next_step="check the network and AWS_REGION")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", "")) or code
        if code in ACCESS_DENIED:
            return PermissionDeniedError(f"{action}: access denied ({message})",
                                         next_step="the role needs this permission; see infra/template.yaml")
        if code in THROTTLED:
            return ThrottledError(f"{action}: AWS is throttling requests ({code})",
                                  next_step="retry in a few seconds; the console retries on its next refresh")
        if code in CONFLICT:
            return ConflictError(f"{action}: {message}", next_step="wait for the current run to finish")
        if code in NOT_FOUND:
            return NotFoundError(f"{action}: not found ({message})",
                                 next_step="check the resource names in the settings and the deployed stack")
        return BackendError(f"{action}: {code}: {message}")
    if isinstance(error, BotoCoreError):
        return BackendError(f"{action}: {error}")
    return BackendError(f"{action}: {type(error).__name__}: {error}")


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Translate any botocore error raised inside the block into the project's errors."""
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise translate(error, action) from error
