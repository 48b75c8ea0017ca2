"""Fixtures of our own on pytest-asyncio and tornado.testing (see README: why not pytest-tornado).

Service fixtures (Redis, the MongoDB-compatible server) live in tests/fixtures/, one module each,
and are loaded here as plugins.
"""

from __future__ import annotations

import pkgutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest_asyncio

import tests.fixtures
from server.config import Config
from tests.support import RunningServer, WsClient, make_config, start_server, ws_open

pytest_plugins = [f"tests.fixtures.{m.name}" for m in pkgutil.iter_modules(tests.fixtures.__path__)]


@pytest_asyncio.fixture
async def config() -> Config:
    return make_config()


@pytest_asyncio.fixture
async def app(config: Config) -> AsyncIterator[RunningServer]:
    """A Switchboard server on a free port, in the test's own event loop."""
    server = await start_server(config)
    yield server
    await server.stop()


@pytest_asyncio.fixture
async def base_url(app: RunningServer) -> str:
    return app.base_url


@pytest_asyncio.fixture
async def ws_connect(app: RunningServer) -> AsyncIterator[Callable[..., Awaitable[WsClient]]]:
    """Open protocol clients to `app`; all are closed after the test."""
    opened: list[WsClient] = []

    async def connect(
        query: str = "", headers: dict[str, str] | None = None, **kw: Any
    ) -> WsClient:
        client = await ws_open(app.ws_url + query, headers)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.close()
