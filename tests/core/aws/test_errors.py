"""translate() and aws_errors: every botocore error becomes the project's error with a next step.

Built from botocore's own exception classes; no client, moto or network is needed.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from core.backends.aws.errors import aws_errors, redact, translate
from core.errors import (
    BackendError,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SignalStreamError,
    ThrottledError,
)

ACTION = "start crawler signal_strength_by_operator"


def client_error(code: str, message: str = "the service's message") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "StartCrawler")


@pytest.mark.parametrize(("error", "kind", "in_message", "in_next_step"), [
    (NoCredentialsError(), PermissionDeniedError, "no AWS credentials", "AWS_PROFILE"),
    (NoRegionError(), ConfigError, "no AWS region", "AWS_REGION"),
    (client_error("AccessDeniedException", "User is not authorized to perform glue:StartCrawler"),
     PermissionDeniedError, "access denied (User is not authorized to perform glue:StartCrawler)", "permission"),
    (client_error("ThrottlingException"), ThrottledError, "throttling requests (ThrottlingException)", "retry"),
    (client_error("CrawlerRunningException", "Crawler with name x has already started"), ConflictError,
     "Crawler with name x has already started", "wait for the current run"),
    (client_error("ResourceNotFoundException", "Crawler entry with name x does not exist"), NotFoundError,
     "not found (Crawler entry with name x does not exist)", "resource names"),
    (EndpointConnectionError(endpoint_url="https://glue.eu-west-1.amazonaws.com"), BackendError, "cannot reach AWS",
     "network"),
])
def test_translate_gives_the_right_error_and_next_step(error: Exception, kind: type[SignalStreamError],
                                                       in_message: str, in_next_step: str) -> None:
    translated = translate(error, ACTION)

    assert type(translated) is kind
    assert translated.message.startswith(f"{ACTION}: ") and in_message in translated.message
    assert translated.next_step and in_next_step in translated.next_step
    assert str(translated) == f"{translated.message} ({translated.next_step})"


def test_an_unknown_code_is_a_backend_error_naming_code_and_message() -> None:
    translated = translate(client_error("SomethingNewException", "a brand new failure"), ACTION)

    assert type(translated) is BackendError
    assert translated.message == f"{ACTION}: SomethingNewException: a brand new failure"
    assert translated.next_step is None


def test_a_code_without_a_message_still_says_what_happened() -> None:
    translated = translate(ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"), ACTION)

    assert type(translated) is PermissionDeniedError
    assert "access denied (AccessDenied)" in translated.message


def test_aws_errors_raises_the_translation_from_the_original() -> None:
    original = client_error("ThrottlingException")

    with pytest.raises(ThrottledError) as raised, aws_errors(ACTION):
        raise original

    assert raised.value.__cause__ is original


def test_aws_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), aws_errors(ACTION):
        raise KeyError("not an AWS error")


ROLE_ARN = "arn:aws:sts::123456789012:assumed-role/SignalStreamConsole/ecs-task-1f2e"
DENIED = (f"User: {ROLE_ARN} is not authorized to perform: glue:StartCrawler on resource: "
          "arn:aws:glue:eu-west-1:123456789012:crawler/crawler_signal_strength_by_operator because no "
          "identity-based policy allows the glue:StartCrawler action")


def test_access_denied_reaches_the_console_without_arns_or_the_account_id() -> None:
    translated = translate(client_error("AccessDeniedException", DENIED), ACTION)

    assert type(translated) is PermissionDeniedError
    for secret in ("arn:", "123456789012", "SignalStreamConsole", "assumed-role"):
        assert secret not in str(translated)
        assert secret not in translated.args[0]
    # The useful part stays: who may not do what, and why.
    assert translated.message == (
        f"{ACTION}: access denied (User: <arn> is not authorized to perform: glue:StartCrawler on resource: <arn> "
        "because no identity-based policy allows the glue:StartCrawler action)")


@pytest.mark.parametrize(("text", "redacted"), [
    ("on resource: arn:aws:s3:::signal-lake/lake/x.parquet.", "on resource: <arn>."),
    ("(arn:aws-us-gov:iam::123456789012:role/a+b=c,d@e)", "(<arn>)"),
    ('"arn:aws-cn:kinesis:cn-north-1:210987654321:stream/mobile_coverage_logs", next', '"<arn>", next'),
    ("account 123456789012 owns it", "account <account> owns it"),
    ("version 00000000000000000012 of 1234567890123 bytes, 12345678901", "version 00000000000000000012 of "
     "1234567890123 bytes, 12345678901"),
    ("s3:GetObject on s3://signal-lake/lake", "s3:GetObject on s3://signal-lake/lake"),
])
def test_redact_replaces_arns_and_account_ids_only(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_every_kind_of_translated_message_is_redacted() -> None:
    for error in (client_error("ThrottlingException", DENIED), client_error("CrawlerRunningException", DENIED),
                  client_error("ResourceNotFoundException", DENIED), client_error("SomethingNew", DENIED),
                  ValueError(DENIED)):
        message = str(translate(error, ACTION))
        assert "arn:" not in message and "123456789012" not in message, message
