"""The streaming job's tests share one small local SparkSession."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

STREAMING_MODULE = "test_streaming.py"


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """Return a one-core SparkSession in UTC, stopped at the end of the test session."""
    session = (
        SparkSession.builder.master("local[1]")
        .appName("signal-stream-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the streaming tests last.

    glue_job.local.run() builds its session with getOrCreate() and stops it when it ends, so it
    would stop the shared `spark` session under any test that runs after it.
    """
    streaming = [item for item in items if item.path.name == STREAMING_MODULE and "glue_job" in item.path.parts]
    if streaming:
        moved = {id(item) for item in streaming}
        others = [item for item in items if id(item) not in moved]
        items[:] = others + streaming
