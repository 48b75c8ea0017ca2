"""The shapes of protocol v1's results and pushes (docs/protocol.md), for type checkers."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

State = Literal["disconnected", "connecting", "connected", "reconnecting"]


class Position(TypedDict):
    """A place in a channel's stream: the offset of its last publication and the epoch."""

    offset: int
    epoch: str


class Hello(TypedDict):
    push: Literal["hello"]
    client: str
    user: str | None
    node: str
    ping_interval: float
    version: int


class PublicationInfo(TypedDict):
    user: str | None
    client: str


class Publication(TypedDict):
    """`info` is absent for publications made through the HTTP API."""

    channel: str
    offset: int
    data: Any
    info: NotRequired[PublicationInfo]
    ts: int


class JoinLeave(TypedDict):
    push: Literal["join", "leave"]
    channel: str
    client: str
    user: str | None


class Recovery(TypedDict):
    """Told after every resubscribe with `since`: `recovered` False means a gap was lost."""

    channel: str
    recovered: bool


class PublishResult(TypedDict):
    offset: int
    epoch: str


class HistoryResult(TypedDict):
    publications: list[Publication]
    offset: int
    epoch: str


class PresenceEntry(TypedDict):
    user: str | None
    name: str | None


class PresenceResult(TypedDict):
    clients: dict[str, PresenceEntry]
