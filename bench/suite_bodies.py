"""The benchmark scenarios' bodies: which load-tester runs each makes on a target, and which
figures of their documents it reports."""

from __future__ import annotations

import math
from pathlib import Path

from bench.servers import API_KEY, TOKEN_SECRET, Running
from bench.suite_tester import (
    SOURCES,
    Body,
    Outcome,
    Sizes,
    client_cost,
    load,
    prefix,
    server_cost,
)

P99_LIMIT_MS = 250.0


def hold(count: int, rate: int = 2000) -> Body:
    """Held connections, each authenticated by token and subscribed to one of 100 channels,
    opened at `rate` per second (asked: the figure is what the server took)."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        n = sz.n(count)
        workers = max(1, math.ceil(n / 18_000), math.ceil(rate / 2500))
        doc = load(
            [
                "hold",
                "--url",
                srv.ws_url,
                "--connections",
                str(n),
                "--connect-rate",
                str(rate),
                "--workers",
                str(workers),
                "--duration",
                str(sz.secs(10)),
                "--api-key",
                API_KEY,
                "--subscribe",
                "--channels",
                "100",
                "--channel-prefix",
                prefix(srv),
                "--token-secret",
                TOKEN_SECRET,
                "--source-addresses",
                SOURCES,
                "--connect-timeout",
                "30",
            ],
            out,
            outdir,
            tag,
        )
        if doc:
            c = doc["connections"]
            out.figures |= {
                "connections held": c["still_open"],
                "requested": n,
                "connects/s": c["connect_rate_per_s"],
                "failed connects": sum(
                    v for k, v in doc["errors"].items() if k.startswith("connect:")
                ),
                "server bytes RSS per connection": doc["server"].get("bytes_per_connection"),
                "server µs CPU per connection": doc["server"].get("cpu_us_per_connection"),
            }

    return body


def fanout_ramp(subscribers: int, rates: list[float]) -> Body:
    """Rising publication rates until p99 passes 250 ms (or delivery fails)."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        n, best, steps = sz.n(subscribers), None, []
        for rate in rates[:3] if sz.quick else rates:
            pubs = max(1, min(8, math.ceil(rate / 500)))
            # one worker takes ~60,000 deliveries/s before it saturates (bench/README.md)
            workers = min(4, max(1, math.ceil(n / 18_000), math.ceil(n * rate / 60_000)))
            argv = [
                "fanout",
                "--url",
                srv.ws_url,
                "--subscribers",
                str(n),
                "--publishers",
                str(pubs),
                "--rate",
                str(rate),
                "--channels",
                "1",
                "--workers",
                str(workers),
                "--duration",
                str(sz.secs(6)),
                "--channel-prefix",
                prefix(srv),
                "--source-addresses",
                SOURCES,
                "--connect-rate",
                "3000",
                "--api-key",
                API_KEY,
                "--quiet",
            ]
            # a shared machine has stalls that are not the server's: a step over the limit gets
            # one more try before it ends the ramp (both tries are in the notes)
            for attempt in ("", "-again"):
                doc = load(argv, out, outdir, f"{tag}-r{rate:g}{attempt}")
                if doc is None:
                    break
                p99 = doc["latency_ms"]["p99"]
                steps.append(
                    f"{rate:g}/s → {doc['deliveries_per_s']:.0f} deliveries/s, p99 {p99} ms"
                )
                if doc["failures"] or p99 <= P99_LIMIT_MS:
                    break
            if doc is None or doc["failures"] or doc["latency_ms"]["p99"] > P99_LIMIT_MS:
                break
            best = doc
        out.notes.append(f"{tag} steps: " + "; ".join(steps))
        if best:
            out.figures |= {
                "subscribers": n,
                "max publications/s with p99 ≤ 250 ms": best["params"]["rate"],
                "deliveries/s at that rate": best["deliveries_per_s"],
                "p50 ms": best["latency_ms"]["p50"],
                "p99 ms": best["latency_ms"]["p99"],
                "p99.9 ms": best["latency_ms"]["p999"],
            }
            server_cost(out, best)
            client_cost(out, best)
        else:
            out.figures["max publications/s with p99 ≤ 250 ms"] = 0

    return body


def echo(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
    doc = load(
        [
            "echo",
            "--url",
            srv.ws_url,
            "--connections",
            "100",
            "--duration",
            str(sz.secs(10)),
            "--api-key",
            API_KEY,
            "--quiet",
        ],
        out,
        outdir,
        tag,
    )
    if doc:
        out.figures |= {
            "round trips/s": doc["deliveries_per_s"],
            "p50 ms": doc["latency_ms"]["p50"],
            "p99 ms": doc["latency_ms"]["p99"],
        }
        server_cost(out, doc, "round trip")
        client_cost(out, doc)


def fanout_cost(subscribers: int, rate: float, encoding: str = "json") -> Body:
    """Server CPU per delivery at one fixed load: the figure issues 8 and 19 compare."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        n = sz.n(subscribers)
        workers = min(4, max(1, math.ceil(n / 18_000), math.ceil(n * rate / 60_000)))
        doc = load(
            [
                "fanout",
                "--encoding",
                encoding,
                "--url",
                srv.ws_url,
                "--subscribers",
                str(n),
                "--rate",
                str(rate),
                "--workers",
                str(workers),
                "--channels",
                "1",
                "--duration",
                str(sz.secs(10)),
                "--channel-prefix",
                prefix(srv),
                "--source-addresses",
                SOURCES,
                "--api-key",
                API_KEY,
                "--quiet",
            ],
            out,
            outdir,
            tag,
        )
        if doc:
            out.figures |= {
                "deliveries/s": doc["deliveries_per_s"],
                "p99 ms": doc["latency_ms"]["p99"],
                "lost": doc["lost"] + doc["duplicated"] + doc["reordered"],
                "payload bytes per delivery": doc["client"]["payload_bytes_per_delivery"],
            }
            server_cost(out, doc)
            client_cost(out, doc)

    return body


def encodings_cost(subscribers: int, rate: float) -> Body:
    """`fanout_cost` in JSON, then in MessagePack, on the same server: CPU and bytes per
    delivery of each encoding, side by side (issue 17)."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        for encoding in ("json", "msgpack"):
            part = Outcome()
            fanout_cost(subscribers, rate, encoding)(srv, part, sz, outdir, f"{tag}-{encoding}")
            out.docs += part.docs
            out.notes += part.notes
            out.figures |= {f"{k} ({encoding})": v for k, v in part.figures.items()}

    return body


def fast_publisher(channels: int) -> Body:
    """One WebSocket connection publishing as fast as the server acknowledges (at most 1,000
    unanswered), round-robin to `channels` channels with a subscriber each."""

    def body(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
        seconds = sz.secs(8)
        doc = load(
            [
                "fanout",
                "--url",
                srv.ws_url,
                "--subscribers",
                str(channels),
                "--publishers",
                "1",
                "--rate",
                "40000",
                "--channels",
                str(channels),
                "--duration",
                str(seconds),
                "--channel-prefix",
                prefix(srv),
                "--api-key",
                API_KEY,
                "--quiet",
            ],
            out,
            outdir,
            tag,
        )
        if doc:
            errors = sum(v for k, v in doc["errors"].items() if k.startswith("publish:error"))
            out.figures |= {
                "acknowledged publications/s": round((doc["published"] - errors) / seconds),
                "deliveries/s": doc["deliveries_per_s"],
                "p99 ms (publish to delivery)": doc["latency_ms"]["p99"],
                "lost": doc["lost"] + doc["duplicated"] + doc["reordered"],
            }
            server_cost(out, doc, "publication")

    return body


def churn(srv: Running, out: Outcome, sz: Sizes, outdir: Path, tag: str) -> None:
    doc = load(
        [
            "churn",
            "--url",
            srv.ws_url,
            "--subscribers",
            str(sz.n(1000)),
            "--channels",
            "10",
            "--rate",
            "50",
            "--publishers",
            "1",
            "--churn-rate",
            str(sz.n(500)),
            "--churn-life",
            "2",
            "--duration",
            str(sz.secs(10)),
            "--channel-prefix",
            prefix(srv),
            "--source-addresses",
            SOURCES,
            "--quiet",
        ],
        out,
        outdir,
        tag,
    )
    if doc:
        out.figures |= {
            "connections opened by churn": doc["connections"]["churn_opened"],
            "churn failures": sum(v for k, v in doc["errors"].items() if k.startswith("churn")),
            "deliveries/s": doc["deliveries_per_s"],
            "p99 ms": doc["latency_ms"]["p99"],
            "lost": doc["lost"],
        }
        client_cost(out, doc)
