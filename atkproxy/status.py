"""Deriving Active/Completed/Aborted/Failed from an upstream result (pure).

Rules are tried in order and the first that applies wins. A rule applies when the
upstream status matches one of its patterns and its outcome can be read: a JSON
pointer rule needs the pointer to resolve to a mapped value; a probe rule needs its
path template filled. With no rule applying: 2xx/3xx is Completed, anything else
(and no answer at all) is Failed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from jsonpointer import JsonPointerException, resolve_pointer

from . import jsonstrict
from .jobs import AtkStatus, UpstreamResult
from .settings import StatusRule


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask the upstream: GET `path`, then map its status; `fallback` when unmapped."""

    path: str
    mapping: Mapping[int, AtkStatus]
    fallback: AtkStatus

    def outcome(self, status: int | None) -> AtkStatus:
        return self.mapping.get(status, self.fallback) if status else self.fallback


PROBE_UNANSWERED = "status probe unanswered"
Ask = Callable[[str], Awaitable[int | None]]


async def ask_until_answered(
    probe: Probe, ask: Ask, max_age: float, first_delay: float = 0.25, max_delay: float = 10.0
) -> tuple[AtkStatus, str | None]:
    """Ask the probe until it gets an answer its map names, with backoff, for up to `max_age`
    seconds; then fall back to the upstream's own answer and say so (the reason)."""
    deadline = time.monotonic() + max_age
    delay = first_delay
    while True:
        answer = await ask(probe.path)
        if answer is not None and answer in probe.mapping:
            return probe.mapping[answer], None
        left = deadline - time.monotonic()
        if left <= 0:
            return probe.fallback, PROBE_UNANSWERED
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, max_delay)


def status_matches(patterns: Sequence[str], status: int) -> bool:
    code = str(status)
    return any(
        p == "*" or p == code or (p.lower().endswith("xx") and code[0] == p[0]) for p in patterns
    )


def default_status(result: UpstreamResult) -> AtkStatus:
    ok = result.error is None and 200 <= result.status < 400
    return AtkStatus.COMPLETED if ok else AtkStatus.FAILED


def _json(result: UpstreamResult) -> Any:
    """The answer's document, or None: a deep or non-strict one is no document to read."""
    try:
        return jsonstrict.loads(result.body)
    except ValueError:
        return None


def _pointer_outcome(rule: StatusRule, result: UpstreamResult) -> AtkStatus | None:
    try:
        value = resolve_pointer(_json(result), rule.pointer or "", None)
    except JsonPointerException:  # the document has another shape (a list, a scalar)
        return None
    if value is None or rule.values is None:
        return None
    return rule.values.get(value if isinstance(value, str) else json.dumps(value))


def _probe(rule: StatusRule, result: UpstreamResult, fields: Mapping[str, str]) -> Probe | None:
    quoted = {name: quote(value, safe="") for name, value in fields.items()}
    try:
        path = (rule.probe or "").format_map(quoted)
    except (KeyError, IndexError, ValueError):
        return None
    return Probe(path, rule.probe_map, default_status(result))


def applies(rule: StatusRule, method: str, status: int) -> bool:
    methods_ok = "*" in rule.methods or method.upper() in (m.upper() for m in rule.methods)
    return methods_ok and status_matches(rule.status, status)


def derive(
    rules: Sequence[StatusRule], method: str, result: UpstreamResult, fields: Mapping[str, str]
) -> AtkStatus | Probe:
    """The status, or a Probe to make first. `fields` fill probe templates ({id}, path params)."""
    if result.error is not None:
        return AtkStatus.FAILED
    for rule in rules:
        if not applies(rule, method, result.status):
            continue
        outcome: AtkStatus | Probe | None = rule.result
        if rule.pointer is not None:
            outcome = _pointer_outcome(rule, result)
        elif rule.probe is not None:
            outcome = _probe(rule, result, fields)
        if outcome is not None:
            return outcome
    return default_status(result)
