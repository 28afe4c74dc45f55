"""Route matching and instance id rules (pure).

A route's path template uses `{name}` for one segment and `{name:regex}` for a custom
match (`/{workflow}/{id}/{rest:.*}`). The instance id is taken from the first source of
the route that yields one; an `assign` source makes one up and, when told, injects it
into the upstream request so the backend uses the same id.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from jsonpointer import JsonPointerException, resolve_pointer, set_pointer
from yarl import URL

from .jobs import Headers
from .settings import IdSource, Route
from .templates import compile_template
from .urls import with_query_param


class IdNotFound(ValueError):
    """No id source of the route yielded an instance id."""


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    params: dict[str, str]


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = [(route, compile_template(route.path)) for route in routes]

    def match(self, method: str, path: str) -> RouteMatch | None:
        for route, pattern in self._routes:
            if method in route.methods and (m := pattern.match(path)):
                return RouteMatch(route, m.groupdict())
        return None


@dataclass(frozen=True, slots=True)
class Target:
    """The parts of an async request that id rules read and inject into."""

    path_qs: str
    headers: Headers
    doc: Any = None  # the parsed JSON body, when the body is JSON


@dataclass(frozen=True, slots=True)
class Resolved:
    instance_id: str
    target: Target
    body_changed: bool = False


def pointer(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def header_value(headers: Headers, name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers if k.lower() == lowered), None)


def _as_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def extract(source: IdSource, params: dict[str, str], target: Target) -> str | None:
    name = source.name or ""
    if source.source == "path":
        return params.get(name) or None
    if source.source == "query":
        return URL(target.path_qs, encoded=True).query.get(name) or None
    if source.source == "header":
        return header_value(target.headers, name) or None
    if source.source == "body" and isinstance(target.doc, dict):
        return _as_id(resolve_pointer(target.doc, name, None))
    return None


def inject(source: IdSource, instance_id: str, target: Target) -> Resolved:
    name = source.name or ""
    if source.inject == "query":
        path, _, query = target.path_qs.partition("?")
        path_qs = f"{path}?{with_query_param(query, name, instance_id)}"
        return Resolved(instance_id, replace(target, path_qs=path_qs))
    if source.inject == "header":
        kept = [(k, v) for k, v in target.headers if k.lower() != name.lower()]
        return Resolved(instance_id, replace(target, headers=[*kept, (name, instance_id)]))
    if source.inject == "body":
        doc = _with_pointer(target.doc, pointer(name), instance_id)
        return Resolved(instance_id, replace(target, doc=doc), body_changed=True)
    return Resolved(instance_id, target)


def _with_pointer(doc: Any, path: str, value: str) -> Any:
    if not isinstance(doc, dict):
        raise IdNotFound("the body must be a JSON object to carry the instance id")
    try:
        return set_pointer(copy.deepcopy(doc), path, value, inplace=False)
    except JsonPointerException as exc:
        raise IdNotFound(f"cannot set {path} in the body: {exc}") from None


def resolve_id(
    sources: Sequence[IdSource],
    params: dict[str, str],
    target: Target,
    new_id: Callable[[], str],
) -> Resolved:
    for source in sources:
        if source.source == "assign":
            return inject(source, new_id(), target)
        if found := extract(source, params, target):
            return Resolved(found, target)
    raise IdNotFound("no instance id in the request: expected " + _describe(sources))


def _describe(sources: Sequence[IdSource]) -> str:
    names = {
        "path": "path parameter",
        "query": "query parameter",
        "header": "header",
        "body": "body field",
    }
    return " or ".join(f"{names[s.source]} {s.name!r}" for s in sources if s.source != "assign")
