"""Shared AWS fixtures: fake credentials, an in-process moto session, a moto server on a free port.

moto stands in for AWS because Kinesis, Glue, Athena and CloudWatch have no local equivalent; no
test here ever reaches the real cloud (the credentials are fake and every client is mocked).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

REGION = "eu-west-1"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, clean_environ: Path) -> None:
    """Set fake AWS credentials and the region, after the environment was cleared."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def session(aws_env: None) -> Iterator[boto3.Session]:
    """Return a boto3 session whose every client talks to in-process moto."""
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def moto_endpoint(aws_env: None) -> Iterator[str]:
    """Return the URL of a moto server on a free local port; stop it afterwards."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
