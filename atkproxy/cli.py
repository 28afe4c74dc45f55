"""Command line: `atkproxy [serve|check-config|demo] [--config PATH] [-D key=value ...]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
import yaml

from . import server
from .app import create_app
from .auth import describe
from .observability import configure_logging
from .redact import mask_urls
from .settings import Settings
from .sources import ConfigError, Layered, explain, load
from .store import StoreUnavailable

COMMANDS = ("serve", "check-config", "demo")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="atkproxy", description="Sidecar proxy that adds Automatiko's async mode."
    )
    parser.add_argument("command", nargs="?", default="serve", choices=COMMANDS)
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML file (default /etc/atkproxy/config.yaml, else config/atkproxy.yaml)",
    )
    parser.add_argument(
        "--properties", type=Path, help="Automatiko application.properties (auth-* names)"
    )
    parser.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. -D listen.port=9000",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "demo":
        from .demo.run import run_demo

        return asyncio.run(run_demo())
    try:
        settings, layered = load(args.config, os.environ, args.defines, args.properties)
    except ConfigError as exc:
        print(f"atkproxy: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(effective_config(settings, layered), end="")
        return 0
    try:
        serve(settings)
    except StoreUnavailable as exc:
        print(f"atkproxy: {exc}", file=sys.stderr)
        return 2
    return 0


def effective_config(settings: Settings, layered: Layered) -> str:
    """The configuration in force, secrets redacted, and where each set value came from."""
    shown = mask_urls(settings.model_dump(mode="json", by_alias=True))
    text = yaml.safe_dump(shown, sort_keys=False)
    auth = f"# callback auth: {describe(settings.callback.auth)}\n"
    origins = "".join(f"#   {key}: {origin}\n" for key, _, origin in explain(layered))
    return text + auth + "# values set (the rest are defaults):\n" + (origins or "#   (none)\n")


def serve(settings: Settings) -> None:
    configure_logging(settings.logging)
    log = structlog.get_logger("atkproxy")
    log.info(
        "starting",
        listen=f"{settings.listen.host}:{settings.listen.port}",
        upstream=settings.upstream.url,
        store=settings.store.url.split("://")[0],
    )
    server.run(
        create_app(settings),
        settings.listen.host,
        settings.listen.port,
        new_loop(),
        shutdown_timeout=settings.async_.drain_timeout,
        access_log=None,
    )


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    sys.exit(main())
