"""A reverse proxy that refuses WebSocket upgrades, as some corporate proxies do, for the SSE
fallback's browser tests: `python -m tests.upgrade_proxy LISTEN_PORT UPSTREAM_PORT`.

Every request with an `Upgrade` header gets 403. Any other is passed to the upstream server
on 127.0.0.1, one request per connection (`Connection: close` both ways), and its response is
streamed back as it comes (event streams included); with the upstream down, 502. SIGUSR1 cuts
every open connection at once, as a proxy's restart or a network change would.
"""

from __future__ import annotations

import asyncio
import signal
import sys

REFUSED = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
HOP_BY_HOP = (b"connection:", b"keep-alive:", b"proxy-connection:")


class Proxy:
    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.open: set[asyncio.StreamWriter] = set()

    def cut_all(self) -> None:
        for writer in list(self.open):
            writer.transport.abort()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.open.discard(writer)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *headers = head[:-4].split(b"\r\n")
        if any(h.lower().startswith(b"upgrade:") for h in headers):
            writer.write(REFUSED)
            await writer.drain()
            return
        kept = [h for h in headers if not h.lower().startswith(HOP_BY_HOP)]
        head = b"\r\n".join([request_line, *kept, b"Connection: close", b"", b""])
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.write(BAD_GATEWAY)
            await writer.drain()
            return
        self.open.add(up_writer)
        try:
            up_writer.write(head)
            request = asyncio.ensure_future(_pipe(reader, up_writer))
            await _pipe(up_reader, writer)  # the response, until the upstream closes
            request.cancel()
        finally:
            self.open.discard(up_writer)
            up_writer.transport.abort()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(65536):
        dst.write(data)
        await dst.drain()


async def main(listen: int, upstream: int) -> None:
    proxy = Proxy(upstream)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.cut_all)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("listening", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
