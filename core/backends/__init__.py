"""Backends: one implementation per place the pipeline runs (local, AWS), chosen by SIGNAL_BACKEND."""

from __future__ import annotations

from core.backends.base import Backend
from core.config import Settings
from core.errors import ConfigError


def build_backend(settings: Settings) -> Backend:
    """Return the backend that SIGNAL_BACKEND names."""
    if settings.backend == "local":
        from core.backends.local import build_local_backend

        return build_local_backend(settings)
    if settings.backend == "aws":
        from core.backends.aws import build_aws_backend

        return build_aws_backend(settings)
    raise ConfigError(f"unknown backend {settings.backend!r}")
