# syntax=docker/dockerfile:1
# Signal Stream console image: Streamlit and the app requirements only (requirements.lock, the hashed
# closure of requirements.txt: no pyspark, no JVM). The streaming job runs on AWS Glue, never here.
#
# Build for ECS on Graviton (ARM64):
#   docker buildx build --platform linux/arm64 -t signal-stream-console .
#
# Settings come from the environment of the ECS task definition (SIGNAL_BACKEND=aws and the other
# SIGNAL_* values); the image sets none of them and carries no credentials: the task role does.

FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# Every version and hash comes from the lock: a build next month installs what the suite tested.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/venv/bin/pip install --require-hashes --requirement /tmp/requirements.lock

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Code is owned by root and read-only for the app user; only the data folder is writable
# ($SIGNAL_HOME defaults to ./.signal_stream: audit log, uploads, replay history).
COPY Home.py ./
COPY .streamlit/config.toml ./.streamlit/config.toml
COPY core/ ./core/
COPY ui/ ./ui/
COPY pages/ ./pages/
COPY data/mobile_logs.csv ./data/mobile_logs.csv
RUN mkdir ./.signal_stream && chown app:app ./.signal_stream
USER 10001:10001
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=3)"]
CMD ["streamlit", "run", "Home.py", "--server.port=8501", "--server.address=0.0.0.0", "--server.headless=true"]
