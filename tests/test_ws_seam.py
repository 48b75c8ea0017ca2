"""Every Tornado private name server/ws/seam.py uses still exists, with the signature it uses.

A Tornado upgrade that renames or reshapes one of them fails here, by name, instead of making
the transport misbehave.
"""

from __future__ import annotations

import inspect
import os
import socket

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.testing
import tornado.util
import tornado.web
from tornado.iostream import IOStream

from server.ws import seam
from tests.ws_support import xor

FUNCTIONS = [(owner, name, params) for owner, name, params in seam.PRIVATE if params is not None]
ATTRIBUTES = [(owner, name) for owner, name, params in seam.PRIVATE if params is None]


def parameters(fn: object) -> tuple[str, ...]:
    return tuple(
        str(p.replace(annotation=inspect.Parameter.empty, default=inspect.Parameter.empty))
        for p in inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "owner, name, params",
    FUNCTIONS,
    ids=[f"{getattr(o, '__name__', o)}.{n}" for o, n, _ in FUNCTIONS],
)
def test_private_function_exists_with_its_signature(
    owner: object, name: str, params: tuple[str, ...]
) -> None:
    fn = getattr(owner, name)
    if name == "_websocket_mask":  # the C speedup has no signature to read: check the Python one
        fn = tornado.util._websocket_mask_python
    assert parameters(fn) == params


def test_receive_loop_is_still_a_coroutine_tornado_awaits() -> None:
    from tornado.websocket import WebSocketProtocol13

    assert inspect.iscoroutinefunction(WebSocketProtocol13._receive_frame_loop)
    source = inspect.getsource(WebSocketProtocol13._accept_connection)
    assert "self.stream = handler._detach_stream()" in source
    assert source.index("handler.open(") < source.index("await self._receive_frame_loop()")


def test_the_hand_over_overrides_only_the_receive_loop() -> None:
    """HandOver replaces Tornado's receive loop and adds nothing Tornado might use itself."""
    from tornado.websocket import WebSocketProtocol, WebSocketProtocol13

    from server.ws.handler import HandOver

    tornados = set(dir(WebSocketProtocol13)) | set(dir(WebSocketProtocol))
    ours = set(vars(HandOver)) | set(vars(seam.Protocol))
    bookkeeping = {"__module__", "__doc__", "__abstractmethods__", "_abc_impl"}
    assert ours & tornados - bookkeeping == {"_receive_frame_loop"}


def test_unmask_is_tornados_and_correct() -> None:
    assert seam.unmask is tornado.util._websocket_mask
    for n in (0, 1, 3, 4, 5, 1000, 65537):
        mask, data = os.urandom(4), os.urandom(n)
        assert seam.unmask(mask, data) == xor(mask, data)


@pytest.mark.asyncio
async def test_stream_attributes_exist_on_a_real_stream() -> None:
    a, b = socket.socketpair()
    stream = IOStream(a)
    try:
        assert stream._read_buffer_size == 0
        assert seam.buffered(stream) is None
        b.sendall(b"early frames")
        assert await stream.read_bytes(5, partial=True) == b"early"
        assert stream._read_buffer_size == len(b" frames")
        pending = seam.buffered(stream)
        assert pending is not None and await pending == b" frames"
    finally:
        stream.close()
        b.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("owner, name", ATTRIBUTES, ids=[n for _, n in ATTRIBUTES])
async def test_private_attribute_exists(owner: object, name: str) -> None:
    assert owner is IOStream  # the one kind of attribute listed
    a, b = socket.socketpair()
    try:
        assert isinstance(getattr(IOStream(a), name), int)
    finally:
        a.close()
        b.close()


def test_every_private_name_in_server_ws_is_in_the_seam() -> None:
    """No other module of the package touches a Tornado private name."""
    import re
    from pathlib import Path

    listed = {name for _, name, _ in seam.PRIVATE}
    package = Path(seam.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "seam.py":
            continue
        text = path.read_text()
        for name in listed:
            assert not re.search(rf"\.{name}\b", text), f"{path.name} uses {name}"
        assert "_websocket_mask" not in text and "_abort" not in text, path.name
