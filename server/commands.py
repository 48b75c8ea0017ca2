"""The protocol's commands, one function each, run by a Connection (server/client.py).

Each takes the connection and the parsed command and returns the reply's result (None when it
replied itself); a ProtocolError becomes an error reply. Every command on a channel resolves the
channel's namespace once, checks permissions with it and passes it on to the node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from server import auth, protocol
from server.auth import TokenError
from server.config import NamespaceConfig
from server.position import Position
from server.presence.stats import presence_stats
from server.protocol import Close, Code, Command, ProtocolError

if TYPE_CHECKING:
    from server.client import Connection

Handler = Callable[["Connection", Command], Awaitable[Any]]


async def op_auth(conn: Connection, cmd: Command) -> dict[str, Any] | None:
    if conn.user is not None:
        raise ProtocolError(Code.BAD_REQUEST, "already authenticated")
    try:
        identity = auth.verify_token(conn.node.config.security.token_secret, cmd.args.get("token"))
    except TokenError as exc:
        conn.reply(protocol.reply_error(cmd.id, Code.UNAUTHORIZED, str(exc)))
        conn.disconnect(Close.UNAUTHORIZED, str(exc), False)
        return None
    conn.authenticate(identity)
    return {"user": conn.user}


async def op_subscribe(conn: Connection, cmd: Command) -> None:
    channel = protocol.check_channel(cmd.args.get("channel"))
    since = _since_position(cmd.args.get("since"))
    node = conn.node
    ns = node.config.namespace_of(channel)
    auth.check_subscribe(conn.identity, channel, ns)
    if len(node.hub.channels_of(conn)) >= node.config.limits.max_subscriptions:
        raise ProtocolError(Code.LIMIT_EXCEEDED, "too many subscriptions")
    result, pos = await node.subscribe(conn, channel, since, ns)
    conn.go_live(cmd.id, channel, result, pos)


async def op_unsubscribe(conn: Connection, cmd: Command) -> dict[str, Any]:
    channel = protocol.check_channel(cmd.args.get("channel"))
    await conn.node.unsubscribe(conn, channel)
    return {}


def publication(conn: Connection, cmd: Command) -> tuple[str, NamespaceConfig, bytes]:
    """A publish checked and made into its channel, namespace and body, at once: the
    connection publishes what arrived together as one batch (Connection._publish_queued)."""
    channel = protocol.check_channel(cmd.args.get("channel"))
    if "data" not in cmd.args:
        raise ProtocolError(Code.BAD_REQUEST, "`data` is required")
    node = conn.node
    ns = node.config.namespace_of(channel)
    subscribed = node.hub.is_subscribed(channel, conn)
    auth.check_publish(conn.identity, channel, ns, subscribed)
    info = {"user": conn.user, "client": conn.id}
    if conn.name is not None:
        info["name"] = conn.name  # shown with the message, in history too
    return channel, ns, node.publication(channel, cmd.args["data"], info)


async def op_history(conn: Connection, cmd: Command) -> dict[str, Any]:
    channel = protocol.check_channel(cmd.args.get("channel"))
    since, limit, reverse = protocol.history_args(cmd.args)
    ns = conn.node.config.namespace_of(channel)
    auth.check_subscribe(conn.identity, channel, ns)
    return await conn.node.history(channel, since, limit, reverse, ns)


async def op_presence(conn: Connection, cmd: Command) -> dict[str, Any]:
    channel = protocol.check_channel(cmd.args.get("channel"))
    ns = conn.node.config.namespace_of(channel)
    auth.check_subscribe(conn.identity, channel, ns)
    return await conn.node.presence_of(channel, ns)


async def op_presence_stats(conn: Connection, cmd: Command) -> dict[str, Any]:
    channel = protocol.check_channel(cmd.args.get("channel"))
    ns = conn.node.config.namespace_of(channel)
    auth.check_subscribe(conn.identity, channel, ns)
    return await presence_stats(conn.node, channel, ns)


#: Every command but `publish` (see `publication`) runs alone, after the publishes before it,
#: so it sees what they did (a history after a publish includes it).
HANDLERS: dict[str, Handler] = {
    "auth": op_auth,
    "subscribe": op_subscribe,
    "unsubscribe": op_unsubscribe,
    "history": op_history,
    "presence": op_presence,
    "presence_stats": op_presence_stats,
}


def _since_position(since: Any) -> Position | None:
    if since is None:
        return None
    if not isinstance(since, dict):
        raise ProtocolError(Code.BAD_REQUEST, '`since` must be {"offset": N, "epoch": "E"}')
    offset, epoch = since.get("offset"), since.get("epoch")
    if type(offset) is not int or offset < 0 or not isinstance(epoch, str):
        raise ProtocolError(
            Code.BAD_REQUEST, "`since` needs an integer `offset` >= 0 and a string `epoch`"
        )
    return Position(offset, epoch)
