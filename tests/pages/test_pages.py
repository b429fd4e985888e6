"""Every page on seeded local data (AppTest), and the interactions users rely on."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

from core.audit import FileAuditLog
from core.backends.local_lake import LocalLake
from tests.conftest import PROJECT_ROOT
from tests.harness import open_page, page_text
from tests.pages.seed import seed

PAGES = ("pages/overview.py", "pages/live_aggregations.py", "pages/pipeline_health.py", "pages/audit_log.py",
         "pages/demo_replay.py", "pages/wall_display.py")


def table_with(at: AppTest, column: str):  # type: ignore[no-untyped-def]
    """Return the first table that has this column (AppTest does not expose dataframe keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_seeded_data(clean_environ: Path, page: str) -> None:
    seed(clean_environ)
    at = open_page(page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_overview_shows_kpis_and_the_freshness_chain(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Records, last 5 min"] == "2"  # the window 2 minutes ago: 1 + 1 records
    assert metrics["Operators seen"] == "2"
    assert metrics["Quarantined"] == "1"
    assert metrics["Average signal (raw 0-31)"] == "15.0"  # (20 + 10) / 2
    labels = page_text(at)
    for hop in ("Last record sent", "Stream backlog", "Streaming job", "Newest lake commit", "Catalog", "Query as of"):
        assert hop in labels


def test_overview_without_data_points_to_replay(clean_environ: Path) -> None:
    at = open_page()
    assert not at.exception
    assert "Start a replay" in page_text(at)
    assert any("demo_replay" in str(link.proto) for link in at.get("page_link"))


def test_a_viewer_without_data_is_not_sent_to_the_operators_replay_page(clean_environ: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNAL_ROLE", "viewer")
    at = open_page()
    assert not at.exception
    assert "Check the producer and the Pipeline health page" in page_text(at)
    assert "Start a replay" not in page_text(at)
    assert not at.get("page_link")


def test_overview_and_wall_show_the_same_headline_tiles(clean_environ: Path) -> None:
    seed(clean_environ)
    overview = {m.label: m.value for m in open_page().metric}
    wall = {m.label: m.value for m in open_page(kiosk="1").metric}
    assert overview == wall == {"Records, last 5 min": "2", "Average signal (raw 0-31)": "15.0",
                                "Operators seen": "2", "Quarantined": "1"}


def test_changing_the_time_range_changes_the_numbers(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page("pages/live_aggregations.py")
    one_hour = table_with(at, "records")["records"].sum()
    at.segmented_control(key="range").set_value("6 h").run()
    six_hours = table_with(at, "records")["records"].sum()
    assert (one_hour, six_hours) == (6, 14)  # 1 h: scales 1 + 2, twice each; 6 h adds the 3 h window (4, twice)


def test_each_panel_offers_its_sql_and_a_csv(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page("pages/live_aggregations.py")
    sql = [c.value for c in at.code]
    assert any("FROM signal_strength_by_operator" in s for s in sql)
    assert any("?" in s and "CAST(? AS TIMESTAMP)" in s for s in sql)
    assert {b.label for b in at.get("download_button")} == {"CSV"}
    assert len(at.get("download_button")) == 5
    assert "Data as of" in page_text(at)


def test_the_coverage_map_says_which_whole_windows_it_counts(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page("pages/live_aggregations.py")
    caption = next(c.value for c in at.caption if "Coverage is kept in 60-minute windows" in c.value)
    start, end = caption.split("counts ")[1].rstrip(".").split(" to ")
    assert start.endswith(":00:00 UTC") and end.endswith(":00:00 UTC")


def test_viewer_sees_no_actions_and_no_operator_pages(clean_environ: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(clean_environ)
    monkeypatch.setenv("SIGNAL_ROLE", "viewer")
    at = open_page("pages/pipeline_health.py")
    assert not at.exception
    labels = [b.label for b in at.button]
    assert not any(label.startswith(("Re-run", "Start", "Stop")) for label in labels), labels
    with pytest.raises(Exception):  # noqa: B017 - not registered for viewers: AppTest cannot switch to it
        open_page("pages/demo_replay.py")


def test_a_forged_action_from_a_viewer_is_refused_and_audited(clean_environ: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seed(clean_environ)
    monkeypatch.setenv("SIGNAL_ROLE", "viewer")
    at = AppTest.from_file(str(PROJECT_ROOT / "Home.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/pipeline_health.py")
    at.session_state["pending_action"] = ("start_crawler", "crawler_status_count")
    at.run()
    assert any("Refused" in e.value for e in at.error)
    entry = FileAuditLog(clean_environ / "audit" / "audit.jsonl").recent()[0]
    assert (entry.action, entry.target, entry.outcome, entry.role) == (
        "start_crawler", "crawler_status_count", "refused", "viewer")


def test_operator_reruns_a_crawler_after_confirming_and_it_is_audited(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page("pages/pipeline_health.py")
    at.button(key="crawl_crawler_status_count").click().run()
    assert "Start crawler `crawler_status_count` now?" in page_text(at)
    at.button(key="crawler_confirm").click().run()
    succeeded, requested = FileAuditLog(clean_environ / "audit" / "audit.jsonl").recent()
    assert (requested.action, requested.target, requested.outcome, requested.role) == (
        "start_crawler", "crawler_status_count", "requested", "operator")
    assert (succeeded.action, succeeded.target, succeeded.outcome) == (
        "start_crawler", "crawler_status_count", "succeeded")


def test_the_crawler_table_counts_what_changed_in_words(clean_environ: Path) -> None:
    now = seed(clean_environ)
    at = open_page("pages/pipeline_health.py")
    # seed() writes windows 2 min, 30 min and 3 h ago: one dt/hr partition per distinct hour.
    hours = len({(now - timedelta(minutes=ago)).strftime("%Y-%m-%d %H") for ago in (2, 30, 180)})
    partitions = "1 partition" if hours == 1 else f"{hours} partitions"
    changes = table_with(at, "what changed").set_index("crawler")["what changed"]
    assert changes["crawler_status_count"] == f"1 table added, {partitions} added"
    assert changes["crawler_quarantine"] == f"1 table added, {partitions} added"


def test_crawler_button_is_disabled_while_it_runs(clean_environ: Path) -> None:
    seed(clean_environ)
    lock = clean_environ / "catalog" / "crawlers" / "crawler_status_count.lock"
    lock.write_text(f"{os.getpid()} {datetime.now(UTC).isoformat()}")  # held by a live process: this one
    at = open_page("pages/pipeline_health.py")
    assert at.button(key="crawl_crawler_status_count").disabled
    assert not at.button(key="crawl_crawler_coverage_grid").disabled


@pytest.fixture
def exposed() -> Iterator[None]:
    """Serve the console on every interface, as `--server.address 0.0.0.0` (the image) does."""
    before = streamlit_config.get_option("server.address")
    streamlit_config.set_option("server.address", "0.0.0.0")
    yield
    streamlit_config.set_option("server.address", before)


def test_the_console_is_served_on_loopback_and_its_user_is_an_operator(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page("pages/pipeline_health.py")
    assert streamlit_config.get_option("server.address") == "127.0.0.1"  # .streamlit/config.toml
    assert at.session_state["user"].role == "operator"
    assert at.button(key="crawl_crawler_status_count")


def test_an_exposed_console_without_a_login_has_only_viewers(clean_environ: Path, exposed: None) -> None:
    seed(clean_environ)
    at = open_page("pages/pipeline_health.py")
    assert not at.exception
    assert at.session_state["user"].role == "viewer"
    labels = [b.label for b in at.button]
    assert not any(label.startswith(("Re-run", "Start", "Stop")) for label in labels), labels
    at.session_state["pending_action"] = ("stop_job", "etl_streaming_mobile_logs")  # a forged request
    at.run()
    assert any("Refused" in e.value for e in at.error)
    [entry] = FileAuditLog(clean_environ / "audit" / "audit.jsonl").recent()
    assert (entry.action, entry.outcome, entry.role) == ("stop_job", "refused", "viewer")
    with pytest.raises(Exception):  # noqa: B017 - not registered for viewers: AppTest cannot switch to it
        open_page("pages/demo_replay.py")


def test_an_action_is_refused_with_a_message_when_the_audit_log_cannot_be_written(clean_environ: Path) -> None:
    seed(clean_environ)
    (clean_environ / "audit" / "audit.jsonl").mkdir(parents=True)  # every write fails
    at = open_page("pages/pipeline_health.py")
    at.button(key="crawl_crawler_status_count").click().run()
    at.button(key="crawler_confirm").click().run()
    assert not at.exception
    refusal = next(e.value for e in at.error if "Refused" in e.value)
    assert "the audit log cannot be written, so start crawler crawler_status_count did not run" in refusal
    assert not (clean_environ / "catalog" / "crawlers" / "crawler_status_count.lock").exists()


def test_the_audit_log_page_skips_and_counts_torn_lines(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page("pages/pipeline_health.py")
    at.button(key="crawl_crawler_status_count").click().run()
    at.button(key="crawler_confirm").click().run()
    with (clean_environ / "audit" / "audit.jsonl").open("ab") as handle:
        handle.write(b'{"time": "2026-03-01T10:00:00+00:00", "us')  # a crash mid-write
    at = open_page("pages/audit_log.py")
    assert not at.exception
    assert "1 unreadable audit entry was skipped" in page_text(at)
    assert table_with(at, "outcome")["outcome"].tolist() == ["succeeded", "requested"]


def test_starting_a_replay_is_audited_and_says_so_once(clean_environ: Path) -> None:
    at = open_page("pages/demo_replay.py")
    at.number_input(key="limit").set_value(3).run()
    at.button(key="start_replay").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["start replay sample: started"]
    requested, succeeded = reversed(FileAuditLog(clean_environ / "audit" / "audit.jsonl").recent()[:2])
    assert (requested.action, requested.target, requested.outcome) == ("start_replay", "sample", "requested")
    assert (succeeded.action, succeeded.outcome) == ("start_replay", "succeeded")
    at.run()
    assert not at.success  # shown once


def test_uploaded_csv_with_broken_lines_shows_their_line_numbers(clean_environ: Path) -> None:
    header = "hour,lat,long,signal,network,operator,status,description,speed,satellites,precission,provider," \
             "activity,postal_code"
    good = "10:00:00,40.4,-3.7,17,Movistar,Movistar,0,STATE_IN_SERVICE,0,4.0,5.0,gps,STILL,28013.0"
    data = "\n".join([header, good, good + ",extra", good, "10:00:00,40.4"]) + "\n"
    at = open_page("pages/demo_replay.py")
    at.radio(key="source").set_value("Upload a CSV").run()
    at.file_uploader(key="upload").upload("messy.csv", data.encode(), "text/csv").run()
    assert not at.exception
    rejections = table_with(at, "reason")
    assert rejections["line"].tolist() == [3, 5]
    assert "expected 14 fields, found 15" in rejections["reason"].iloc[0]
    assert {m.label: m.value for m in at.metric}["Will be sent"] == "2"
    # Who put which file on the console's disk: audited once, with its size and rows.
    at.run()
    user = at.session_state["user"].name
    entries = FileAuditLog(clean_environ / "audit" / "audit.jsonl").recent()
    assert [(e.user, e.action, e.target, e.outcome, e.reason) for e in reversed(entries)] == [
        (user, "upload_csv", "messy.csv", "requested", f"{len(data.encode())} bytes"),
        (user, "upload_csv", "messy.csv", "succeeded", f"{len(data.encode())} bytes, 4 rows"),
    ]


def test_kiosk_hides_navigation_and_shows_tiles(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page(kiosk="1")
    assert not at.exception
    assert not list(at.sidebar.markdown)  # no sidebar content
    assert not at.get("page_link")
    assert len(at.metric) == 4
    assert len(at.get("plotly_chart")) == 2


def test_sessions_refreshing_together_cost_one_query_per_panel(clean_environ: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seed(clean_environ)
    # One TTL of an hour: the five sessions below share a refresh interval (time windows are rounded to it).
    monkeypatch.setenv("SIGNAL_REFRESH_SECONDS", "3600")
    calls: list[str] = []
    original = LocalLake.query

    def counting(self: LocalLake, name: str, params: object = None):  # type: ignore[no-untyped-def]
        calls.append(name)
        return original(self, name, params)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalLake, "query", counting)
    for _ in range(5):
        at = open_page("pages/live_aggregations.py")
        assert not at.exception
    per_panel = {name: calls.count(name) for name in set(calls)}
    # Five sessions within one TTL: each panel's query ran once, and the filter options' 24 h queries once each.
    assert per_panel == {"kpis_compared": 1, "signal_by_operator_compared": 1, "signal_by_operator": 1,
                         "gps_by_provider": 2, "signal_per_minute": 1, "coverage_cells": 1, "status_by_postal_code": 1}


def test_pipeline_health_shows_the_last_compaction_and_vacuum(clean_environ: Path) -> None:
    seed(clean_environ)
    status = clean_environ / "lake" / "_job" / "status.json"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(json.dumps({
        "state": "STOPPED", "totals": {}, "recent_batches": [], "maintenance": {
            "compaction": {"kind": "compaction", "at": "2026-03-01T10:00:00+00:00", "seconds": 0.42,
                           "partitions": 2, "files_removed": 31, "files_added": 2, "files_deleted": 0, "error": None},
            "vacuum": {"kind": "vacuum", "at": "2026-03-01T10:05:00+00:00", "seconds": 0.1, "partitions": 0,
                       "files_removed": 0, "files_added": 0, "files_deleted": 0,
                       "error": "OSError: No space left on device"},
        }}))
    at = open_page("pages/pipeline_health.py")
    assert not at.exception
    runs = table_with(at, "partitions rewritten")
    assert runs.set_index("run").loc["compaction", "files replaced"] == "31 -> 2"
    assert "The last vacuum failed: OSError: No space left on device" in page_text(at)


def test_a_refused_checkpoint_offers_an_operator_the_reset_with_its_consequences(clean_environ: Path) -> None:
    seed(clean_environ)
    status = clean_environ / "lake" / "_job" / "status.json"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(json.dumps({"state": "FAILED", "totals": {}, "recent_batches": [],
                                  "error": "refusing to start etl_streaming_mobile_logs: its checkpoint ..."}))
    at = open_page("pages/pipeline_health.py")
    assert "refusing to start" in page_text(at)
    at.button(key="reset_checkpoint").click().run()
    assert "new checkpoint" in page_text(at) and "counted again" in page_text(at)
    assert at.button(key="job_confirm")  # confirming starts the job on a new checkpoint (audited by perform)


def test_no_reset_is_offered_when_the_job_did_not_refuse(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page("pages/pipeline_health.py")
    assert "reset_checkpoint" not in [b.key for b in at.button]


def test_a_custom_range_longer_than_31_days_is_clipped_with_a_notice(clean_environ: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    seed(clean_environ)
    asked: list[tuple[str, object]] = []
    original = LocalLake.query

    def recording(self: LocalLake, name: str, params: object = None):  # type: ignore[no-untyped-def]
        asked.append((name, params))
        return original(self, name, params)  # type: ignore[arg-type]

    monkeypatch.setattr(LocalLake, "query", recording)
    at = open_page("pages/live_aggregations.py")
    at.segmented_control(key="range").set_value("Custom").run()
    today = datetime.now(UTC).date()
    at.date_input(key="custom_from_day").set_value(today - timedelta(days=90)).run()
    assert not at.exception

    assert "A range is limited to 31 days: this one spans 91 days" in page_text(at)
    spans = [p["until"] - p["since"] for _, p in asked if isinstance(p, dict) and p.get("since")]  # type: ignore[operator]
    assert spans and max(spans) <= timedelta(days=31)
    # The latest 31 days, up to now: the seeded windows (minutes to hours ago) are all counted.
    assert table_with(at, "records")["records"].sum() == 14


def test_csv_downloads_neutralise_formulas_and_keep_negative_numbers(clean_environ: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from streamlit.delta_generator import DeltaGenerator

    from tests.lake_fixtures import SIGNAL, signal_rows, write_rows

    seed(clean_environ)
    window = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None) - timedelta(minutes=3)
    write_rows(clean_environ / "lake", SIGNAL, 9, signal_rows(window, "=HYPERLINK(\"http://evil\")", -80.0, 1))
    downloads: dict[str, str] = {}
    original = DeltaGenerator.download_button

    def capture(self: DeltaGenerator, label: str, data: object, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        downloads[str(kwargs.get("file_name"))] = str(data() if callable(data) else data)
        return original(self, label, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(DeltaGenerator, "download_button", capture)
    at = open_page("pages/live_aggregations.py")
    assert not at.exception

    rows = downloads["signal_by_operator_compared.csv"].splitlines()
    evil = next(row for row in rows if "HYPERLINK" in row)
    assert evil.startswith("\"'=HYPERLINK(")  # a leading quote: text to the spreadsheet, not a formula
    assert ",-80.0," in evil  # the number stays a number
    assert not any(row.startswith(("=", "\"=")) for csv_text in downloads.values() for row in csv_text.splitlines())


def test_an_uploaded_csv_with_an_unterminated_quote_loses_only_that_line(clean_environ: Path) -> None:
    header = "hour,lat,long,signal,network,operator,status,description,speed,satellites,precission,provider," \
             "activity,postal_code"
    good = "10:00:00,40.4,-3.7,17,Movistar,Movistar,0,STATE_IN_SERVICE,0,4.0,5.0,gps,STILL,28013.0"
    lines = [header, *[good] * 100]
    lines[5] = good.replace(",Movistar,0,", ',"Movistar,0,')  # line 6 opens a quote it never closes
    at = open_page("pages/demo_replay.py")
    at.radio(key="source").set_value("Upload a CSV").run()
    at.file_uploader(key="upload").upload("quote.csv", ("\n".join(lines) + "\n").encode(), "text/csv").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Rows"], metrics["Will be sent"], metrics["Rejected"]) == ("100", "99", "1")
    rejection = table_with(at, "reason").iloc[0]
    assert rejection["line"] == 6 and rejection["reason"].startswith("unterminated quote")
