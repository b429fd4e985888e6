"""The AWS backend: Kinesis, Glue (job and crawlers), Athena and S3, with a boto3 session injected."""

from __future__ import annotations

import boto3

from core.backends.aws.athena import AthenaLake
from core.backends.aws.audit import S3AuditLog
from core.backends.aws.glue import GlueCrawlers, GlueJob
from core.backends.aws.stream import KinesisStream
from core.backends.base import Backend
from core.config import Settings
from core.lake_layout import TABLES


def build_aws_backend(settings: Settings, session: boto3.Session | None = None) -> Backend:
    """Return the AWS implementation of every capability; credentials come from the environment or task role."""
    session = session or boto3.Session()
    bucket, prefix = settings.lake_bucket, settings.lake_prefix
    return Backend(
        kind="aws",
        stream=KinesisStream(session, settings.stream_name),
        job=GlueJob(session, settings.job_name, bucket, prefix),
        crawlers=GlueCrawlers(session, [t.crawler for t in TABLES], {t.crawler: t.name for t in TABLES}),
        lake=AthenaLake(session, database=settings.database, workgroup=settings.athena_workgroup, bucket=bucket,
                        prefix=prefix, timeout_seconds=settings.athena_timeout_seconds,
                        cache_seconds=settings.refresh_seconds),
        audit=S3AuditLog(session, bucket, prefix),
    )
