"""Audit log: every operator action attempted, who, what, when and the outcome."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import context

st.title("Audit log")
if not context.current_user().is_operator:
    st.error("The audit log is for operators.")
    st.stop()

entries = context.audit_log().recent(500)
if not entries:
    st.info("No operator action yet.")
else:
    st.dataframe(pd.DataFrame([{
        "time (UTC)": e.time.strftime("%Y-%m-%d %H:%M:%S"), "user": e.user, "role": e.role, "action": e.action,
        "target": e.target, "outcome": e.outcome, "reason": e.reason,
    } for e in entries]), hide_index=True, width="stretch", key="table_audit")
