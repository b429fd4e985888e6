"""Fault tests (issue 12): kill -9 mid-work, a full disk, truncated and corrupt files, records from the future.

Each test asserts a real outcome: data is compared with an independent reference (pandas over the
records that really reached the stream, or over the rows written), and what a user sees is checked
through the CLI or the console (AppTest). Tests that run the Spark job are marked slow.
"""
