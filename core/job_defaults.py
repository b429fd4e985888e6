"""The streaming job's defaults and limits: one source for the settings (core/config.py) and the Glue
job's arguments (glue_job/job.py), which ships this module in its package."""

from __future__ import annotations

from core.records import FUTURE_TOLERANCE

DATABASE = "mobile_network_aggregations"
TRIGGER_SECONDS = "20"
WATERMARK_MINUTES = "10"
GRID_DEGREES = "0.01"
# Twice the clock-skew tolerance, so a record from a fast clock never makes on-time records late.
MIN_WATERMARK_MINUTES = 2 * int(FUTURE_TOLERANCE.total_seconds() // 60) + 1
