"""Fault tests open console pages: each test starts with fresh Streamlit caches (the backend is cached per process)."""

from __future__ import annotations

import pytest
import streamlit as st


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    st.cache_resource.clear()
    st.cache_data.clear()
