# hbsm in a container. Build: docker build -t hbsm .   Run: see docs/deploy.md.
#
# The Python the tests run on; requirements.lock is universal (any platform, Python >= 3.11).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/hbsm/venv/bin:$PATH

# Every dependency at the version and hashes the lock pins, in a layer of its own: a change to
# hbsm's code rebuilds only the layers below. (The lock holds the dev tools too: one lock for
# every use, at the cost of a bigger image.)
COPY requirements.lock /opt/hbsm/src/
RUN python -m venv /opt/hbsm/venv \
 && pip install --require-hashes -r /opt/hbsm/src/requirements.lock

# hbsm itself, without resolving anything again; the sources go once it is installed.
COPY pyproject.toml README.md /opt/hbsm/src/
COPY hbsm /opt/hbsm/src/hbsm
COPY tui /opt/hbsm/src/tui
RUN pip install --no-deps /opt/hbsm/src \
 && rm -rf /opt/hbsm/src \
 && hbsm --version

COPY deploy/healthcheck.py /opt/hbsm/healthcheck.py

# A user of its own, no login, no root. Its home is where the event log and the supervised
# services' output go (the default log path, events/heartbeat.jsonl, is relative to it).
RUN groupadd --system --gid 10001 hbsm \
 && useradd --system --uid 10001 --gid hbsm --home-dir /var/lib/hbsm --create-home \
      --shell /usr/sbin/nologin hbsm
WORKDIR /var/lib/hbsm
VOLUME /var/lib/hbsm

# Reachable from outside the container, which hbsm refuses without an admin token: give one
# (docker run -e HEARTBEAT_ADMIN_TOKEN=...). A config: -e HEARTBEAT_CONFIG=/etc/hbsm/hbsm.toml
# with the file mounted there; without one hbsm watches its own /health.
ENV HEARTBEAT_HOST=0.0.0.0 \
    HEARTBEAT_PORT=5000
EXPOSE 5000

USER 10001:10001

# Unhealthy when the API does not answer or the event log cannot be written; a monitored
# service being down is not hbsm's illness (deploy/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/hbsm/healthcheck.py"]

# SIGTERM starts hbsm's orderly stop (effects settle, the log flushed): give it time with
# docker run --stop-timeout 30 (the default 10 s can cut a stop short).
STOPSIGNAL SIGTERM
ENTRYPOINT ["hbsm"]
CMD ["run"]
