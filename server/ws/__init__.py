"""The WebSocket transport (RFC 6455, server side): everything between Tornado and a connection.

    frame.py      frames the server sends (built once, shared by every subscriber); close rules
    parser.py     client frames from a byte stream: strict, with UTF-8 checked as it arrives
    websocket.py  one connection after the upgrade: socket, parser, outbox in one small object;
                  the receive loop (one `recv` per readable event) and the closing handshake
    outbox.py     per-connection writes, coalesced once per loop iteration, never cutting a frame
    listener.py   an HTTPServer answering plain upgrades itself (no Tornado handler per
                  connection); server/process/httpserver.py admits connections before it
    handshake.py  the opening handshake read from the first bytes: what the listener may answer
    transport.py  `Transport` (send, reply, close), `TransportOwner` (what a WebSocket reports to)
    handler.py    the Tornado path (refusals, sessions), handing over after the 101
    subprotocol.py  switchboard.json / switchboard.msgpack: chosen the same on both paths
    seam.py       every use of a Tornado private name (tests/test_ws_seam.py checks each one)
    echo.py       an echo endpoint on this exact transport, for conformance suites

Conformance testing: `python -m server.ws.echo --port N [--max-message-bytes B]` serves
`ws://127.0.0.1:N/echo`, answering every text and binary message with the same message,
through the same listener, handler, WebSocket, parser and outbox classes that serve /ws; only
the command handling is replaced by the echo. It binds 127.0.0.1 (`--host` to change), accepts
connections with or without an Origin header, accepts a message of exactly B bytes (default
65536, the server's default `max_message_bytes`) and refuses a longer one with 1009, and raises
its own `max_pending_bytes` to at least 2 x B, so that echoing a message of B bytes to a client
that is still sending is within bounds. docs/conformance.md runs an RFC 6455 suite against it.
"""
