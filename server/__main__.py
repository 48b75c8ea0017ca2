"""Entry point: `python -m server [--config PATH] [--host H] [--port N] [--dev]`.

Parses arguments, loads config (a mistake exits with status 2 and one line), builds the node,
listens, and on SIGTERM or SIGINT closes every connection with 1001 before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from server import assets
from server import config as config_mod
from server.app import build_node, make_app, make_server
from server.config import Config, ConfigError
from server.observe import metrics
from server.process import admission, cluster, logs
from server.process import sockets as process_sockets
from server.process.drain import drain
from server.store.embedded import EmbeddedError, EmbeddedMongo
from server.store.mongo import prepare_store
from server.store.schema import SchemaTooNew

log = logging.getLogger("switchboard")
GC_THRESHOLDS = (50_000, 20, 100)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m server", description="Run a Switchboard server.")
    p.add_argument(
        "--config",
        help="config file (default: ./config.toml if there, else the sample in the package)",
    )
    p.add_argument("--host", help="address to listen on (overrides [server] host)")
    p.add_argument("--port", type=int, help="port to listen on (overrides [server] port)")
    p.add_argument(
        "--dev",
        action="store_true",
        help="development mode: shipped placeholder secrets are accepted",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes sharing the port (needs [redis] url above 1)",
    )
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="auto",
        help="text (colour on a terminal) or json lines; auto: text on a terminal, else json",
    )
    p.add_argument(
        "--sample-config", action="store_true", help="print the sample config.toml and exit"
    )
    return p.parse_args(argv)


def load_config(args: argparse.Namespace) -> Config:
    cfg = config_mod.load(assets.config_path(args.config), dev=args.dev)
    server = cfg.server
    if args.host is not None:
        server = dataclasses.replace(server, host=args.host)
    if args.port is not None:
        server = dataclasses.replace(server, port=args.port)
    cfg = cfg.replace(server=server)
    cfg.server.validate()
    config_mod.check_dev_host(cfg)
    if args.processes < 1:
        raise ConfigError("--processes: must be 1 or more")
    if args.processes > 1 and not cfg.redis.url:
        raise ConfigError(
            "--processes above 1 needs [redis] url (or SWITCHBOARD_REDIS_URL): "
            "processes exchange publications through Redis"
        )
    return cfg


def tune_gc() -> None:
    """Keep the cyclic collector off the hot paths of a server holding many connections.

    Objects made at start-up are frozen out of collection, and young collections run after
    50,000 allocations instead of 700: with tens of thousands of connections each full pass
    is long, and connects and fan-out measured 60% and a few % faster (docs/benchmarks.md).
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(
    cfg: Config, sockets: list[socket.socket], ready: Callable[[], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, then drain; `ready` is called once listening."""
    node = build_node(cfg)
    app = make_app(node)  # builds only: the node's timers start with it
    await node.start()
    server = make_server(app, cfg)
    try:
        process_sockets.listen(sockets)  # only now: see server/process/sockets.py
    except OSError as exc:
        raise SystemExit(f"switchboard: cannot listen on port {cfg.server.port}: {exc}") from None
    server.add_sockets(sockets)
    tune_gc()
    port = sockets[0].getsockname()[1]
    log.info(
        "listening on http://%s:%d/ (node %s, at most %d sockets)",
        cfg.server.host,
        port,
        node.id,
        server.admission.max_sockets,
        extra={"node": node.id, "port": port},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _single_process_reload)
    if ready is not None:
        ready()
    await stop.wait()
    log.info("draining %d clients", node.hub.client_count, extra={"node": node.id})
    node.draining = True  # upgrades arriving on open (proxy keep-alive) connections: 503
    server.stop()  # siblings sharing the port keep accepting
    if not await drain(node, cfg.server.drain_s, cfg.server.shutdown_grace_s):
        log.warning("%d clients still connected at the drain deadline", node.hub.client_count)
    await node.close()
    await server.close_all_connections()


def _single_process_reload() -> None:
    log.warning("SIGHUP ignored: a rolling restart is the --processes parent's (send it there)")


def _nothing() -> None:
    """No machine-wide service to stop."""


def prepare_services(cfg: Config) -> tuple[Config, Callable[[], None]]:
    """Start the machine-wide services the config asks for, once, before any fork.

    Returns the config pointing at them and a function that stops them. With `[mongo] url`
    "embedded" (or empty, which only --dev accepts) that is the embedded MongoDB-compatible
    server, on 127.0.0.1 only; then (or with a URL) the schema is made once here, so a
    database of a newer schema stops start-up with one line.
    """
    stop: Callable[[], None] = _nothing
    if cfg.mongo.url in ("", config_mod.EMBEDDED):
        embedded = EmbeddedMongo(cfg.mongo.data_dir, port=cfg.mongo.embedded_port)
        try:
            url = embedded.start()
        except EmbeddedError as exc:
            print(f"switchboard: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        log.info("embedded MongoDB server on %s, data in %s", url, cfg.mongo.data_dir)
        cfg = cfg.replace(mongo=dataclasses.replace(cfg.mongo, url=url))
        stop = embedded.stop
    if cfg.mongo.url.startswith("mongodb"):
        try:
            asyncio.run(prepare_store(cfg.mongo))
        except SchemaTooNew as exc:
            stop()
            print(f"switchboard: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return cfg, stop


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sample_config:
        sys.stdout.write(assets.SAMPLE_CONFIG.read_text())
        return 0
    logs.setup(args.log_level, args.log_format)
    try:
        cfg = load_config(args)
    except ConfigError as exc:
        print(f"switchboard: config error: {exc}", file=sys.stderr)
        return 2
    admission.raise_open_files()  # max_sockets = 0 derives from it
    try:
        sockets = process_sockets.bind(
            cfg.server.port, cfg.server.host, reuse_port=args.processes > 1
        )
    except OSError as exc:
        print(
            f"switchboard: cannot listen on {cfg.server.host}:{cfg.server.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    cfg, stop_services = prepare_services(cfg)
    metrics.share_between_processes(args.processes)
    try:
        if args.processes > 1:
            return cluster.run_workers(
                args.processes,
                lambda ready: _serve_until_stopped(cfg, sockets, ready),
                release=lambda: _close_all(sockets),
            )
        return _serve_until_stopped(cfg, sockets)
    finally:
        stop_services()


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def _serve_until_stopped(
    cfg: Config, sockets: list[socket.socket], ready: Callable[[], None] | None = None
) -> int:
    with asyncio.Runner(loop_factory=_loop_factory(cfg.server.event_loop)) as runner:
        runner.run(serve(cfg, sockets, ready))
    return 0


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `[server] event_loop` names: asyncio's own, or uvloop's (libuv)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


if __name__ == "__main__":
    sys.exit(main())
