"""The server's sockets: bound at start-up, so a port in use fails at once, but listening only
once a process can serve them.

A socket that listens while the process still starts (the embedded MongoDB server, the schema,
the node's services: seconds) holds every connect in its backlog and, past the backlog, drops
their SYNs: each such client then waits out TCP's retransmission backoff (1, 3, 7, 15 s) instead
of its own reconnect delay. Unlistened, the port refuses at once and clients retry on their own
schedule. After a restart 19,900 reconnecting clients were all live 12 s after the new process
was ready, listening early (docs/benchmarks.md).
"""

from __future__ import annotations

import errno
import socket

#: Connects the kernel queues for accepting: as many as net.core.somaxconn allows (4,096 by
#: default), so raising it (docs/scaling.md, "Kernel settings") takes effect without a change
#: here. Tornado's default of 128 refuses bursts of connects; past the backlog a client's SYN
#: is dropped and it waits out TCP's retransmission (1, then 3, then 7 s).
BACKLOG = 65535


def bind(port: int, host: str | None, reuse_port: bool = False) -> list[socket.socket]:
    """Bind a socket on every address `host` names (all interfaces when empty), as Tornado's
    bind_sockets does, without listening. Raises OSError when the port is taken."""
    sockets: list[socket.socket] = []
    bound_port = None
    infos = socket.getaddrinfo(host or None, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    try:
        for family, kind, proto, _, address in sorted(set(infos), key=lambda i: i[0]):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as exc:
                if exc.errno == errno.EAFNOSUPPORT:  # IPv6 named, but not in this kernel
                    continue
                raise
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if address[1] == 0 and bound_port is not None:  # port 0: one port for every family
                address = (address[0], bound_port, *address[2:])
            sock.setblocking(False)
            sock.bind(address)
            bound_port = sock.getsockname()[1]
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def listen(sockets: list[socket.socket]) -> None:
    """Start listening (again, harmlessly, in each worker sharing them). Raises OSError when
    another process began listening on the port after we bound it."""
    for sock in sockets:
        sock.listen(BACKLOG)
