"""A job as Redis hash fields and back (pure): one field per small field, bodies apart.

Every value is bytes. Floats are written with `repr`, which reads back to the same float,
and the Lua scripts never format a number they did not receive as text, so times survive
the round trip exactly. Strings are UTF-8 with surrogateescape (aiohttp decodes header
bytes that are not UTF-8 that way). A field that is None is not written at all.

Bodies are `<JSON metadata>\\n<raw body>`: JSON without indentation holds no raw newline,
so the first newline ends the metadata, and the body bytes are kept as they came.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from ..jobs import AtkStatus, Attempt, Job, JobState, UpstreamRequest, UpstreamResult

Fields = dict[str, bytes]

BODIES = ("request", "result", "reply")


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _untext(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _attempts(value: tuple[Attempt, ...]) -> bytes:
    return _json([[a.at, a.status, a.error, a.duration, a.retry_after] for a in value])


def _unattempts(raw: bytes) -> tuple[Attempt, ...]:
    return tuple(Attempt(*item) for item in json.loads(raw))


Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]

_FLOAT: Codec = (lambda v: repr(float(v)).encode(), lambda raw: float(raw))
_INT: Codec = (lambda v: str(int(v)).encode(), lambda raw: int(raw))
_TEXT: Codec = (_text, _untext)

# how each small field is written; a field missing here is text
SMALL_CODECS: dict[str, Codec] = {
    "created_at": _FLOAT,
    "updated_at": _FLOAT,
    "due_at": _FLOAT,
    "lease_until": _FLOAT,
    "upstream_status": _INT,
    "delivery_base": _INT,
    "tries": _INT,
    "replay_safe": (lambda v: b"1" if v else b"0", lambda raw: raw == b"1"),
    "path_params": (_json, json.loads),
    "attempts": (_attempts, _unattempts),
    "state": (lambda v: v.value.encode(), lambda raw: JobState(raw.decode())),
    "status": (lambda v: v.value.encode(), lambda raw: AtkStatus(raw.decode())),
}

SMALL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Job) if f.name not in BODIES)


def small_fields(job: Job) -> tuple[Fields, list[str]]:
    """The job's small fields to write, and the names of those that are None (to delete)."""
    written: Fields = {}
    absent: list[str] = []
    for name in SMALL_FIELDS:
        value = getattr(job, name)
        if value is None:
            absent.append(name)
        else:
            written[name] = SMALL_CODECS.get(name, _TEXT)[0](value)
    return written, absent


def all_fields(job: Job) -> Fields:
    """Everything a new job's hash holds: the small fields and the bodies it has."""
    written, _ = small_fields(job)
    if job.request is not None:
        written["request"] = encode_request(job.request)
    if job.result is not None:
        written["result"] = encode_result(job.result)
    if job.reply is not None:
        written["reply"] = job.reply
    return written


def decode_job(stored: Mapping[str, bytes]) -> Job:
    """The job from its hash fields (those read: a status read asks for no bodies)."""
    values: dict[str, Any] = {
        name: SMALL_CODECS.get(name, _TEXT)[1](stored[name])
        for name in SMALL_FIELDS
        if name in stored
    }
    if "request" in stored:
        values["request"] = decode_request(stored["request"])
    if "result" in stored:
        values["result"] = decode_result(stored["result"])
    if "reply" in stored:
        values["reply"] = stored["reply"]
    return Job(**values)


def unpack(packed: bytes) -> dict[str, bytes]:
    """A hash the scripts packed as `<length>:<bytes>` for each field and value in turn."""
    items: list[bytes] = []
    at = 0
    while at < len(packed):
        colon = packed.index(b":", at)
        start = colon + 1
        at = start + int(packed[at:colon])
        items.append(packed[start:at])
    if len(items) % 2:
        raise ValueError("a packed job hash with a field and no value")
    return {items[i].decode(): items[i + 1] for i in range(0, len(items), 2)}


def _headers_json(headers: list[tuple[str, str]]) -> list[list[str]]:
    return [[name, value] for name, value in headers]


def _with_body(meta: dict[str, Any], body: bytes) -> bytes:
    # ensure_ascii (the default) writes lone surrogates as \\udcXX escapes that read back
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + body


def _split(raw: bytes) -> tuple[dict[str, Any], bytes]:
    meta, _, body = raw.partition(b"\n")
    return json.loads(meta), body


def encode_request(request: UpstreamRequest) -> bytes:
    meta = {
        "method": request.method,
        "path_qs": request.path_qs,
        "headers": _headers_json(request.headers),
    }
    return _with_body(meta, request.body)


def decode_request(raw: bytes) -> UpstreamRequest:
    meta, body = _split(raw)
    headers = [(name, value) for name, value in meta["headers"]]
    return UpstreamRequest(meta["method"], meta["path_qs"], headers, body)


def encode_result(result: UpstreamResult) -> bytes:
    meta = {
        "status": result.status,
        "headers": _headers_json(result.headers),
        "error": result.error,
        "not_sent": result.not_sent,
    }
    return _with_body(meta, result.body)


def decode_result(raw: bytes) -> UpstreamResult:
    meta, body = _split(raw)
    headers = [(name, value) for name, value in meta["headers"]]
    return UpstreamResult(meta["status"], headers, body, meta["error"], meta["not_sent"])
