"""The presence interface: who is subscribed to a channel, across processes."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Presence(ABC):
    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def add(self, channel: str, client_id: str, info: dict[str, str | None]) -> None: ...

    @abstractmethod
    async def remove(self, channel: str, client_id: str) -> None: ...

    @abstractmethod
    async def get(self, channel: str) -> dict[str, dict[str, str | None]]:
        """Every present client of `channel`: client id -> {"user", "name"}."""

    async def stats(self, channel: str) -> dict[str, int]:
        """How many clients and distinct signed-in users are present, without who they are.

        Counted from `get` here; an implementation may count without reading the members.
        """
        return counts(await self.get(channel))


def counts(clients: dict[str, dict[str, str | None]]) -> dict[str, int]:
    users = {info.get("user") for info in clients.values()}
    users.discard(None)
    return {"clients": len(clients), "users": len(users)}
