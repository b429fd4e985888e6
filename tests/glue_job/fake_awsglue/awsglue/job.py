"""Stand-in for awsglue.job: Job.init / Job.commit, recorded for the test to check."""

from __future__ import annotations

from typing import Any

INSTANCES: list[Job] = []


class Job:
    """Records the job's name, arguments and whether it committed."""

    def __init__(self, glue_context: Any) -> None:
        self.glue_context = glue_context
        self.name: str | None = None
        self.args: dict[str, Any] = {}
        self.committed = False
        INSTANCES.append(self)

    def init(self, job_name: str, args: dict[str, Any] | None = None) -> None:
        """Start the job run."""
        self.name = job_name
        self.args = dict(args or {})

    def commit(self) -> None:
        """End the job run successfully."""
        if self.name is None:
            raise RuntimeError("Job.commit() before Job.init()")
        self.committed = True
