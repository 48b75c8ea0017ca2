"""The kernel's floor for fan-out: CPU per `send` of one small frame to one socket, no server.

A fan-out server's cost per delivery cannot go below what one `send` of the frame costs its
process: on loopback the sender's `send` also runs the receiver's TCP receive path and wake-up.
This measures that floor with the cost scenarios' shape (`bench.suite` `cost-1k-50`,
`cost-10k-5`): a sender process (pinned to core 0, as the servers are) sends one frame of
`--payload` bytes to each of `--sockets` sockets, `--rate` rounds a second; a receiver process
(core 1, as the tester) reads them all. Printed: the sender's CPU per send, user and system.
Compare it with the servers' CPU per delivery measured in the same minutes.

`--path hub` sends the same rounds through Switchboard's own delivery path instead of a bare
loop: `Hub.broadcast` to subscribers whose `send` is an `Outbox` (server/ws/outbox.py), flushed
by the `Flusher` on an asyncio loop, as in the server. The difference between the two is what
that path costs per delivery, without a publication's parsing or the tester's noise.

    python -m bench.send_floor [--sockets 1000] [--rate 50] [--seconds 5] [--payload 150]
                               [--path floor|hub]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import selectors
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from server.hub import Hub
from server.ws.outbox import Flusher, Outbox

SERVER_CORE, CLIENT_CORE = 0, 1


def pin(core: int) -> None:
    """Pin this process to `core` where the machine has it (as bench.suite pins)."""
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def receive(port: int, count: int, ready: Connection) -> None:
    """Connect `count` sockets and read everything sent to them until the sender hangs up."""
    pin(CLIENT_CORE)
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    ready.send(True)
    open_count = count
    while open_count:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(sock)
                sock.close()
                open_count -= 1


def cpu_s() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class Subscriber:
    """What the hub holds of a connection: an id, no user, and its outbox's `send`."""

    __slots__ = ("id", "user", "send")

    def __init__(self, outbox: Outbox) -> None:
        self.id = str(outbox.fd)
        self.user: str | None = None
        self.send: Callable[[bytes], None] = outbox.send


class Dropping(Outbox):
    """An outbox whose client fell too far behind: the bench only stops writing to it."""

    __slots__ = ()

    def overflowed(self) -> None:
        pass


class Rounds:
    """`rate` rounds a second: one second of warm-up, then `seconds` measured. The caller
    adds to `sends` in each round; the count and the CPU clock start again when warm."""

    def __init__(self, rate: float, seconds: float) -> None:
        self.interval, self.seconds = 1 / rate, seconds
        self.sends = 0
        self.start_cpu: tuple[float, float] | None = None
        self.next_round = time.monotonic()
        self.warm_until = self.next_round + 1.0
        self.measured_from = 0.0

    def more(self) -> bool:
        """Whether another round is due (False once the measured seconds are over)."""
        now = time.monotonic()
        if self.start_cpu is None and now >= self.warm_until:
            self.start_cpu, self.measured_from, self.sends = cpu_s(), now, 0
        return self.start_cpu is None or now < self.measured_from + self.seconds

    def wait(self) -> float:
        """Seconds until the next round."""
        self.next_round += self.interval
        return max(0.0, self.next_round - time.monotonic())

    def result(self) -> tuple[int, tuple[float, float]]:
        assert self.start_cpu is not None
        return self.sends, self.start_cpu


def floor_rounds(
    conns: list[socket.socket], frame: bytes, rate: float, seconds: float
) -> tuple[int, tuple[float, float]]:
    """A bare loop of `send`: (sends in the measured seconds, CPU at their start)."""
    rounds = Rounds(rate, seconds)
    while rounds.more():
        for conn in conns:
            try:
                conn.send(frame)
            except BlockingIOError:
                pass  # the receiver fell behind: this frame is dropped, not counted
            else:
                rounds.sends += 1
        time.sleep(rounds.wait())
    return rounds.result()


async def hub_rounds(
    conns: list[socket.socket], frame: bytes, rate: float, seconds: float
) -> tuple[int, tuple[float, float]]:
    """The server's path: `Hub.broadcast` into outboxes, flushed at the end of the loop turn."""
    loop, flusher, hub = asyncio.get_running_loop(), Flusher(), Hub[Subscriber]()
    for conn in conns:
        sub = Subscriber(Dropping(conn, loop, 1 << 20, flusher))
        hub.add_client(sub)
        hub.subscribe("bench", sub, buffer=False)
    rounds, offset = Rounds(rate, seconds), 0
    while rounds.more():
        offset += 1
        rounds.sends += hub.broadcast("bench", offset, frame)
        await asyncio.sleep(rounds.wait())
    return rounds.result()


def measure(
    sockets: int, rate: float, seconds: float, payload: int, path: str = "floor"
) -> dict[str, float]:
    """Send rounds for `seconds` after one second of warm-up; CPU per send in µs."""
    pin(SERVER_CORE)
    listener = socket.create_server(("127.0.0.1", 0), backlog=sockets)
    port = listener.getsockname()[1]
    parent, child = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=receive, args=(port, sockets, child), daemon=True)
    receiver.start()
    conns = []
    for _ in range(sockets):
        conn, _ = listener.accept()
        conn.setblocking(False)
        conns.append(conn)
    listener.close()
    parent.recv()
    # One unmasked WebSocket text frame, as a server sends a publication.
    body = b"x" * payload
    frame = bytes([0x81, 126]) + len(body).to_bytes(2, "big") + body
    if path == "hub":
        sends, start_cpu = asyncio.run(hub_rounds(conns, frame, rate, seconds))
    else:
        sends, start_cpu = floor_rounds(conns, frame, rate, seconds)
    user, system = cpu_s()
    for conn in conns:
        conn.close()
    receiver.join(10)
    return {
        "sends/s": sends / seconds,
        "µs CPU per send": (user - start_cpu[0] + system - start_cpu[1]) / sends * 1e6,
        "of it system": (system - start_cpu[1]) / sends * 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.send_floor", description=__doc__)
    p.add_argument("--sockets", type=int, default=1000)
    p.add_argument("--rate", type=float, default=50.0, help="rounds (frames per socket) a second")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--payload", type=int, default=150, help="frame payload bytes")
    p.add_argument(
        "--path",
        choices=("floor", "hub"),
        default="floor",
        help="a bare loop of send, or the server's Hub.broadcast, Outbox and Flusher",
    )
    args = p.parse_args()
    figures = measure(args.sockets, args.rate, args.seconds, args.payload, args.path)
    print(
        f"send {args.path}, {args.sockets} sockets × {args.rate:g}/s, {args.payload}-byte payload: "
        f"{figures['µs CPU per send']:.2f} µs CPU per send "
        f"({figures['of it system']:.2f} system), {figures['sends/s']:,.0f} sends/s"
    )


if __name__ == "__main__":
    main()
