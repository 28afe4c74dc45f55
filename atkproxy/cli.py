"""Command line: `atkproxy [serve|check-config|demo] [--config PATH] [-D key=value ...]`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import structlog
import yaml

from . import lifecycle
from .auth import describe
from .malloc import MMAP_THRESHOLD, keep_large_blocks_mapped
from .observability import configure_logging
from .redact import mask_urls
from .settings import Logging, Settings
from .sources import ConfigError, Layered, explain, load
from .store import StoreUnavailable

COMMANDS = ("serve", "check-config", "demo")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="atkproxy", description="Sidecar proxy that adds Automatiko's async mode."
    )
    parser.add_argument("command", nargs="?", default="serve", choices=COMMANDS)
    parser.add_argument("--version", action="version", version=f"atkproxy {version()}")
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


def version() -> str:
    """The installed distribution's version: one number, kept in pyproject.toml."""
    try:
        return metadata.version("atkproxy")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "demo":
        from .demo.run import run_demo

        return asyncio.run(run_demo())
    try:
        settings, layered = load(args.config, os.environ, args.defines, args.properties)
    except ConfigError as exc:
        if args.command == "serve":
            return fatal(Logging(), str(exc))
        print(f"atkproxy: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(effective_config(settings, layered), end="")
        return 0
    return serve(settings)


def fatal(settings: Logging, error: str) -> int:
    """A start that cannot go on: one log line (JSON in a container), exit status 2."""
    configure_logging(settings)
    structlog.get_logger("atkproxy").critical("cannot start", error=error)
    return 2


def effective_config(settings: Settings, layered: Layered) -> str:
    """The configuration in force, secrets redacted, and where each set value came from."""
    shown = mask_urls(settings.model_dump(mode="json", by_alias=True))
    text = yaml.safe_dump(shown, sort_keys=False)
    auth = f"# callback auth: {describe(settings.callback.auth)}\n"
    origins = "".join(f"#   {key}: {origin}\n" for key, _, origin in explain(layered))
    return text + auth + "# values set (the rest are defaults):\n" + (origins or "#   (none)\n")


def serve(settings: Settings) -> int:
    mapped = keep_large_blocks_mapped()  # a job's answer of megabytes goes back when freed
    configure_logging(settings.logging)
    log = structlog.get_logger("atkproxy")
    shown = mask_urls(settings.model_dump(mode="json", by_alias=True))  # secrets: "**********"
    threshold = MMAP_THRESHOLD if mapped else None
    log.info("starting", version=version(), settings=shown, malloc_mmap_threshold=threshold)
    started = time.monotonic()
    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(lifecycle.serve(settings))
    except (StoreUnavailable, OSError) as exc:  # a store that cannot open, a port in use
        log.critical("cannot start", error=str(exc))
        return 2
    except Exception:
        log.exception("crashed")
        return 1
    log.info("stopped", seconds=round(time.monotonic() - started, 3))
    return 0


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    sys.exit(main())
