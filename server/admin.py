"""Admin actions that reach every process: ending one user's subscription to a channel.

Like `disconnect`, the request travels as a control message through the broker, and every
process acts on its own connections of that user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from server import protocol
from server.ws import frame as wsframe

if TYPE_CHECKING:
    from server.node import Node

UNSUBSCRIBE = "unsubscribe"
#: The `unsubscribed` push's reason when an admin (or a backend) ended a subscription.
REASON = "server"


async def unsubscribe_user(node: Node, user: str, channel: str) -> int:
    """End `user`'s subscriptions to `channel` on every process; returns how many were here."""
    here = sum(node.hub.is_subscribed(channel, c) for c in node.hub.user_clients(user))
    message = {"op": UNSUBSCRIBE, "user": user, "channel": channel}
    await node.broker.publish_control(orjson.dumps(message))
    return here


def on_control(node: Node, msg: dict[str, Any]) -> None:
    if msg.get("op") != UNSUBSCRIBE:
        return
    channel = str(msg.get("channel"))
    frame = wsframe.text(protocol.unsubscribed_push(channel, REASON))
    for client in node.hub.user_clients(str(msg.get("user"))):
        if node.hub.is_subscribed(channel, client):
            client.send(frame)
            node.spawn(node.unsubscribe(client, channel))
