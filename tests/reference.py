"""An independent recomputation of the named queries with pandas, straight from a CSV.

Written from the contract in DESIGN.md, not from core/records.py, so the pipeline is checked against
a second implementation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

FIELDS = 14


def load_valid_rows(path: Path) -> pd.DataFrame:
    """Return the CSV's well-formed rows (14 fields) as strings."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [row for row in reader if len(row) == FIELDS]
    return pd.DataFrame(rows, columns=header, dtype=str)


def _key(series: pd.Series) -> pd.Series:
    cleaned = series.str.strip().str.replace(r"\s+", " ", regex=True).str.lower()
    return cleaned.where(cleaned != "", "unknown")


def _code(series: pd.Series) -> pd.Series:
    cleaned = series.str.strip().str.replace(r"\.0+$", "", regex=True)
    return cleaned.where(cleaned != "", "unknown")


def _number(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series.str.strip(), errors="coerce")


def signal_by_operator(rows: pd.DataFrame) -> pd.DataFrame:
    """Return operator key (lower-case), avg_signal and samples."""
    frame = pd.DataFrame({"operator": _key(rows["operator"]), "signal": _number(rows["signal"])})
    grouped = frame.groupby("operator")["signal"].agg(avg_signal="mean", samples="count")
    return grouped.reset_index()


def gps_by_provider(rows: pd.DataFrame) -> pd.DataFrame:
    """Return provider, avg_precision, avg_satellites and samples."""
    frame = pd.DataFrame({
        "provider": _key(rows["provider"]),
        "precision": _number(rows["precission"]),
        "satellites": _number(rows["satellites"]),
    })
    grouped = frame.groupby("provider").agg(
        avg_precision=("precision", "mean"), avg_satellites=("satellites", "mean"), samples=("precision", "count")
    )
    return grouped.reset_index()


def status_by_postal_code(rows: pd.DataFrame) -> pd.DataFrame:
    """Return postal_code, status, description and records."""
    frame = pd.DataFrame({
        "postal_code": _code(rows["postal_code"]),
        "status": _code(rows["status"]),
        "description": rows["description"].str.strip().str.upper().replace("", "UNKNOWN"),
    })
    return frame.groupby(["postal_code", "status", "description"]).size().rename("records").reset_index()
