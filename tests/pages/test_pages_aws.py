"""The console on the AWS backend, against moto (AppTest).

moto stands in for Kinesis, Glue, Athena, S3 and CloudWatch: they have no local equivalent. The
pages must run unchanged on this backend and show the states the (mocked) services report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.glue.responses import GlueResponse
from streamlit.testing.v1 import AppTest

from core.lake_layout import TABLES
from tests.conftest import PROJECT_ROOT

REGION = "eu-west-1"
BUCKET = "signal-lake-test"
ROLE = "arn:aws:iam::123456789012:role/test"  # moto needs a role ARN; nothing real


@pytest.fixture
def aws_console(monkeypatch: pytest.MonkeyPatch, clean_environ: Path) -> Iterator[boto3.Session]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("SIGNAL_BACKEND", "aws")
    monkeypatch.setenv("SIGNAL_LAKE_BUCKET", BUCKET)
    # moto does not implement GetCrawlerMetrics; answer it with "no metrics yet", as a new crawler has.
    monkeypatch.setattr(GlueResponse, "get_crawler_metrics",
                        lambda self: json.dumps({"CrawlerMetricsList": []}), raising=False)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=BUCKET, Key="lake/_job/status.json", Body=json.dumps({
            "job_name": "etl_streaming_mobile_logs", "state": "RUNNING", "started_at": "2026-11-28T10:00:00+00:00",
            "last_batch": {"batch_id": 41, "time": "2026-11-28T10:05:00+00:00", "input_rows": 500,
                           "aggregated_rows": 498, "quarantined_rows": 2, "late_rows": 0, "duplicate_rows": 0,
                           "input_rows_per_second": 25.0, "processed_rows_per_second": 400.0,
                           "duration_ms": 1250, "watermark": "2026-11-28T09:55:00+00:00"},
            "recent_batches": [], "totals": {"batches": 42, "input_rows": 21000, "aggregated_rows": 20990,
                                             "quarantined_rows": 10, "late_rows": 0, "duplicate_rows": 0},
        }).encode())
        session.client("kinesis").create_stream(StreamName="mobile_coverage_logs", ShardCount=1)
        glue = session.client("glue")
        glue.create_database(DatabaseInput={"Name": "mobile_network_aggregations"})
        glue.create_job(Name="etl_streaming_mobile_logs", Role=ROLE,
                        Command={"Name": "gluestreaming", "ScriptLocation": f"s3://{BUCKET}/jobs/job.py"})
        for table in TABLES:
            glue.create_crawler(Name=table.crawler, Role=ROLE, DatabaseName="mobile_network_aggregations",
                                Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/lake/{table.prefix}/"}]})
        session.client("athena").create_work_group(Name="signal_stream", Configuration={
            "ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/athena-results/"},
            "EnforceWorkGroupConfiguration": True})
        yield session


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "Home.py"), default_timeout=60)
    at.run()
    at.switch_page(page).run()
    return at


@pytest.mark.parametrize("page", ["pages/overview.py", "pages/live_aggregations.py", "pages/pipeline_health.py",
                                  "pages/wall_display.py"])
def test_pages_render_on_the_aws_backend(aws_console: boto3.Session, page: str) -> None:
    at = open_page(page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_sidebar_names_the_aws_backend_and_a_viewer(aws_console: boto3.Session) -> None:
    at = AppTest.from_file(str(PROJECT_ROOT / "Home.py"), default_timeout=60).run()
    assert not at.exception
    assert at.sidebar.markdown[0].value.endswith("`AWS`")
    assert at.sidebar.caption[-1].value.endswith("· viewer")


def test_pipeline_health_shows_the_states_aws_reports(aws_console: boto3.Session) -> None:
    at = open_page("pages/pipeline_health.py")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Batches"] == "42"  # from the job's status document on S3
    assert metrics["Quarantined"] == "10"
    crawlers = next(d.value for d in at.dataframe if "crawler" in d.value.columns)
    assert sorted(crawlers["crawler"]) == sorted(t.crawler for t in TABLES)
    assert set(crawlers["state"]) == {"READY"}
    # The AWS default role is viewer: no operator actions on screen.
    assert not [b for b in at.button if b.label.startswith(("Re-run", "Start", "Stop"))]
