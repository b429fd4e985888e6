"""Creating boto3 clients for the adapters: one retry policy, errors translated, never at import time."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from core.backends.aws.errors import aws_errors

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3})


def new_client(session: boto3.Session, service: str, *, endpoint_url: str | None = None,
               config: Config = CLIENT_CONFIG) -> Any:
    """Return a client of `service` from the injected session, with the project's retry policy."""
    with aws_errors(f"connect to {service}"):
        return session.client(service, endpoint_url=endpoint_url, config=config)
