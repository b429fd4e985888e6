"""Where the JVM's time goes: Java Flight Recorder samples of a Spark run, summed by activity.

py-spy and pyinstrument see only the Python driver, which waits while the JVM does the work; JFR
(built into the JDK) samples the JVM's own threads. `recording_options(folder)` gives the JVM option
that records a run (set it in JDK_JAVA_OPTIONS of the subprocess); `summarise(folder)` prints the
largest recording's samples with `jfr print` and returns each activity's share of them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

# First match wins, in this order: a JSON parse inside the map stage counts as JSON, not as the stage.
ACTIVITIES: tuple[tuple[str, str], ...] = (
    ("JSON parse (envelope and record, from_json)", r"JsonToStructs"),
    ("reading the stream files", r"FileScanRDD|LineReader"),
    ("de-duplication state store", r"StateStore"),
    ("batch cache (persist)", r"CachedRDDBuilder"),
    ("aggregation (one pass, hash aggregate)", r"HashAggregate|UnsafeFixedWidthAggregationMap|ObjectAggregat"),
    ("normalisation and shuffle before the de-duplication", r"ShuffleWriter"),
    ("collecting results (Arrow)", r"ArrowConverters|collectAsArrow|arrow"),
    ("query planning and optimisation", r"catalyst\.rules|optimizedPlan|executedPlan|Analyzer"),
)
OTHER = "other Java code (scheduler, serialisation, start-up)"  # JIT and GC threads are native: not sampled
_FRAME = re.compile(r"^\s+([\w$.<>/]+)\(.*?line:", re.MULTILINE)


def recording_options(folder: Path) -> str:
    """Return the JVM option that records every JVM the subprocess starts into folder (one file each)."""
    return f"-XX:StartFlightRecording=filename={folder}/run-%p.jfr,settings=profile"


def summarise(folder: Path) -> dict[str, float] | None:
    """Return {activity: percent of samples} of the largest recording in folder, or None without one."""
    recordings = sorted(folder.glob("*.jfr"), key=lambda p: p.stat().st_size)
    tool = shutil.which("jfr")
    if not recordings or tool is None:
        return None
    printed = subprocess.run([tool, "print", "--events", "jdk.ExecutionSample", "--stack-depth", "64",
                              str(recordings[-1])], capture_output=True, text=True, check=False).stdout
    counts: Counter[str] = Counter()
    for event in printed.split("jdk.ExecutionSample {")[1:]:
        stack = " ".join(_FRAME.findall(event))
        if not stack:
            continue
        counts[next((name for name, pattern in ACTIVITIES if re.search(pattern, stack)), OTHER)] += 1
    total = sum(counts.values())
    if not total:
        return None
    shares = {name: round(100 * count / total, 1) for name, count in counts.most_common()}
    return {**shares, "samples": float(total)}
