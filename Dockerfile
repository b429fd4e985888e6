# syntax=docker/dockerfile:1
# Signal Stream console image: Streamlit and the app requirements only (requirements.lock, the hashed
# closure of requirements.txt: no pyspark, no JVM). The streaming job runs on AWS Glue, never here.
#
# Build for ECS on Graviton (ARM64):
#   docker buildx build --platform linux/arm64 -t signal-stream-console .
#
# Settings come from the environment of the ECS task definition (SIGNAL_BACKEND=aws and the other
# SIGNAL_* values); the image carries no credentials (the task role does) and chooses no backend. It sets
# one safe default: SIGNAL_ROLE=viewer, so an image started without settings never grants operator rights
# (the task's SIGNAL_AUTH=alb takes roles from the sign-in; an image served on 0.0.0.0 without a login is
# viewer-only whatever SIGNAL_ROLE says: core/auth.py gives operator rights without a login on loopback only).
#
# The base is pinned by digest: the multi-platform index of python:3.11-slim-bookworm (Python 3.11.16,
# Debian bookworm; it holds linux/arm64 and linux/amd64 images), as published in the Docker Official
# Images repo-info (docker-library/repo-info, repos/python/remote/3.11-slim-bookworm.md at commit 40cdaf34,
# images built 2026-09-19). To refresh it (Debian and Python patch releases land only through a new digest),
# read the new index digest and put it in BOTH FROM lines:
#   docker buildx imagetools inspect python:3.11-slim-bookworm    # the "Digest:" line of the index
# then rebuild and run the suite; tests/test_dockerfile.py fails on a FROM without @sha256.

FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# Every version and hash comes from the lock: a build next month installs what the suite tested.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --require-hashes --requirement /tmp/requirements.lock

FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}" \
    HOME=/home/app \
    SIGNAL_HOME=/app/.signal_stream \
    SIGNAL_ROLE=viewer
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Code is owned by root and read-only for the app user; only the data folder is writable
# ($SIGNAL_HOME, /app/.signal_stream: audit log, uploads, replay history).
COPY Home.py ./
COPY .streamlit/config.toml ./.streamlit/config.toml
COPY core/ ./core/
COPY ui/ ./ui/
COPY pages/ ./pages/
COPY data/mobile_logs.csv ./data/mobile_logs.csv
RUN mkdir ./.signal_stream && chown app:app ./.signal_stream
# The only paths the console writes at run time. On ECS the root filesystem is read-only and the task mounts
# an ephemeral volume at each of these (infra/template.yaml, MountPoints). A Fargate bind mount is root-owned
# 0755 unless the image declares the path as a VOLUME: then ECS copies the image's content and permissions at
# that path into the volume (Amazon ECS bind mounts docs), so app keeps write access (/tmp stays 1777):
#   $SIGNAL_HOME   the data folder (uploads, replay history; the local backend's stream, lake and catalog)
#   /tmp           temporary files (Python's tempfile, libraries)
#   $HOME          ~/.streamlit and any other per-user cache a library writes
VOLUME ["/app/.signal_stream", "/tmp", "/home/app"]
USER 10001:10001
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=3)"]
CMD ["streamlit", "run", "Home.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true"]
