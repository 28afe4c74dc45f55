"""Logging set-up: one JSON object per line on stdout for everything the process logs.

structlog's own events and the standard library's records (aiohttp's and asyncio's errors
among them) go through one handler with structlog's `ProcessorFormatter`, so a traceback is a
field of one line instead of many plain lines. `console` renders for a person at a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from aiohttp import web, web_response
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from .settings import Logging

SERVER = "atkproxy"

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.ExtraAdder(allow=["error"]),
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def renders_json(settings: Logging) -> bool:
    return settings.format == "json" or (settings.format == "auto" and not sys.stdout.isatty())


def configure_logging(settings: Logging) -> None:
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if renders_json(settings)
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(quote_no_bad_request)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    hide_server_version()


def quote_no_bad_request(record: logging.LogRecord) -> bool:
    """aiohttp logs a malformed request with a traceback quoting up to 100 bytes of it, which
    may be a credential (an oversized Authorization header): keep the kind of error only."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        record.msg, record.args, record.exc_info = "bad request", (), None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.error = f"{type(error).__name__}: {error.code}"
    return True


def hide_server_version() -> None:
    """`Server: atkproxy` instead of the Python and aiohttp versions.

    aiohttp fills the header in from a module constant, also on the 400s its protocol answers
    before any application signal runs; an upstream's own Server header still passes through.
    """
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]


access_log = structlog.get_logger("atkproxy.access")


class AccessLogger(AbstractAccessLogger):
    """One line per request: what was asked and answered, never headers, query or body."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        access_log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            duration=round(time, 6),
            bytes=response.body_length,
            mode="async" if "X-ATK-Job" in response.headers else "sync",
            job=response.headers.get("X-ATK-Job"),
        )
