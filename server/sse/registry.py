"""This process's SSE sessions, and commands for sessions that live in another process.

Worker processes share a port (server/cluster.py), so a command POSTed by a browser may reach
a process other than the one streaming its events. Every session id starts with its process's
tag: a process that is not the owner hands the commands to the broker as a control message,
and the owner (every process hears control messages) queues them. The POSTs of one client
follow each other (the browser client sends the next only after the answer to the previous),
so they reach the owner in order.

A session id is the process tag, a dot and 144 random bits: it is what authorises posting
commands to the session, so it is never guessable, and it is only ever in the event stream
(and the client's headers), never in a URL or a log.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson

from server.node import Node
from server.sse.session import Session

log = logging.getLogger("switchboard.sse")

#: How long a session waits for its event stream to come back.
GRACE_S = 15.0
#: The control message op that carries commands to a session's process.
CONTROL_OP = "sse"


class Sessions:
    def __init__(self, node: Node, grace_s: float = GRACE_S) -> None:
        self.node = node
        self.grace_s = grace_s
        self.tag = secrets.token_hex(4)
        self._sessions: dict[str, Session] = {}
        node.control_handlers[CONTROL_OP] = self._on_control

    def __len__(self) -> int:
        return len(self._sessions)

    def new(self) -> Session:
        """A session with no Connection yet (the caller makes one with it as its Transport)."""
        sid = f"{self.tag}.{secrets.token_urlsafe(18)}"
        session = Session(
            sid,
            self.node.config.server.max_pending_bytes,
            self.grace_s,
            self.node.spawn,
            self._ended,
        )
        self._sessions[sid] = session
        return session

    def get(self, sid: str) -> Session | None:
        return self._sessions.get(sid)

    def is_local(self, sid: str) -> bool:
        """Whether a session of this id would live in this process."""
        return sid.startswith(self.tag + ".")

    def _ended(self, session: Session) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    async def post(self, sid: str, frames: list[bytes]) -> bool | None:
        """Queue commands for a session here or in another process.

        True when queued (or sent to the owner), False when too many bytes wait already, None
        when the session belongs here and is gone.
        """
        session = self._sessions.get(sid)
        if session is not None:
            return session.post(frames)
        if self.is_local(sid):
            return None
        message = {"op": CONTROL_OP, "session": sid, "frames": [f.decode() for f in frames]}
        await self.node.broker.publish_control(orjson.dumps(message))
        return True

    async def hang_up(self, sid: str) -> bool:
        """End a session because its client said so; False if it is gone (or never was)."""
        session = self._sessions.get(sid)
        if session is not None:
            session.hang_up()
            return True
        if self.is_local(sid):
            return False
        await self.node.broker.publish_control(
            orjson.dumps({"op": CONTROL_OP, "session": sid, "end": True})
        )
        return True

    def _on_control(self, msg: dict[str, Any]) -> None:
        sid, frames = msg.get("session"), msg.get("frames")
        session = self._sessions.get(sid) if isinstance(sid, str) else None
        if session is None:
            return  # another process's, or gone: its client finds out by its stream
        if msg.get("end") is True:
            session.hang_up()
            return
        if not isinstance(frames, list):
            return
        if not session.post([str(f).encode() for f in frames]):
            log.info("commands forwarded to a full SSE session dropped: client too slow")
            session.too_slow()
