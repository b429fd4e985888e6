"""Process-wide settings and backend, and query results cached for every session of the console."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import streamlit as st

from core.backends import build_backend
from core.backends.base import Backend, QueryResult
from core.config import Settings
from core.errors import ConfigError


@st.cache_resource
def settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings.from_env(os.environ)


@st.cache_resource
def backend() -> Backend:
    """Return the backend, built once per process and shared by every session."""
    return build_backend(settings())


def _ttl() -> int:
    # Decorators need the TTL at import; a bad setting is reported by Home.py, not here.
    try:
        return settings().refresh_seconds
    except ConfigError:
        return 20


@st.cache_data(ttl=_ttl(), show_spinner=False, refresh_mode="background")
def query(name: str, params: Mapping[str, Any] | None = None) -> QueryResult:
    """Return a named query's result; one backend call per TTL, shared by all sessions."""
    return backend().lake.query(name, dict(params or {}))
