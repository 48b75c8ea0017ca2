"""A protocol v1 client over the SSE transport, on raw sockets: the event stream is read (chunked
HTTP, then events) byte by byte as a browser would, and can be cut at any moment."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
import tornado.httpclient


@dataclass
class Event:
    kind: str  # "message", or a named event: "session", "close"
    data: str
    id: str | None

    def json(self) -> dict[str, Any]:
        obj = orjson.loads(self.data)
        assert isinstance(obj, dict)
        return obj


@dataclass
class EventStream:
    """One GET /sse response."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    headers: dict[str, str]
    comments: int = 0
    events: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, port: int, query: str = "", headers: dict[str, str] | None = None
    ) -> EventStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [f"GET /sse{query} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        lines += ["Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *header_lines = head.decode().split("\r\n")
        status = int(status_line.split()[1])
        hdrs = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        stream = cls(reader, writer, status, hdrs)
        if status == 200:
            stream._task = asyncio.ensure_future(stream._read())
        return stream

    async def body(self) -> bytes:
        """The whole (non-stream) body of a refused request."""
        n = int(self.headers.get("content-length", "0"))
        return await self.reader.readexactly(n) if n else b""

    async def _read(self) -> None:
        buf = b""
        try:
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.strip(), 16)
                if size == 0:
                    break
                buf += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    self._block(block.decode())
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            await self.events.put(None)

    def _block(self, block: str) -> None:
        kind, data, event_id = "message", [], None
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
        if data:
            self.events.put_nowait(Event(kind, "\n".join(data), event_id))

    async def next(self, timeout: float = 5.0) -> Event | None:
        """The next event; None once the response ended."""
        return await asyncio.wait_for(self.events.get(), timeout)

    def drop(self) -> None:
        """Cut the TCP connection, as a proxy or a network change would."""
        self.writer.transport.abort()
        self.writer.close()

    async def close(self) -> None:
        self.drop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class SseClient:
    """Protocol v1 over an event stream and POSTs; pushes are queued, replies matched by id."""

    def __init__(self, port: int, post_port: int | None = None) -> None:
        self.port = port
        self.post_port = post_port or port
        self.stream: EventStream | None = None
        self.streams: list[EventStream] = []
        self.session = ""
        self.hello: dict[str, Any] = {}
        self.last_id: str | None = None
        self.next_id = 1
        self.backlog: list[dict[str, Any]] = []
        self.closed: dict[str, Any] | None = None

    async def connect(self, query: str = "", headers: dict[str, str] | None = None) -> None:
        self.stream = await EventStream.open(self.port, query, headers)
        self.streams.append(self.stream)
        assert self.stream.status == 200, self.stream.status
        assert self.stream.headers["content-type"].startswith("text/event-stream")
        first = await self.stream.next()
        assert first is not None and first.kind == "session"
        self.session = first.json()["session"]
        self.hello = await self.recv()
        assert self.hello["push"] == "hello"

    async def resume(self, last_id: str | None = None) -> EventStream:
        """Reconnect the stream with Last-Event-ID (by default the last event received)."""
        last = last_id or self.last_id
        assert last is not None
        self.stream = await EventStream.open(self.port, headers={"Last-Event-ID": last})
        self.streams.append(self.stream)
        if self.stream.status == 200:
            first = await self.stream.next()
            assert first is not None
            if first.kind == "close":  # refused: the session cannot go on
                self.closed = first.json()
                self.backlog.append({"closed": self.closed})
            else:
                assert first.kind == "session" and first.json()["session"] == self.session
        return self.stream

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next protocol frame; {"closed": {...}} after a close event."""
        assert self.stream is not None
        event = await self.stream.next(timeout)
        if event is None:
            return {"ended": True}
        if event.kind == "close":
            self.closed = event.json()
            return {"closed": self.closed}
        assert event.kind == "message", event
        self.last_id = event.id
        return event.json()

    async def post(self, *frames: bytes, headers: dict[str, str] | None = None) -> int:
        req = tornado.httpclient.HTTPRequest(
            f"http://127.0.0.1:{self.post_port}/sse",
            method="POST",
            body=b"\n".join(frames),
            headers={"Switchboard-Session": self.session, **(headers or {})},
        )
        resp = await tornado.httpclient.AsyncHTTPClient().fetch(req, raise_error=False)
        return resp.code

    async def send(self, op: str, **fields: Any) -> int:
        cmd_id, self.next_id = self.next_id, self.next_id + 1
        return await self.post(orjson.dumps({"id": cmd_id, "op": op, **fields}))

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        cmd_id = self.next_id
        assert await self.send(op, **fields) == 202
        while True:
            msg = await self.recv()
            if msg.get("id") == cmd_id:
                return msg
            self.backlog.append(msg)

    async def ok(self, op: str, **fields: Any) -> Any:
        reply = await self.call(op, **fields)
        assert "error" not in reply, reply
        return reply["result"]

    async def push(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            msg = self.backlog.pop(0) if self.backlog else await self.recv(timeout)
            if msg.get("push") == kind or kind in msg:
                return msg

    async def close(self) -> None:
        for stream in self.streams:
            await stream.close()
