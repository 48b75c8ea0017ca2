"""A connection as the node sees it, without a socket: for tests that drive a Node directly."""

from __future__ import annotations

import orjson


class NodeClient:
    """Records the JSON of every frame the node sends it."""

    def __init__(self, cid: str, user: str | None = None) -> None:
        self.id, self.user = cid, user
        self.name: str | None = None
        self.alive = True
        self.session: str | None = None
        self.frames: list[dict[str, object]] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame[2:] if frame[1] < 126 else frame[4:]))

    def disconnect(
        self, code: int, reason: str, reconnect: bool, delay_ms: int | None = None
    ) -> None:
        self.frames.append({"closed": code})

    def offsets(self) -> list[object]:
        return [f["offset"] for f in self.frames if f.get("push") == "pub"]
