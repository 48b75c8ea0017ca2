"""`presence_stats`: a channel's presence counted, for pages and backends that need no list.

Shared by the WebSocket op and the HTTP API, with the same rules as `presence`: the namespace
must keep presence, and a client needs the right to subscribe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.protocol import Code, ProtocolError
from server.unavailable import Unavailable

if TYPE_CHECKING:
    from server.config import NamespaceConfig
    from server.node import Node


async def presence_stats(
    node: Node, channel: str, ns: NamespaceConfig | None = None
) -> dict[str, int]:
    """`{"clients": N, "users": M}`: connections present, and distinct users among them."""
    if not (ns or node.config.namespace_of(channel)).presence:
        raise ProtocolError(Code.DISABLED, "presence is off in this namespace")
    try:
        return await node.presence.stats(channel)
    except Unavailable as exc:
        raise ProtocolError(Code.UNAVAILABLE, f"temporarily unavailable: {exc}") from None
