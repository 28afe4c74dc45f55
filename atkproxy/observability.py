"""Logging set-up: one JSON object per line on stdout for everything the process logs.

structlog's own events and the standard library's records (aiohttp's and asyncio's errors
among them) go through one handler with structlog's `ProcessorFormatter`, so a traceback is a
field of one line instead of many plain lines. `console` renders for a person at a terminal.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson
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
    global _access
    _access = access_line_logger(renders_json(settings), level)
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


ACCESS = "atkproxy.access"
_access: Any = structlog.get_logger(ACCESS)


def access_line_logger(json: bool, level: int, out: BinaryIO | None = None) -> Any:
    """The access line's logger. In JSON (production) `JsonLines`, which writes the line
    structlog's chain would (same fields, same order) to stdout's bytes through a
    `LineBuffer`: on the pass-through path, which is what the access line is about, the
    shared chain cost 70 µs per request and structlog's own chain with orjson 16 µs
    (benchmarks/RESULTS.md). Only the lines of one turn may reach stdout after a line
    another logger wrote in that turn (their timestamps say the order)."""
    if not json:
        return structlog.get_logger(ACCESS)
    return JsonLines(LineBuffer(out or sys.stdout.buffer), level)


class JsonLines:
    """Info lines of the access logger as JSON, one `orjson.dumps` each."""

    _OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z

    def __init__(self, out: LineBuffer, level: int) -> None:
        self._out = out
        self._on = level <= logging.INFO

    def info(self, event: str, **fields: Any) -> None:
        if not self._on:
            return
        now = datetime.now(UTC)
        line = {"logger": ACCESS, **fields, "event": event, "level": "info", "timestamp": now}
        self._out.write(orjson.dumps(line, option=self._OPTIONS))
        self._out.flush()


class LineBuffer:
    """stdout's bytes for the access lines: the lines of one turn of the event loop go out
    in one write at the start of the next (one system call for many requests under load,
    and a line is never later than that turn). Outside a running loop, and at exit, what
    is held is written at once."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lines: list[bytes] = []
        self._due = False
        atexit.register(self.drain)

    def write(self, line: bytes) -> None:
        self._lines.append(line)

    def flush(self) -> None:  # BytesLogger flushes after every line
        if self._due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.drain()
            return
        self._due = True
        loop.call_soon(self.drain)

    def drain(self) -> None:
        self._due = False
        if self._lines:
            data = b"".join(self._lines)
            self._lines.clear()
            self._out.write(data)
            self._out.flush()


class AccessLogger(AbstractAccessLogger):
    """One line per request: what was asked and answered, never headers, query or body."""

    @property
    def enabled(self) -> bool:
        """Whether aiohttp should call `log` at all (not below the configured level)."""
        return self.enabled_for(self.logger)

    @staticmethod
    def enabled_for(logger: logging.Logger) -> bool:
        return bool(logger.isEnabledFor(logging.INFO))

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        job = response.headers.get("X-ATK-Job")
        access_line(request.method, request.path, response.status, time, response.body_length, job)


def access_line(
    method: str, path: str, status: int, duration: float, size: int, job: str | None
) -> None:
    """The access line of one request (`job`: the job its answer names, if any)."""
    _access.info(
        "request",
        method=method,
        path=path,
        status=status,
        duration=round(duration, 6),
        bytes=size,
        mode="sync" if job is None else "async",
        job=job,
    )
