"""An independent recomputation of the named queries with pandas, straight from a CSV.

Written from the contract in DESIGN.md, not from core/records.py, so the pipeline is checked against
a second implementation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

FIELDS = 14
# A handset with no operator to show writes its service state in the operator (or network) field. Such a
# row has no operator ("unknown") and the status the text names, whatever status it reported.
NO_SERVICE = {
    "solo llamadas de emergencia": "2",
    "sólo llamadas de emergencia": "2",
    "emergency calls only": "2",
    "sin servicio": "1",
    "no service": "1",
}
STATE_DESCRIPTIONS = {"1": "STATE_OUT_OF_SERVICE", "2": "STATE_EMERGENCY_ONLY"}


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


def _operator(series: pd.Series) -> pd.Series:
    key = _key(series)
    return key.where(~key.isin(list(NO_SERVICE)), "unknown")


def _no_service(rows: pd.DataFrame) -> pd.Series:
    """Return the status code a row's operator, else network, text names (NaN for none)."""
    by_operator, by_network = _key(rows["operator"]).map(NO_SERVICE), _key(rows["network"]).map(NO_SERVICE)
    return by_operator.where(by_operator.notna(), by_network)


def signal_by_operator(rows: pd.DataFrame) -> pd.DataFrame:
    """Return operator key (lower-case; no-service texts are 'unknown'), avg_signal and samples."""
    frame = pd.DataFrame({"operator": _operator(rows["operator"]), "signal": _number(rows["signal"])})
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
    """Return postal_code, status, description and records (a no-service text sets the status)."""
    state = _no_service(rows)
    reported = rows["description"].str.strip().str.upper().replace("", "UNKNOWN")
    frame = pd.DataFrame({
        "postal_code": _code(rows["postal_code"]),
        "status": state.where(state.notna(), _code(rows["status"])),
        "description": state.map(STATE_DESCRIPTIONS).where(state.notna(), reported),
    })
    return frame.groupby(["postal_code", "status", "description"]).size().rename("records").reset_index()
