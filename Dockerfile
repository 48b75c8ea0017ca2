# Switchboard's image: dependencies built in one stage, a slim non-root runtime in the next.
# Not built on the development machine (no container runtime there); see docs/scaling.md.
#   docker build -t switchboard .
#   docker run -e SWITCHBOARD_REDIS_URL=... -e SWITCHBOARD_MONGO_URL=... -p 8000:8000 switchboard

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY server ./server
COPY handlers ./handlers
COPY switchboard_client ./switchboard_client
# The runtime dependencies pinned in pyproject.toml, no dev or bench extra.
RUN python -m venv /venv && /venv/bin/pip install .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --create-home --home-dir /app switchboard
COPY --from=build /venv /venv
WORKDIR /app
# Pages, scripts and the sample config ship inside the package: nothing else to copy. Mount a
# config at /app/config.toml, or set SWITCHBOARD_* variables (secrets, URLs).
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SWITCHBOARD_SERVER_HOST=0.0.0.0
USER 10001:10001
EXPOSE 8000
# Liveness only: /readyz (Redis and MongoDB reachable) is for load balancers and Kubernetes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# SIGTERM drains: clients are told to reconnect elsewhere over [server] drain_s (10 s), then
# shutdown_grace_s (5 s); give the container at least 20 s to stop (docker stop -t 20).
STOPSIGNAL SIGTERM
CMD ["switchboard", "--processes", "2"]
