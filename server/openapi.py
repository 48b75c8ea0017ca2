"""The OpenAPI 3.1 description of the HTTP API, served at /api/openapi.json.

Kept true by tests: tests/test_openapi.py compares its paths and methods with the routes of the
application and fuzzes the real server with schemathesis against it (no 500s, every response as
documented). Schemas are no stricter than the handlers: anything they call invalid the server
refuses with a 4xx, and every status a handler can answer is listed.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from server.protocol import Code

JSON = "application/json"
CHANNEL_PATTERN = r"^[A-Za-z0-9_\-:.@#,=]{1,255}$"
MAX_OFFSET = 2**63 - 1
MAX_TOKEN_TTL_S = 30 * 24 * 3600
MAX_BROADCAST = 1000

_DESCRIPTIONS = {
    400: "Malformed request, invalid field, or a feature off in the channel's namespace",
    401: "Missing or wrong credentials",
    404: "Unknown namespace (or no such path)",
    413: "Publication larger than `[server] max_message_bytes`",
    503: "Redis or MongoDB unreachable right now; retry",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), _DESCRIPTIONS[s]) for s in statuses}


def _op(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok}}
    if secured:
        op["security"] = [{"apiKey": []}]
        errors = (401, *errors)
    op["responses"].update(_errors(*sorted(set(errors))))
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _obj(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
CHANNEL = {"type": "string", "pattern": CHANNEL_PATTERN}
ANY: dict[str, Any] = {}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        ["error"],
        error=_obj(
            ["code", "message"],
            code={"type": "string", "enum": [c.value for c in Code]},
            message=STR,
        ),
    ),
    "Position": _obj(["offset", "epoch"], offset=INT, epoch=STR),
    "Publication": _obj(
        ["offset", "channel", "data", "ts"],
        offset=INT,
        channel=STR,
        data=ANY,
        info={"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        ts={"type": "integer", "description": "milliseconds since the epoch"},
    ),
    "ProcessStats": _obj(
        [
            "node",
            "pid",
            "connections",
            "subscriptions",
            "channels",
            "messages_in",
            "messages_out",
            "publications",
            "connections_total",
            "connections_refused",
            "rss_bytes",
            "cpu_s",
            "uptime_s",
        ],
        node=STR,
        pid=INT,
        connections=INT,
        subscriptions=INT,
        channels=INT,
        messages_in=INT,
        messages_out=INT,
        publications=INT,
        connections_total=INT,
        connections_refused=INT,
        rss_bytes=INT,
        cpu_s={"type": "number"},
        uptime_s={"type": "number"},
        loop_lag_ms={"type": "number", "description": "worst event-loop lag of the last second"},
        host=STR,
        version=STR,
    ),
}

_CHANNEL_PARAM: dict[str, Any] = {
    "name": "channel",
    "in": "path",
    "required": True,
    "description": "A channel name, e.g. `chat:lobby`",
    "schema": CHANNEL,
}


def _paths() -> dict[str, Any]:
    publish = _obj(
        ["channel", "data"], channel=CHANNEL, data={**ANY, "description": "Any JSON value"}
    )
    broadcast = _obj(
        ["channels", "data"],
        channels={"type": "array", "items": ANY, "minItems": 1, "maxItems": MAX_BROADCAST},
        data=ANY,
    )
    token = _obj(
        ["user"],
        user={"type": "string", "minLength": 1},
        name={"type": ["string", "null"]},
        ttl_s={"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TOKEN_TTL_S},
        channels={"type": ["array", "null"], "items": CHANNEL},
        info={"type": ["object", "null"]},
    )
    history_params: list[dict[str, Any]] = [
        _CHANNEL_PARAM,
        {"name": "since", "in": "query", "schema": {**INT, "maximum": MAX_OFFSET}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
        },
        {"name": "reverse", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}},
    ]
    result = {"anyOf": [_ref("Position"), _obj(["error"], error=ANY)]}
    totals = {"type": "object", "additionalProperties": {"type": "integer"}}
    return {
        "/api/publish": {
            "post": _op(
                "Publish to a channel; answers once stored where the namespace keeps history",
                _json(_ref("Position"), "The publication's offset and epoch"),
                (400, 404, 413, 503),
                body=publish,
            )
        },
        "/api/broadcast": {
            "post": _op(
                "Publish the same data to up to 1,000 channels; one result per channel",
                _json(_obj(["results"], results={"type": "array", "items": result}), "Results"),
                (400,),
                body=broadcast,
            )
        },
        "/api/channels/{channel}/history": {
            "get": _op(
                "A channel's publications after `since` (or the newest), up to `limit`",
                _json(
                    _obj(
                        ["publications", "offset", "epoch"],
                        publications={"type": "array", "items": _ref("Publication")},
                        offset=INT,
                        epoch=STR,
                    ),
                    "Publications and the channel's position",
                ),
                (400, 404, 503),
                params=history_params,
            )
        },
        "/api/channels/{channel}/presence": {
            "get": _op(
                "Who is subscribed to a channel, cluster-wide, by client id",
                _json(
                    _obj(
                        ["clients"],
                        clients={
                            "type": "object",
                            "additionalProperties": _obj(
                                [],
                                user={"type": ["string", "null"]},
                                name={"type": ["string", "null"]},
                            ),
                        },
                    ),
                    "Present clients",
                ),
                (400, 404, 503),
                params=[_CHANNEL_PARAM],
            )
        },
        "/api/channels/{channel}/presence_stats": {
            "get": _op(
                "How many clients and distinct users are present in a channel, without the list",
                _json(_obj(["clients", "users"], clients=INT, users=INT), "Counts"),
                (400, 404, 503),
                params=[_CHANNEL_PARAM],
            )
        },
        "/api/channels": {
            "get": _op(
                "Channels with subscribers on any process, busiest first, filtered by `q`",
                _json(
                    _obj(
                        ["channels"],
                        channels={
                            "type": "array",
                            "items": _obj(
                                ["channel", "subscribers", "processes"],
                                channel=STR,
                                subscribers=INT,
                                processes=INT,
                            ),
                        },
                    ),
                    "Channels and their subscribers over all processes",
                ),
                (400,),
                params=[
                    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 255}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                ],
            )
        },
        "/api/unsubscribe": {
            "post": _op(
                "End a user's subscriptions to a channel on every process (`unsubscribed` push)",
                _json(_obj(["unsubscribed"], unsubscribed=INT), "Subscriptions ended here"),
                (400, 503),
                body=_obj(
                    ["user", "channel"], user={"type": "string", "minLength": 1}, channel=CHANNEL
                ),
            )
        },
        "/api/tokens": {
            "post": _op(
                "Mint a connection token (HS256 JWT) for a user",
                _json(_obj(["token"], token=STR), "The token"),
                (400,),
                body=token,
            )
        },
        "/api/disconnect": {
            "post": _op(
                "Disconnect a user's connections on every process (close 4001, no reconnect)",
                _json(_obj(["disconnected"], disconnected=INT), "Connections closed here"),
                (400, 503),
                body=_obj(["user"], user={"type": "string", "minLength": 1}),
            )
        },
        "/api/stats": {
            "get": _op(
                "Every process's figures, gathered through the broker, and their totals",
                _json(
                    _obj(
                        ["processes", "total"],
                        processes={"type": "array", "items": _ref("ProcessStats")},
                        total=totals,
                    ),
                    "Per process and total",
                ),
                (503,),
            )
        },
        "/api/openapi.json": {
            "get": _op(
                "This document",
                _json({"type": "object"}, "OpenAPI 3.1"),
                (),
                secured=False,
            )
        },
        "/healthz": {
            "get": _op(
                "Liveness: the process answers",
                _json(_obj(["status", "node"], status={"const": "ok"}, node=STR), "Alive"),
                (),
                secured=False,
            )
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: Redis and MongoDB reachable (503 names what is not)",
                "responses": {
                    code: _json(
                        _obj(
                            ["ready", "problems"],
                            ready={"type": "boolean"},
                            problems={"type": "object", "additionalProperties": STR},
                        ),
                        what,
                    )
                    for code, what in (("200", "Ready"), ("503", "Not ready"))
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of every process; OpenMetrics when Accept asks",
                "security": [{"apiKey": []}, {"metricsToken": []}],
                "responses": {
                    "200": {
                        "description": "Prometheus text or OpenMetrics",
                        "content": {"text/plain": {}, "application/openmetrics-text": {}},
                    },
                    **_errors(401),
                },
            }
        },
    }


def _version() -> str:
    try:
        return metadata.version("switchboard")
    except metadata.PackageNotFoundError:  # run from a checkout without installing it
        return "0.0.0+checkout"


def document() -> dict[str, Any]:
    """The whole document (a new dict each time: callers may not share it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard HTTP API",
            "version": _version(),
            "description": (
                'The HTTP API for backends. Errors are `{"error": {"code", "message"}}` '
                "with the protocol's codes (docs/protocol.md). Clients speak protocol v1 over "
                "the WebSocket at /ws, which this document does not describe."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Authorization: apikey <[api] key>`",
                },
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <[metrics] token>` (/metrics only)",
                },
            },
        },
    }
