"""The OpenAPI document: it names every route and method there is, and nothing else; and the real
server, fuzzed with schemathesis against it, never answers 500 nor anything undocumented."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import tornado.web
from tornado.routing import PathMatches

from server import openapi
from tests.redis_server import free_port
from tests.support import API_KEY, RunningServer, http

ROOT = Path(__file__).resolve().parent.parent
ST = Path(sys.executable).parent / "st"
METHODS = ("get", "post", "put", "patch", "delete")
DESCRIBED = re.compile(r"^/(api/|healthz$|readyz$|metrics$)")


def routes(app: tornado.web.Application) -> dict[str, set[str]]:
    """OpenAPI-style path -> methods the handler implements, for the described routes."""
    found: dict[str, set[str]] = {}
    base = tornado.web.RequestHandler
    for rule in app.wildcard_router.rules:
        assert isinstance(rule.matcher, PathMatches)
        pattern = rule.matcher.regex.pattern.rstrip("$")
        path = pattern.replace("([^/]+)", "{channel}")
        if not DESCRIBED.match(path):
            continue
        handler = rule.target
        found[path] = {m for m in METHODS if getattr(handler, m) is not getattr(base, m)}
    return found


@pytest.mark.asyncio
async def test_document_describes_exactly_the_routes(app: RunningServer) -> None:
    application = app.server.request_callback
    assert isinstance(application, tornado.web.Application)
    doc = openapi.document()
    described = {path: set(ops) & set(METHODS) for path, ops in doc["paths"].items()}
    assert described == routes(application)
    assert doc["openapi"].startswith("3.1")


@pytest.mark.asyncio
async def test_document_is_served_without_a_key(app: RunningServer) -> None:
    code, body = await http(app, "GET", "/api/openapi.json", key=None)
    assert code == 200 and body == orjson.loads(orjson.dumps(openapi.document()))


@pytest.mark.asyncio
async def test_unknown_paths_and_methods_answer_in_the_error_shape(app: RunningServer) -> None:
    code, body = await http(app, "GET", "/api/nothing", key=None)
    assert (code, body["error"]["code"]) == (404, "not_found")
    code, body = await http(app, "GET", "/api/publish")
    assert (code, body["error"]["code"]) == (405, "bad_request")


@pytest.mark.asyncio
async def test_history_query_arguments_are_checked(app: RunningServer) -> None:
    for query in ("since=%C2%B2", "since=-1", "limit=abc", f"since={2**63}", "reverse=yes"):
        code, body = await http(app, "GET", f"/api/channels/room/history?{query}")
        assert code == 400 and body["error"]["code"] == "bad_request", query


@pytest.fixture
def real_server(tmp_path: Path, redis_url: str, mongo_url: str) -> Iterator[str]:
    """`python -m server` on Redis and the MongoDB-compatible server, as in production."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        SWITCHBOARD_API_KEY=API_KEY,
        SWITCHBOARD_REDIS_URL=redis_url,
        SWITCHBOARD_REDIS_PREFIX=f"fuzz-{secrets.token_hex(4)}",
        SWITCHBOARD_MONGO_URL=mongo_url,
        SWITCHBOARD_MONGO_DATABASE=f"fuzz_{secrets.token_hex(4)}",
    )
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--dev", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(
    real_server: str, tmp_path: Path
) -> None:
    checks = ",".join(
        (
            "not_a_server_error",
            "status_code_conformance",
            "content_type_conformance",
            "response_schema_conformance",
            "negative_data_rejection",
            "missing_required_header",
            "unsupported_method",
            "allow_header_conformance",
            "ignored_auth",
        )
    )
    done = subprocess.run(
        [
            ST,
            "run",
            f"{real_server}/api/openapi.json",
            "--url",
            real_server,
            "--header",
            f"Authorization: apikey {API_KEY}",
            "--checks",
            checks,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "50",
            "--seed",
            "16",
            "--workers",
            "1",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout, done.stdout[-3000:]
