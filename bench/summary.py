"""bench/RESULTS.md from bench/history.jsonl: one short table of targets, then the newest run's notes.

Every benchmark run appends one JSON object to bench/history.jsonl (bench.common.record): when, the
command, the machine, every figure, the notes and the target rows derived from the figures here.
RESULTS.md is regenerated from the newest run of each benchmark; the raw runs stay in the history.

    python -m bench.summary        # rewrite RESULTS.md from the history
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
HISTORY = BENCH / "history.jsonl"
RESULTS = BENCH / "RESULTS.md"
ORDER = ("replay", "job", "freshness", "commit", "console", "soak")

Row = dict[str, Any]  # figure, target, result, met (True, False, or None for a figure without a target)


def _row(figure: str, target: str, result: str, met: bool | None) -> Row:
    return {"figure": figure, "target": target, "result": result, "met": met}


def _replay(f: dict[str, Any]) -> list[Row]:
    targets = f.get("targets", {})
    rows = [_row("Replay into the local stream", "≥ 100,000 records/s",
                 f"{f['local_records_per_second']['median']:,.0f} records/s (median of {f['runs']})",
                 targets.get("local_100k_per_s") == "met")]
    if "api_calls_per_10k" in f:
        rows.append(_row("Replay into Kinesis (moto): PutRecords calls", "≤ 20 per 10k records (1 per 500)",
                         f"{f['api_calls_per_10k']['batched']:g} per 10k", targets.get("calls_per_500") == "met"))
    return rows


def _job(f: dict[str, Any]) -> list[Row]:
    ratio = f["ratio_ours_over_seed"]
    return [_row("Job throughput vs the seed design (1M records, 2 cores)", "≥ 2x the seed's rows/s",
                 f"{ratio}x ({f['ours']['rows_per_second']['median']:,} vs {f['seed']['rows_per_second']['median']:,} "
                 "rows/s)", ratio >= 2)]


def _freshness(f: dict[str, Any]) -> list[Row]:
    rows = []
    for key, trigger in f.items():
        if not key.startswith("trigger_"):
            continue
        rows.append(_row(f"Freshness p95, {key.removeprefix('trigger_')} trigger (send -> query)",
                         f"≤ {trigger['target_p95_seconds']:g} s",
                         f"{trigger['p95_seconds']} s (p50 {trigger['p50_seconds']} s, {trigger['seen']}/"
                         f"{trigger['sends']} seen)", bool(trigger["target_met"])))
    return rows


def _commit(f: dict[str, Any]) -> list[Row]:
    share = f["share_of_interval_percent"]
    logs = f.get("log_entries_per_table") or {}
    log = f", Delta logs of {logs['median']} files" if logs else ""
    return [_row(f"Sink commit overhead per batch, {f['trigger_seconds']:g} s trigger (commit_batch + amortised "
                 "maintenance)", f"≤ {f['target_percent']:g} % of the interval",
                 f"{share['median']} % median, {share['p95']} % p95 ({f['commit_ms']['median']} ms + "
                 f"{f['maintenance_ms_per_batch']} ms, {f['batches']} batches after {f['warmup_batches']}{log})",
                 share["median"] <= f["target_percent"])]


def _console(f: dict[str, Any]) -> list[Row]:
    rows = []
    queries = f["queries_ms"]
    for label in ("24h", "1h"):
        timings = queries[label]
        name, slowest = max(((n, v["median"]) for n, v in timings.items()), key=lambda kv: kv[1])
        over = sum(1 for v in timings.values() if v["median"] > f["query_target_ms"])
        rows.append(_row(f"Named queries over {label.removesuffix('h')} h, slowest median",
                         f"≤ {f['query_target_ms']:g} ms each",
                         f"{slowest:.0f} ms ({name}); {over} of {len(timings)} over", over == 0))
    files = f["files_per_closed_day"]
    if files.get("worst") is not None:
        worst = files["worst"]
        rows.append(_row("Live data files per table per closed day", f"≤ {files['target']}",
                         f"{worst['files']} ({worst['table']}, {worst['dt']}: {worst['hours']} h of data)",
                         worst["files"] <= files["target"]))
    render = f.get("render")
    if render:
        live = render["cold_s"][render["live_page"]]["median"]
        warm = render["warm_s"][render["live_page"]]["median"]
        rows.append(_row("Live page render, cold (server side, AppTest)", f"≤ {render['target_s']:g} s",
                         f"{live:.2f} s (warm {warm:.2f} s)", live <= render["target_s"]))
        slowest = max(render["cold_s"], key=lambda p: render["cold_s"][p]["median"])
        if slowest != render["live_page"]:
            rows.append(_row("Slowest page render, cold", f"≤ {render['target_s']:g} s",
                             f"{render['cold_s'][slowest]['median']:.2f} s ({slowest})",
                             render["cold_s"][slowest]["median"] <= render["target_s"]))
    sessions = f.get("sessions", {}).get("shared")
    if sessions:
        most = sessions["max_queries_per_panel_per_window"]
        rows.append(_row(f"Lake queries per panel per TTL, {sessions['sessions']} sessions", "≤ 1",
                         f"{most} ({sessions['lake_queries']} queries for {sessions['panels']} panels)", most <= 1))
    extra = f.get("commits_on_a_days_log")
    if extra:
        versions = extra["log_versions_at_end"]
        rows.append(_row(f"Sink commit overhead per batch, {extra['trigger_seconds']} s trigger, after "
                         f"{f['lake'].get('hours', 0):g} h of commits ({max(versions.values()):,} table versions; "
                         "measured)",
                         f"≤ {extra['target_percent']:g} % of the interval",
                         f"{extra['share_of_interval_percent']} % (commit_batch {extra['commit_ms']['median']:.0f} ms "
                         f"vs {extra['commit_ms_median_first_hour_of_generation']:.0f} ms in the first hour)",
                         extra["share_of_interval_percent"] <= extra["target_percent"]))
    server = f.get("server", {})
    if "peak_mib" in server:
        target = server.get("target_mib")
        rows.append(_row(f"Console server memory, {server['sessions']} browser tabs for {server['hold_s']:g} s",
                         f"≤ {target:g} MiB" if target else "none set (figure)",
                         f"{server['peak_mib']:.0f} MiB peak (idle {server['idle_mib']:.0f} MiB)",
                         server["peak_mib"] <= target if target else None))
    return rows


def _soak(f: dict[str, Any]) -> list[Row]:
    targets = f.get("targets", {})
    render, memory, errors = f["render_s"], f["server_memory_mib"], f["errors"]
    first = render["first_data"]
    where = f"{f['sessions']} browser sessions, {f['minutes']:g} min"
    return [
        _row(f"Soak: page render to first data, p95 ({where})", f"≤ {render['target_p95']:g} s",
             f"{first['p95']} s (p50 {first['p50']} s, {first['loads']} loads)", targets.get("render_p95") == "met"),
        _row("Soak: console server memory", f"≤ {memory['target']:g} MiB",
             f"{memory['peak']:.0f} MiB peak (idle {memory['idle']:.0f} MiB)", targets.get("server_memory") == "met"),
        _row("Soak: errors in pages and server log", "0", f"{errors['total']}", targets.get("errors") == "met"),
        _row("Soak: lake queries per panel per TTL", "≤ 1", f"{f['lake_queries']['max_per_panel_per_window']}",
             targets.get("lake_queries_per_panel_per_ttl") == "met"),
    ]


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "replay": _replay, "job": _job, "freshness": _freshness, "commit": _commit, "console": _console, "soak": _soak,
}


def target_rows(name: str, figures: dict[str, Any]) -> list[Row]:
    """Return the summary rows of one benchmark's figures (none for a benchmark without targets, or whose
    figures have another shape than these rows know)."""
    rows = ROWS.get(name)
    try:
        return rows(figures) if rows else []
    except (KeyError, TypeError, ValueError):
        return []


def load_history(path: Path = HISTORY) -> list[dict[str, Any]]:
    """Return every recorded run, oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def newest_runs(history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the newest run of each benchmark, in report order."""
    newest: dict[str, dict[str, Any]] = {}
    for run in history:
        if run["benchmark"] not in newest or run["when"] >= newest[run["benchmark"]]["when"]:
            newest[run["benchmark"]] = run
    return {name: newest[name] for name in [*ORDER, *sorted(set(newest) - set(ORDER))] if name in newest}


def machine_text(machine: dict[str, Any]) -> str:
    """Return a machine in a few words: cores, memory, CPU."""
    return f"{machine['cores']} cores, {machine['memory_gib']:g} GiB, {machine['cpu']}"


def _met(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "**missed**")


def render(history: list[dict[str, Any]]) -> str:
    """Return RESULTS.md: the targets table of the newest runs, then each one's command and notes."""
    runs = newest_runs(history)
    lines = [
        "# Benchmark results",
        "",
        "| Figure | Target | Result | Met | Date (UTC) | Machine |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in runs.items():
        when = run["when"][:16].replace("T", " ")
        for row in target_rows(name, run["figures"]) or run.get("targets") or []:
            lines.append(f"| {row['figure']} | {row['target']} | {row['result']} | {_met(row['met'])} | {when} | "
                         f"{machine_text(run['machine'])} |")
    lines += [
        "",
        "The newest run of each benchmark (`make bench`, or `.venv/bin/python -m bench.<name>`); every run's raw "
        "figures are in `bench/history.jsonl`, and this file is regenerated from it by `bench.common.record` (or "
        "`python -m bench.summary`). The machine is shared: other work slows runs, and each section below gives "
        "the load it saw.",
        "",
    ]
    for name, run in runs.items():
        lines += [f"## {name}", "", f"`{run['command'].strip()}` at {run['when']}, Python {run['machine']['python']}.",
                  ""]
        lines += [f"- {note}" for note in run.get("notes", [])]
        lines.append("")
    return "\n".join(lines)


def write_results(history_path: Path = HISTORY, results: Path = RESULTS) -> None:
    """Rewrite RESULTS.md from the history."""
    results.write_text(render(load_history(history_path)), encoding="utf-8")


if __name__ == "__main__":
    write_results()
    print(RESULTS.read_text(encoding="utf-8").split("\n\n## ", 1)[0])
