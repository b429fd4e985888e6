"""The audit log on S3: one object per entry, so concurrent console tasks never overwrite each other.

Same API and entries as core.audit.FileAuditLog. Keys sort by time:

    <prefix>/_audit/dt=YYYY-MM-DD/<YYYY-MM-DDTHH:MM:SS.ffffffZ>-<uuid>.json

and each write is conditional (If-None-Match: *), so S3 itself refuses to replace an entry. An object
that is not a valid entry (written by something else under the prefix) is skipped and counted.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Any

import boto3
from botocore.config import Config

from core.audit import AuditEntries, AuditEntry, entry_from_json, entry_to_json
from core.backends.aws.clients import CLIENT_CONFIG, new_client
from core.backends.aws.errors import aws_errors

AUDIT_PREFIX = "_audit"
# recent() reads up to READERS objects at once: room for them in the connection pool.
POOLED_CONFIG = CLIENT_CONFIG.merge(Config(max_pool_connections=16))
READERS = 8  # objects read at once by recent()

log = logging.getLogger(__name__)


class S3AuditLog:
    """The audit log as one JSON object per entry under the lake prefix."""

    def __init__(self, session: boto3.Session, bucket: str, prefix: str, *, s3: Any = None) -> None:
        """Use `s3` when given (tests), else create the client from `session` on first use."""
        self.session = session
        self.bucket = bucket
        self.root = "/".join(p for p in (prefix.strip("/"), AUDIT_PREFIX) if p) + "/"
        self._s3 = s3

    @property
    def s3(self) -> Any:
        """Return the S3 client, created from the session on first use."""
        if self._s3 is None:
            self._s3 = new_client(self.session, "s3", config=POOLED_CONFIG)
        return self._s3

    def append(self, entry: AuditEntry) -> None:
        """Write one entry as its own object; it is stored when this returns."""
        moment = entry.time.astimezone(UTC)
        # Fixed-width UTC time first, so key order is time order.
        key = (f"{self.root}dt={moment:%Y-%m-%d}/"
               f"{moment:%Y-%m-%dT%H:%M:%S.%f}Z-{uuid.uuid4().hex}.json")
        body = entry_to_json(entry).encode("utf-8")
        with aws_errors(f"write the audit log to s3://{self.bucket}/{self.root}"):
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
                               IfNoneMatch="*")

    def recent(self, limit: int = 200) -> AuditEntries:
        """Return the newest entries first, at most `limit`; unreadable objects are skipped and counted."""
        if limit <= 0:
            return AuditEntries()
        keys: list[str] = []
        for day in self._days_newest_first():
            keys.extend(sorted(self._keys(day), reverse=True))
            if len(keys) >= limit:
                break
        keys = keys[:limit]
        if not keys:
            return AuditEntries()
        with ThreadPoolExecutor(max_workers=min(READERS, len(keys))) as pool:
            read = list(pool.map(self._read, keys))
        entries = [e for e in read if e is not None]
        return AuditEntries(entries, skipped=len(read) - len(entries))

    def _days_newest_first(self) -> list[str]:
        days: list[str] = []
        with aws_errors(f"list the audit log s3://{self.bucket}/{self.root}"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.root}dt=", Delimiter="/")
            for page in pages:
                days.extend(p["Prefix"] for p in page.get("CommonPrefixes") or [])
        return sorted(days, reverse=True)

    def _keys(self, day: str) -> list[str]:
        with aws_errors(f"list the audit log s3://{self.bucket}/{day}"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=day)
            return [item["Key"] for page in pages for item in page.get("Contents") or []
                    if item["Key"].endswith(".json")]

    def _read(self, key: str) -> AuditEntry | None:
        with aws_errors(f"read the audit entry s3://{self.bucket}/{key}"):
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            return entry_from_json(body)
        except (ValueError, TypeError) as error:
            # Only the console writes here: say where, so whoever else writes under the prefix can be found.
            log.warning("skipped the unreadable audit entry s3://%s/%s (%s)", self.bucket, key, error)
            return None
