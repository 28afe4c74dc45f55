"""Async requests: validated, recorded, answered 202 before the upstream is called.

Order of checks (the first failure answers): mode value (400), header size (431), room in
the queue (503 + Retry-After: checked before the body is read, so an overloaded proxy sheds
load cheaply), callback URL and its destination (400), path segments and a repeated id
parameter (400), body size (413) and time (408), JSON where the route needs it (415, 400),
instance id (400). Nothing is recorded before all have passed; the job is committed to
the store before the 202 leaves. A request with an Idempotency-Key already recorded (same
method and path) gets the first job's 202 and runs nothing; another body under the same
key is a 422.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from . import jsonstrict
from .auth import CallbackAuth
from .callback_urls import CALLBACK, CallbackUrls, refused_callback
from .destinations import Policy, Refused
from .engine import Engine
from .errors import Rejected
from .headers import header_pairs, upstream_headers
from .jobs import Job, UpstreamRequest, new_instance_id, new_job_id
from .limits import check_header_size, check_path, check_single_ids, within
from .ownership import ownership_for
from .resolver import policy_for
from .routes import IdNotFound, Resolved, RouteMatch, Router, Target, resolve_id
from .settings import IdSource, Settings
from .store import JobStore
from .tracing import job_trace, trace_fields
from .upstream import CHUNK

log = structlog.get_logger("atkproxy.accept")

MODE = "X-ATK-Mode"
ASYNC_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_ID = 256
# A request no route matches gets a new instance id, which the upstream is not told.
UNMATCHED = (IdSource.model_validate({"from": "assign"}),)


@dataclass(frozen=True, slots=True)
class Mode:
    is_async: bool
    via_prefer: bool = False


SYNC = Mode(False)


def requested_mode(headers: CIMultiDictProxy[str]) -> Mode:
    """X-ATK-Mode: async|sync (any case), or RFC 7240 Prefer: respond-async."""
    value = headers.get(MODE)
    if value is not None:
        mode = value.strip().lower()
        if mode not in ("async", "sync"):
            raise Rejected(400, f"{MODE} must be 'async' or 'sync', got {value!r}")
        return Mode(mode == "async")
    wanted = {_preference_name(p) for v in headers.getall("Prefer", []) for p in _preferences(v)}
    return Mode(True, via_prefer=True) if "respond-async" in wanted else SYNC


def _preferences(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def _preference_name(preference: str) -> str:
    return preference.split(";")[0].split("=")[0].strip().lower()


def without_respond_async(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """The proxy answers `Prefer: respond-async` itself; the backend must not see it too."""
    kept = [
        p
        for v in headers.popall("Prefer", [])
        for p in _preferences(v)
        if _preference_name(p) != "respond-async"
    ]
    if kept:
        headers["Prefer"] = ", ".join(kept)
    return headers


def callback_url(headers: CIMultiDictProxy[str], policy: Policy | None = None) -> str | None:
    """The callback URL when the destination policy lets it pass (a 400 naming why, if not)."""
    value = headers.get(CALLBACK)
    if value is None:
        return None
    try:
        url = (policy or Policy()).check_url(value)
    except Refused as exc:
        raise refused_callback(exc) from None
    return str(url)


def check_instance_id(instance_id: str) -> str:
    """Ids go into headers and URLs: printable and of a sane length, or the request is refused."""
    if len(instance_id) > MAX_ID or not instance_id.isprintable():
        raise Rejected(400, f"instance id must be printable and at most {MAX_ID} characters")
    return instance_id


def is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def read_body(request: web.Request, limit: int) -> bytes:
    too_large = Rejected(413, f"request body exceeds async.max_body ({limit} bytes)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def body_at_hand(request: web.Request, limit: int) -> bytes | None:
    """The body when all of it came in with the head (the usual small request): taken as
    it is, with no timer and no read; None when it must be read (read_body)."""
    length = request.content_length
    if length is None or length > limit or not request.content.is_eof():
        return None
    return request.content.read_nowait()


def parse_json(request: web.Request, body: bytes, match: RouteMatch | None) -> Any:
    """The JSON document of the body: required on JSON routes, used when present elsewhere."""
    wanted = match is not None and match.route.wants_json
    if not is_json(request.content_type) or not body:
        if wanted:
            raise Rejected(415, "this route takes a JSON body (Content-Type: application/json)")
        return None
    try:
        doc = jsonstrict.loads(body)
    except ValueError as exc:
        raise Rejected(400, f"request body is not valid JSON: {exc}") from None
    if match is not None and match.route.start and not isinstance(doc, dict):
        raise Rejected(400, "a start takes a JSON object body")
    return doc


def reply_bytes(match: RouteMatch | None, resolved: Resolved, body: bytes) -> bytes:
    """The 202 body. For a start whose JSON body the proxy did not change (no id injected
    into it) and that has no `id` of its own, the client's bytes follow the id as they came:
    re-serialising a large document would cost more than the rest of the accept."""
    doc = resolved.target.doc
    wanted = match is not None and match.route.start and isinstance(doc, dict)
    if wanted and doc and "id" not in doc and not resolved.body_changed:
        text = body.lstrip(b" \t\r\n")
        # a NUL second byte: UTF-16/32, which json.loads takes and a UTF-8 prefix would break
        if text[:1] == b"{" and text[1:2] != b"\0":
            return b'{"id":' + jsonstrict.dumps(resolved.instance_id) + b"," + text[1:]
    return jsonstrict.dumps(reply_body(match, resolved))


def reply_body(match: RouteMatch | None, resolved: Resolved) -> dict[str, Any]:
    doc = resolved.target.doc
    if match is not None and match.route.start and isinstance(doc, dict):
        return {"id": resolved.instance_id, **{k: v for k, v in doc.items() if k != "id"}}
    return {"id": resolved.instance_id}


IDEMPOTENCY_KEY = "Idempotency-Key"


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def scoped(method: str, path: str, key: str, owner: str | None) -> str:
    """An Idempotency-Key names a job of its owner only: another caller's same key is new."""
    return digest(method, path, key) if owner is None else digest(method, path, key, owner)


def idempotency_of(
    request: web.Request, body: bytes, owner: str | None
) -> tuple[str | None, str | None]:
    """The digest an Idempotency-Key is recorded under (method, path, key, owner) and the
    fingerprint of the request as the client sent it (an id assigned and injected into the
    body differs every time); (None, None) without a key."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None, None
    return scoped(request.method, request.path, key, owner), digest(request.raw_path, body)


class Acceptor:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        engine: Engine,
        auth: CallbackAuth,
        destinations: Policy | None = None,
    ) -> None:
        self._settings = settings
        self._callbacks = CallbackUrls(destinations or policy_for(settings))
        self._router = Router(settings.async_.routes)
        self._store = store
        self._engine = engine
        self._auth = auth
        self._ownership = ownership_for(settings)

    async def accept(self, request: web.Request, mode: Mode) -> web.Response:
        check_header_size(request.raw_headers, self._settings.async_.max_headers)
        try:
            async with self._engine.admission.place() as place:
                job = await self._record(request, place.slot)
                place.taken = True
        except Repeated as repeated:
            return self.repeat(repeated, mode)
        self._hand_over(job, place.slot)
        log.info(
            "job accepted",
            job=job.id,
            instance=job.instance_id,
            method=request.method,
            path=request.path,
            route=job.route,
            callback=job.wants_callback,
            **trace_fields(job.trace),
        )
        return self._reply(job, mode)

    def _hand_over(self, job: Job, slot: bool) -> None:
        if slot:
            self._engine.run_now(job)
        else:
            self._engine.wake()

    async def _record(self, request: web.Request, slot: bool) -> Job:
        """Validate the request, build its job and commit it to the store."""
        callback = request.headers.get(CALLBACK)
        if callback is not None:
            transport = request.transport
            listener = transport.get_extra_info("sockname") if transport else None
            callback = self._callbacks.check(callback, listener)
        check_path(request.raw_path)
        match = self._router.match(request.method, request.path)
        check_single_ids(request.query, match.route.id if match else UNMATCHED)
        limit = self._settings.async_.max_body
        body = body_at_hand(request, limit)
        if body is None:  # a slow body gives its queue place back when it times out
            body = await within(
                self._settings.listen.body_timeout, "request body", read_body(request, limit)
            )
        resolved = self._resolve(request, body, match)
        job = self._job(request, body, match, resolved, callback)
        if slot:
            job = job.leased(self._engine.worker.owner, time.time() + self._settings.store.lease)
        stored = await self._add(job)
        if stored.id != job.id:
            raise Repeated(stored, job)
        if job.wants_callback:
            self._auth.capture(job.id, request.headers)
        return job

    async def _add(self, job: Job) -> Job:
        try:
            return await self._store.add(job)
        except Exception as exc:  # nothing was accepted: the client may retry as told
            retry = self._settings.async_.retry_after
            message = f"job store unavailable ({exc.__class__.__name__})"
            raise Rejected(503, message, retry_after=retry) from exc

    def _resolve(self, request: web.Request, body: bytes, match: RouteMatch | None) -> Resolved:
        trusted = self._settings.listen.trusted_proxies
        headers = upstream_headers(
            request.headers, request.remote, request.scheme, request.host, trusted
        )
        without_respond_async(headers)
        target = Target(
            request.raw_path, header_pairs(headers.items()), parse_json(request, body, match)
        )
        sources = match.route.id if match else UNMATCHED
        try:
            resolved = resolve_id(sources, match.params if match else {}, target, new_instance_id)
        except IdNotFound as exc:
            raise Rejected(400, str(exc)) from None
        check_instance_id(resolved.instance_id)
        return resolved

    def _job(
        self,
        request: web.Request,
        body: bytes,
        match: RouteMatch | None,
        resolved: Resolved,
        callback: str | None,
    ) -> Job:
        target = resolved.target
        headers = target.headers
        owner = self._ownership.owner(request.headers)
        idempotency, fingerprint = idempotency_of(request, body, owner)
        if resolved.body_changed:
            body = jsonstrict.dumps(target.doc)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        upstream = UpstreamRequest(request.method, target.path_qs, headers, body)
        now = time.time()
        return Job(
            id=new_job_id(),
            instance_id=resolved.instance_id,
            method=request.method,
            path_qs=target.path_qs,
            request=upstream,
            callback_url=callback,
            route=match.route.path if match else None,
            replay_safe=match.route.replay_safe if match else False,
            path_params=match.params if match else {},
            created_at=now,
            updated_at=now,
            due_at=now,
            idempotency=idempotency,
            fingerprint=fingerprint,
            reply=reply_bytes(match, resolved, body),
            owner=owner,
            trace=job_trace(request.headers),
        )

    def _reply(self, job: Job, mode: Mode) -> web.Response:
        assert job.reply is not None
        headers = {
            "X-ATK-Job": job.id,
            "Location": f"{self._settings.management.prefix}/jobs/{job.id}",
            "Retry-After": str(self._settings.async_.retry_after),
        }
        if mode.via_prefer:
            headers["Preference-Applied"] = "respond-async"
        return web.Response(
            body=job.reply, status=202, headers=headers, content_type="application/json"
        )

    def repeat(self, repeated: Repeated, mode: Mode) -> web.Response:
        """An Idempotency-Key seen before: the first job's 202, or 422 for another request."""
        first, again = repeated.first, repeated.again
        if first.fingerprint != again.fingerprint:
            raise Rejected(422, f"{IDEMPOTENCY_KEY} was already used for another request")
        log.info("idempotent repeat; nothing run", job=first.id)
        return self._reply(first, mode)


class Repeated(Exception):
    """The request repeats an Idempotency-Key: `first` is the job recorded under it."""

    def __init__(self, first: Job, again: Job) -> None:
        super().__init__(first.id)
        self.first = first
        self.again = again
