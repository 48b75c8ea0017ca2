"""A storm of connects is accepted at once, so the kernel's backlog stays empty, and served a
batch a turn of the event loop, oldest first, so no turn grows long (server/process/httpserver)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import tornado.web
from tornado.ioloop import IOLoop

from server.process import httpserver
from server.process.admission import Admission
from tests.support import make_config


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.mark.asyncio
async def test_a_burst_is_accepted_at_once_and_served_a_batch_a_turn_in_order(
    listener: socket.socket,
) -> None:
    config = make_config()
    server = httpserver.GuardedHTTPServer(
        tornado.web.Application(), admission=Admission(config.limits, 1000)
    )
    turn = 0
    served: list[tuple[int, int]] = []  # (turn, the client's port)

    def handle_socket(sock: socket.socket, address: Any) -> None:
        served.append((turn, address[1]))
        sock.close()

    server.handle_socket = handle_socket  # type: ignore[method-assign]
    n = 3 * httpserver.HANDLE_BATCH + 5
    clients = [socket.create_connection(listener.getsockname()) for _ in range(n)]
    try:
        server._on_acceptable(listener, IOLoop.READ)
        with pytest.raises(BlockingIOError):  # every connect was taken from the backlog
            listener.accept()
        assert served == []  # none served inside the accept handler

        while len(served) < n and turn < 100:
            turn += 1
            await asyncio.sleep(0)  # one turn of the loop
        assert [port for _, port in served] == [c.getsockname()[1] for c in clients]
        per_turn = [sum(1 for t, _ in served if t == k) for k in range(turn + 1)]
        assert max(per_turn) == httpserver.HANDLE_BATCH
        assert sum(1 for k in per_turn if k) == -(-n // httpserver.HANDLE_BATCH)
    finally:
        for client in clients:
            client.close()


@pytest.mark.asyncio
async def test_a_connection_that_fails_to_start_leaves_the_others_served(
    listener: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config()
    server = httpserver.GuardedHTTPServer(
        tornado.web.Application(), admission=Admission(config.limits, 1000)
    )
    served: list[int] = []
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
    broken = clients[0].getsockname()[1]

    def handle_socket(sock: socket.socket, address: Any) -> None:
        sock.close()
        if address[1] == broken:
            raise RuntimeError("a bug in one connection's start")
        served.append(address[1])

    server.handle_socket = handle_socket  # type: ignore[method-assign]
    try:
        server._on_acceptable(listener, IOLoop.READ)
        for _ in range(10):
            await asyncio.sleep(0)
        assert served == [c.getsockname()[1] for c in clients[1:]]
        failures = [r for r in caplog.records if r.name == "tornado.application"]
        assert [str(r.exc_info[1]) for r in failures if r.exc_info] == [
            "a bug in one connection's start"
        ]
    finally:
        for client in clients:
            client.close()
