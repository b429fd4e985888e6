"""Audit log: every operator action attempted, who, what, when and the outcome."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import SignalStreamError
from ui import context

context.through_router()
st.title("Audit log")
if not context.current_user().is_operator:
    st.error("The audit log is for operators.")
    st.stop()

try:
    entries = context.audit_log().recent(500)
except SignalStreamError as error:
    st.error(f"The audit log cannot be read: {error}")
    st.stop()
# Torn or invalid entries (a crash mid-write, something else writing there) are skipped, never fatal.
skipped = getattr(entries, "skipped", 0)
if skipped:
    st.warning(f"{skipped} unreadable audit entr{'y was' if skipped == 1 else 'ies were'} skipped "
               "(torn by a crash mid-write, or not written by the console).")
if not entries:
    st.info("No operator action yet.")
else:
    st.caption("Each action is written when requested, before it runs, then as succeeded or failed; "
               "a request without an outcome is still running or was interrupted.")
    st.dataframe(pd.DataFrame([{
        "time (UTC)": e.time.strftime("%Y-%m-%d %H:%M:%S"), "user": e.user, "role": e.role, "action": e.action,
        "target": e.target, "outcome": e.outcome, "reason": e.reason,
    } for e in entries]), hide_index=True, width="stretch", key="table_audit")
