"""Hostile frames: the handler never raises; every frame gets an error reply or a documented close.

Hypothesis drives the Connection directly (no socket), with a transport that records what the
server sends, so thousands of frames run in seconds. JSON is nested up to 100,000 deep.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.app import build_node
from server.client import Connection
from server.protocol import Close, check_exact
from server.ws.transport import Transport
from tests.support import make_config

DOCUMENTED_CLOSES = {Close.POLICY, Close.UNAUTHORIZED}
OPS = ["auth", "subscribe", "unsubscribe", "publish", "history", "presence", "ping", "nope"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "channel": json_values | st.sampled_from(["room", "chat:x", "user#1", "nons:a", "a" * 256]),
        "data": json_values,
        "since": json_values | st.fixed_dictionaries({"offset": json_values, "epoch": json_values}),
        "limit": json_values,
        "reverse": json_values,
        "token": json_values,
    },
)
commands = st.builds(
    lambda i, op, f: {"id": i, "op": op, **f},
    st.integers(min_value=-5, max_value=2**64) | json_values,
    st.sampled_from(OPS) | json_values,
    fields,
)
raw_frames = st.one_of(
    commands.map(lambda c: json.dumps(c).encode()),  # stdlib: integers of any size
    st.binary(max_size=64),  # invalid UTF-8 and anything else
    st.integers(min_value=1, max_value=100_000).map(lambda n: b"[" * n + b"]" * n),  # deep
    st.integers(min_value=1, max_value=100_000).map(
        lambda n: b'{"id":1,"op":"publish","data":' + b"[" * n + b"]" * n + b"}"
    ),
    st.integers(min_value=1, max_value=100_000).map(  # deep, with the exact-integer check too
        lambda n: (
            b'{"id":1,"op":"publish","channel":"room","data":'
            + b"[" * n
            + b"1234567890123456789012"
            + b"]" * n
            + b"}"
        )
    ),
    st.sampled_from([253, 254, 255, 995, 1023, 1024, 1025, 100_000]).map(
        lambda n: b'{"id":1,"op":"publish","channel":"room","data":' + b"[" * n + b"]" * n + b"}"
    ),
    st.just(b'{"id":1,"op":"history","channel":"room","limit":1' + b"0" * 400 + b"}"),
    st.just(b'{"id":1e999,"op":"ping"}'),
)


class ErrorLog(logging.Handler):
    """Collects error records: a handler that raised logs one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Recorder(Transport):
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closed: int | None = None

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def reply(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str) -> None:
        self.closed = code


def payload(frame: bytes) -> dict[str, Any]:
    """Decode one server frame (our own encoder: 2, 4 or 10 header bytes)."""
    n = frame[1]
    start = 2 if n < 126 else 4 if n == 126 else 10
    decoded: dict[str, Any] = json.loads(frame[start:])
    return decoded


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(raw_frames, min_size=1, max_size=8))
def test_hostile_frames(loop: asyncio.AbstractEventLoop, frames: list[bytes]) -> None:
    node = build_node(make_config())

    async def run() -> None:
        await node.start()
        transport = Recorder()
        conn = Connection(node, transport)
        conn.open()
        hello = transport.frames.pop(0)
        assert payload(hello)["push"] == "hello"
        for frame in frames:
            if transport.closed is not None:
                break
            before = len(transport.frames)
            text = frame.decode("utf-8", errors="surrogateescape")
            result = conn.handle(text)
            if result is not None:
                await result
            await conn.settled()  # a publish runs alongside the next commands: its reply
            replies = [payload(f) for f in transport.frames[before:]]
            answered = [r for r in replies if "error" in r or r.get("ok")]
            assert answered or transport.closed is not None, (frame, replies)
            for r in answered:
                if "error" in r:
                    assert r["error"]["code"] != "internal", (frame, r)
                    assert isinstance(r["error"]["message"], str) and r["error"]["message"]
        if transport.closed is not None:
            assert transport.closed in DOCUMENTED_CLOSES
        await conn.closed()
        await node.close()

    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    try:
        loop.run_until_complete(run())
    finally:
        logging.getLogger().removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


@given(st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([str, bytes, bytearray]))
@example(2**64 - 1, bytes)
@example(2**64, bytes)
@example(-(2**63), bytearray)
@example(-(2**63) - 1, bytes)
@example(10**18, str)
def test_integers_are_refused_exactly_beyond_64_bits_whatever_the_frame_type(
    n: int, kind: type
) -> None:
    """check_exact searches a bytes frame as it came (no decode first): the same verdict for
    text and bytes, at and around the edges of -2^63 .. 2^64-1."""
    doc = f'{{"id":1,"op":"publish","channel":"c","data":[{n},"x"]}}'
    raw = doc if kind is str else kind(doc.encode())
    fits = -(2**63) <= n <= 2**64 - 1
    if fits:
        check_exact(raw)
    else:
        with pytest.raises(ValueError, match="64 bits"):
            check_exact(raw)
