"""CSV exports: text a spreadsheet would run as a formula gets a leading quote; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pandas as pd
import pytest

from core.frames import neutralise_cell, to_safe_csv


def read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize(("cell", "exported"), [
    ("=HYPERLINK(\"http://evil\",\"x\")", "'=HYPERLINK(\"http://evil\",\"x\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3+cmd", "'-2+3+cmd"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("-", "'-"),
    ("Movistar", "Movistar"),
    ("", ""),
    ("a=b", "a=b"),
    ("-80", "-80"),  # text that is only a number is no formula
    ("+34.5", "+34.5"),
    ("-1.5e3", "-1.5e3"),
])
def test_neutralise_cell(cell: str, exported: str) -> None:
    assert neutralise_cell(cell) == exported


def test_text_cells_are_neutralised_and_numbers_stay_numbers() -> None:
    frame = pd.DataFrame({
        "operator": ["=1+1", "@x", "Yoigo", None],
        "avg_signal": [-80.0, -1.5, 3.0, None],
        "samples": pd.array([-3, 1, 2, None], dtype="Int64"),
        "minute": pd.to_datetime(["2026-03-01 10:00"] * 4, utc=True),
        "provisional": [True, False, True, False],
        "status": pd.Categorical(["-1", "=cmd", "0", "0"]),
    })
    rows = read(to_safe_csv(frame))

    assert rows[0] == ["operator", "avg_signal", "samples", "minute", "provisional", "status"]
    assert [row[0] for row in rows[1:]] == ["'=1+1", "'@x", "Yoigo", ""]
    assert [row[1] for row in rows[1:]] == ["-80.0", "-1.5", "3.0", ""]
    assert [row[2] for row in rows[1:]] == ["-3", "1", "2", ""]
    assert [row[5] for row in rows[1:]] == ["-1", "'=cmd", "0", "0"]
    assert rows[1][3] == str(datetime(2026, 3, 1, 10, tzinfo=UTC)).replace("T", " ")
    assert frame["operator"].iloc[0] == "=1+1"  # the shown frame is left as it is


def test_a_column_name_is_neutralised_too() -> None:
    assert read(to_safe_csv(pd.DataFrame({"=name": ["a"]})))[0] == ["'=name"]
