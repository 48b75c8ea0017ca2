"""The Server-Sent Events fallback: protocol v1 where a proxy refuses WebSocket upgrades.

    session.py   `Session`: a Connection's Transport that outlives the HTTP responses carrying
                 it; a replay buffer for `Last-Event-ID`, a grace period between responses,
                 the commands POSTed to it run one at a time
    events.py    the event stream's bytes: one event per protocol frame
    registry.py  this process's sessions; commands POSTed to another process go through the
                 broker to the one that holds the session
    origin.py    who may open a stream or post commands (the WebSocket origin rule)

handlers/sse.py is the HTTP half: `GET /sse` streams, `POST /sse` carries commands.
docs/protocol.md describes the transport.
"""
