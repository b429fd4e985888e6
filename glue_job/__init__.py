"""The streaming job: pure PySpark transforms, an idempotent sink, and a local and a Glue entry."""
