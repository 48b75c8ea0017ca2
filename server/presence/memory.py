"""Presence of one process: the default without Redis."""

from __future__ import annotations

from server.presence.base import Presence


class MemoryPresence(Presence):
    """Presence of one process."""

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, dict[str, str | None]]] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._channels.clear()

    async def add(self, channel: str, client_id: str, info: dict[str, str | None]) -> None:
        self._channels.setdefault(channel, {})[client_id] = info

    async def remove(self, channel: str, client_id: str) -> None:
        clients = self._channels.get(channel)
        if clients is not None:
            clients.pop(client_id, None)
            if not clients:
                del self._channels[channel]

    async def get(self, channel: str) -> dict[str, dict[str, str | None]]:
        return dict(self._channels.get(channel, {}))
