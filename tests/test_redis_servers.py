"""The redis-server processes the tests start: a port taken between choosing it and binding it
(any outgoing connection may take an ephemeral port) costs a retry, not the fixture. A CI run
once lost every Redis Cluster test to one such clash."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import redis_server
from tests.redis_cluster import ClusterNodeProcess, wait_answering
from tests.redis_server import PortTaken, answers_ping


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another socket is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_redis_whose_port_was_taken_starts_on_another(
    tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = [taken_port]  # the first port chosen is the taken one, as in the race
    free_port = redis_server.free_port
    monkeypatch.setattr(redis_server, "free_port", lambda: chosen.pop() if chosen else free_port())
    server = redis_server.started_redis(tmp_path)
    try:
        assert server.port != taken_port
        assert answers_ping("127.0.0.1", server.port)
    finally:
        server.stop()


def test_a_cluster_node_whose_port_was_taken_is_told_apart_from_a_slow_one(
    tmp_path: Path, taken_port: int
) -> None:
    node = ClusterNodeProcess(tmp_path, "127.0.0.1", taken_port, [])
    node.start()
    try:
        with pytest.raises(PortTaken):
            wait_answering(node, timeout=10.0)
        assert node.proc is None
    finally:
        node.stop()
