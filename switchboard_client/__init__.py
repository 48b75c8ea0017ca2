"""Switchboard's Python clients: `Client` speaks protocol v1 over WebSocket (asyncio), with
the guarantees of the browser client; `ServerAPI` calls the HTTP API for backends.

    from switchboard_client import Client, ServerAPI

    async with Client("ws://127.0.0.1:8000/ws", get_token=fetch_token) as sb:
        sub = await sb.subscribe("chat:lobby", on_publication=show)  # or: async for pub in sub
        ack = await sb.publish("chat:lobby", {"text": "hi"})         # ack["offset"]
        page = await sb.history("chat:lobby", limit=50)
        who = await sb.presence("chat:lobby")

    api = ServerAPI("http://127.0.0.1:8000", api_key="...")
    await api.publish("chat:lobby", {"text": "from the backend"})
"""

from __future__ import annotations

from switchboard_client.api import ServerAPI
from switchboard_client.client import Client
from switchboard_client.errors import ConnectionLost, SwitchboardError
from switchboard_client.subscription import Subscription
from switchboard_client.types import (
    Hello,
    HistoryResult,
    JoinLeave,
    Position,
    PresenceResult,
    Publication,
    PublishResult,
    Recovery,
    State,
)

__all__ = [
    "Client",
    "ConnectionLost",
    "Hello",
    "HistoryResult",
    "JoinLeave",
    "Position",
    "PresenceResult",
    "Publication",
    "PublishResult",
    "Recovery",
    "ServerAPI",
    "State",
    "Subscription",
    "SwitchboardError",
]
