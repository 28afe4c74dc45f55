"""Route templates, route matching and the instance id rules (routes.py)."""

from __future__ import annotations

from typing import Any

import pytest

from atkproxy.jobs import Headers
from atkproxy.routes import IdNotFound, Resolved, Router, Target, extract, resolve_id
from atkproxy.settings import IdSource, Route


def source(spec: dict[str, Any]) -> IdSource:
    return IdSource.model_validate(spec)


def route(spec: dict[str, Any]) -> Route:
    return Route.model_validate(spec)


def fixed_id() -> str:
    return "new-id"


def no_new_id() -> str:
    raise AssertionError("an id was assigned although a source yielded one")


# -- compile_template (through Router, so a route's template is what is tested) ------------

WORKFLOW = "/{workflow}"
INSTANCE = "/{workflow}/{id}"
OPERATION = "/{workflow}/{id}/{operation:.+}"


@pytest.mark.parametrize(
    ("template", "path", "params"),
    [
        pytest.param(WORKFLOW, "/orders", {"workflow": "orders"}, id="workflow"),
        pytest.param(WORKFLOW, "/orders/", {"workflow": "orders"}, id="workflow-trailing-slash"),
        pytest.param(WORKFLOW, "/", None, id="workflow-empty-segment"),
        pytest.param(WORKFLOW, "/orders/1", None, id="workflow-not-two-segments"),
        pytest.param(WORKFLOW, "orders", None, id="workflow-no-leading-slash"),
        pytest.param(INSTANCE, "/orders/42", {"workflow": "orders", "id": "42"}, id="instance"),
        pytest.param(
            INSTANCE,
            "/orders/42/",
            {"workflow": "orders", "id": "42"},
            id="instance-trailing-slash",
        ),
        pytest.param(INSTANCE, "/orders", None, id="instance-missing-id"),
        pytest.param(INSTANCE, "/orders//", None, id="instance-empty-id"),
        pytest.param(INSTANCE, "/orders/42/tasks", None, id="instance-not-three-segments"),
        pytest.param(
            OPERATION,
            "/orders/42/approve",
            {"workflow": "orders", "id": "42", "operation": "approve"},
            id="operation-one-segment",
        ),
        pytest.param(
            OPERATION,
            "/orders/42/tasks/7/complete",
            {"workflow": "orders", "id": "42", "operation": "tasks/7/complete"},
            id="operation-many-segments",
        ),
        pytest.param(OPERATION, "/orders/42/", None, id="operation-empty"),
        pytest.param("/v1.0/{workflow}", "/v1.0/orders", {"workflow": "orders"}, id="dot-literal"),
        pytest.param("/v1.0/{workflow}", "/v1x0/orders", None, id="dot-is-not-any-char"),
        pytest.param("/a+b/{id}", "/a+b/1", {"id": "1"}, id="plus-literal"),
        pytest.param("/a+b/{id}", "/aab/1", None, id="plus-is-not-repeat"),
        pytest.param("/(x)|[y]/{id}", "/(x)|[y]/1", {"id": "1"}, id="group-and-class-literals"),
        pytest.param("/$x^/{id}", "/$x^/1", {"id": "1"}, id="anchor-literals"),
        pytest.param("/items/{id:\\d{3}}", "/items/123", {"id": "123"}, id="custom-regex-braces"),
        pytest.param("/items/{id:\\d{3}}", "/items/1234", None, id="custom-regex-anchored-end"),
        pytest.param("/items/{id:\\d+}", "/items/abc", None, id="custom-regex-rejects"),
    ],
)
def test_templates(template: str, path: str, params: dict[str, str] | None) -> None:
    match = Router([route({"path": template, "methods": ["POST"]})]).match("POST", path)
    assert (match.params if match else None) == params


# -- Router.match ---------------------------------------------------------------------------

ROUTES: list[dict[str, Any]] = [
    {"path": "/{workflow}", "methods": ["POST"], "start": True},
    {"path": "/{workflow}/{id}", "methods": ["put", "DELETE"]},
    {"path": "/special/{id}", "methods": ["POST", "PUT"]},  # shadowed for PUT by the route above
    {"path": "/{workflow}/{id}/{operation:.+}"},  # default methods
]


@pytest.mark.parametrize(
    ("method", "path", "template", "params"),
    [
        pytest.param("POST", "/orders", "/{workflow}", {"workflow": "orders"}, id="start"),
        pytest.param("GET", "/orders", None, None, id="method-not-listed"),
        pytest.param(
            "PUT",
            "/orders/1",
            "/{workflow}/{id}",
            {"workflow": "orders", "id": "1"},
            id="methods-upper-cased",
        ),
        pytest.param(
            "DELETE",
            "/orders/1",
            "/{workflow}/{id}",
            {"workflow": "orders", "id": "1"},
            id="delete",
        ),
        pytest.param("PATCH", "/orders/1", None, None, id="patch-not-on-instance-route"),
        pytest.param(
            "PUT",
            "/special/1",
            "/{workflow}/{id}",
            {"workflow": "special", "id": "1"},
            id="first-match-wins",
        ),
        pytest.param(
            "POST",
            "/special/1",
            "/special/{id}",
            {"id": "1"},
            id="later-route-when-earlier-filters-method",
        ),
        pytest.param(
            "PATCH",
            "/orders/1/tasks/2",
            "/{workflow}/{id}/{operation:.+}",
            {"workflow": "orders", "id": "1", "operation": "tasks/2"},
            id="default-methods",
        ),
        pytest.param("GET", "/orders/1/tasks/2", None, None, id="get-not-a-default-method"),
        pytest.param("POST", "/", None, None, id="no-route"),
    ],
)
def test_router_match(
    method: str, path: str, template: str | None, params: dict[str, str] | None
) -> None:
    match = Router([route(r) for r in ROUTES]).match(method, path)
    if template is None:
        assert match is None
    else:
        assert match is not None
        assert (match.route.path, match.params) == (template, params)


def test_router_without_routes_matches_nothing() -> None:
    assert Router([]).match("POST", "/orders") is None


# -- extract --------------------------------------------------------------------------------

PATH_ID = {"from": "path", "name": "id"}
QUERY_KEY = {"from": "query", "name": "businessKey"}
HEADER_ID = {"from": "header", "name": "X-Instance-Id"}
BODY_ID = {"from": "body", "name": "/id"}
BODY_NESTED = {"from": "body", "name": "/meta/ref/key"}
BODY_LIST = {"from": "body", "name": "/items/0"}


@pytest.mark.parametrize(
    ("spec", "params", "target", "expected"),
    [
        pytest.param(PATH_ID, {"id": "42"}, Target("/o/42", []), "42", id="path"),
        pytest.param(PATH_ID, {"workflow": "o"}, Target("/o", []), None, id="path-absent"),
        pytest.param(PATH_ID, {"id": ""}, Target("/o", []), None, id="path-empty"),
        pytest.param(QUERY_KEY, {}, Target("/o?businessKey=k1", []), "k1", id="query"),
        pytest.param(
            QUERY_KEY, {}, Target("/o?a=1&businessKey=k%201", []), "k 1", id="query-decoded"
        ),
        pytest.param(
            QUERY_KEY, {}, Target("/o?businesskey=k1", []), None, id="query-name-case-sensitive"
        ),
        pytest.param(QUERY_KEY, {}, Target("/o?businessKey=", []), None, id="query-empty"),
        pytest.param(QUERY_KEY, {}, Target("/o", []), None, id="query-absent"),
        pytest.param(HEADER_ID, {}, Target("/o", [("X-Instance-Id", "h1")]), "h1", id="header"),
        pytest.param(
            HEADER_ID,
            {},
            Target("/o", [("x-instance-id", "h1")]),
            "h1",
            id="header-case-insensitive",
        ),
        pytest.param(
            HEADER_ID,
            {},
            Target("/o", [("X-INSTANCE-ID", "a"), ("x-instance-id", "b")]),
            "a",
            id="header-first-of-repeated",
        ),
        pytest.param(HEADER_ID, {}, Target("/o", [("X-Instance-Id", "")]), None, id="header-empty"),
        pytest.param(HEADER_ID, {}, Target("/o", [("X-Other", "h1")]), None, id="header-absent"),
        pytest.param(BODY_ID, {}, Target("/o", [], {"id": "b1"}), "b1", id="body"),
        pytest.param(BODY_ID, {}, Target("/o", [], {"id": 7}), "7", id="body-int"),
        pytest.param(BODY_ID, {}, Target("/o", [], {"id": 0}), "0", id="body-int-zero"),
        pytest.param(
            BODY_NESTED,
            {},
            Target("/o", [], {"meta": {"ref": {"key": "n1"}}}),
            "n1",
            id="body-nested",
        ),
        pytest.param(
            BODY_LIST, {}, Target("/o", [], {"items": ["l1", "l2"]}), "l1", id="body-list-index"
        ),
        pytest.param(BODY_ID, {}, Target("/o", [], {"id": True}), None, id="body-bool-rejected"),
        pytest.param(BODY_ID, {}, Target("/o", [], {"id": None}), None, id="body-null-rejected"),
        pytest.param(
            BODY_ID, {}, Target("/o", [], {"id": {"x": 1}}), None, id="body-object-rejected"
        ),
        pytest.param(BODY_ID, {}, Target("/o", [], {"id": [1]}), None, id="body-list-rejected"),
        pytest.param(BODY_ID, {}, Target("/o", [], {"id": 1.5}), None, id="body-float-rejected"),
        pytest.param(BODY_ID, {}, Target("/o", [], {"id": ""}), None, id="body-empty"),
        pytest.param(BODY_ID, {}, Target("/o", [], {"other": "x"}), None, id="body-absent"),
        pytest.param(
            BODY_NESTED,
            {},
            Target("/o", [], {"meta": "flat"}),
            None,
            id="body-pointer-through-string",
        ),
        pytest.param(
            BODY_NESTED, {}, Target("/o", [], {"meta": [1]}), None, id="body-pointer-through-list"
        ),
        pytest.param(BODY_ID, {}, Target("/o", [], ["id"]), None, id="body-list-document"),
        pytest.param(BODY_ID, {}, Target("/o", [], None), None, id="body-not-json"),
        pytest.param({"from": "assign"}, {}, Target("/o", []), None, id="assign-extracts-nothing"),
    ],
)
def test_extract(
    spec: dict[str, Any], params: dict[str, str], target: Target, expected: str | None
) -> None:
    assert extract(source(spec), params, target) == expected


# -- resolve_id: sources in order -----------------------------------------------------------

ALL_SOURCES = [PATH_ID, QUERY_KEY, HEADER_ID, BODY_ID]


@pytest.mark.parametrize(
    ("specs", "params", "target", "expected"),
    [
        pytest.param(
            ALL_SOURCES,
            {"id": "p"},
            Target("/o?businessKey=q", [("X-Instance-Id", "h")], {"id": "b"}),
            "p",
            id="path-first",
        ),
        pytest.param(
            ALL_SOURCES,
            {},
            Target("/o?businessKey=q", [("X-Instance-Id", "h")], {"id": "b"}),
            "q",
            id="query-when-no-path",
        ),
        pytest.param(
            ALL_SOURCES,
            {},
            Target("/o?businessKey=", [("X-Instance-Id", "h")], {"id": "b"}),
            "h",
            id="empty-query-skipped",
        ),
        pytest.param(
            ALL_SOURCES,
            {},
            Target("/o", [("X-Instance-Id", "")], {"id": 5}),
            "5",
            id="empty-header-skipped",
        ),
        pytest.param(
            [BODY_ID, PATH_ID],
            {"id": "p"},
            Target("/o", [], {"id": "b"}),
            "b",
            id="order-is-the-routes",
        ),
        pytest.param(
            [BODY_ID, PATH_ID],
            {"id": "p"},
            Target("/o", [], {"id": False}),
            "p",
            id="rejected-value-skipped",
        ),
    ],
)
def test_resolve_id_first_source_that_yields(
    specs: list[dict[str, Any]], params: dict[str, str], target: Target, expected: str
) -> None:
    resolved = resolve_id([source(s) for s in specs], params, target, no_new_id)
    assert resolved == Resolved(expected, target)


def test_resolve_id_found_before_assign_does_not_assign() -> None:
    specs = [QUERY_KEY, {"from": "assign", "inject": "query", "name": "businessKey"}]
    target = Target("/o?businessKey=k", [])
    assert resolve_id([source(s) for s in specs], {}, target, no_new_id) == Resolved("k", target)


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        pytest.param([PATH_ID], "expected path parameter 'id'", id="path"),
        pytest.param([QUERY_KEY], "expected query parameter 'businessKey'", id="query"),
        pytest.param([HEADER_ID], "expected header 'X-Instance-Id'", id="header"),
        pytest.param([BODY_NESTED], "expected body field '/meta/ref/key'", id="body"),
        pytest.param(
            [PATH_ID, QUERY_KEY, HEADER_ID, BODY_ID],
            "expected path parameter 'id' or query parameter 'businessKey' or header "
            "'X-Instance-Id' or body field '/id'",
            id="all-in-order",
        ),
    ],
)
def test_id_not_found_names_what_was_expected(specs: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(IdNotFound) as caught:
        resolve_id([source(s) for s in specs], {}, Target("/o", [], {}), no_new_id)
    assert str(caught.value) == "no instance id in the request: " + message


# -- resolve_id: assign, and inject into the upstream request ------------------------------


def assign(inject: str | None = None, name: str | None = None) -> IdSource:
    spec: dict[str, Any] = {"from": "assign"}
    if inject is not None:
        spec |= {"inject": inject, "name": name}
    return source(spec)


def test_assign_without_inject_leaves_the_request_alone() -> None:
    target = Target("/o?a=1", [("A", "1")], {"x": 1})
    assert resolve_id([assign()], {}, target, fixed_id) == Resolved("new-id", target)


@pytest.mark.parametrize(
    ("path_qs", "expected"),
    [
        pytest.param("/o", "/o?businessKey=new-id", id="no-query"),
        pytest.param("/o?a=1&b=2", "/o?a=1&b=2&businessKey=new-id", id="existing-query-kept"),
        pytest.param("/o?a=1&a=2", "/o?a=1&a=2&businessKey=new-id", id="repeated-kept"),
        pytest.param("/o?businessKey=", "/o?businessKey=new-id", id="empty-key-replaced"),
        pytest.param(
            "/o?q=a%26b&r=x%3Dy&s=1%2B1&t=100%25&u=%23h&v=caf%C3%A9&w=a+b",
            "/o?q=a%26b&r=x%3Dy&s=1%2B1&t=100%25&u=%23h&v=caf%C3%A9&w=a+b&businessKey=new-id",
            id="encoded-chars-preserved",
        ),
        pytest.param("/a%20b/o?x=1", "/a%20b/o?x=1&businessKey=new-id", id="encoded-path-kept"),
        pytest.param(
            "/o?slash=a%2Fb&space=%20&tilde=%7E&bare",
            "/o?slash=a%2Fb&space=%20&tilde=%7E&bare&businessKey=new-id",
            id="query-kept-byte-for-byte",
        ),
    ],
)
def test_assign_inject_query(path_qs: str, expected: str) -> None:
    target = Target(path_qs, [("A", "1")])
    resolved = resolve_id([assign("query", "businessKey")], {}, target, fixed_id)
    assert resolved == Resolved("new-id", Target(expected, [("A", "1")]))


def test_assign_inject_query_encodes_the_id() -> None:
    target = Target("/o", [])
    resolved = resolve_id([assign("query", "k")], {}, target, lambda: "a&b c")
    assert resolved.target.path_qs == "/o?k=a%26b%20c"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([], [("X-Instance-Id", "new-id")], id="added"),
        pytest.param(
            [("A", "1"), ("B", "2")],
            [("A", "1"), ("B", "2"), ("X-Instance-Id", "new-id")],
            id="others-kept-in-order",
        ),
        pytest.param(
            [("x-instance-id", "old"), ("A", "1"), ("X-INSTANCE-ID", "older")],
            [("A", "1"), ("X-Instance-Id", "new-id")],
            id="same-name-replaced-any-case",
        ),
    ],
)
def test_assign_inject_header(headers: Headers, expected: Headers) -> None:
    target = Target("/o?a=1", headers, {"x": 1})
    resolved = resolve_id([assign("header", "X-Instance-Id")], {}, target, fixed_id)
    assert resolved == Resolved("new-id", Target("/o?a=1", expected, {"x": 1}))


@pytest.mark.parametrize(
    ("name", "doc", "expected"),
    [
        pytest.param("/id", {"x": 1}, {"x": 1, "id": "new-id"}, id="pointer"),
        pytest.param("id", {"x": 1}, {"x": 1, "id": "new-id"}, id="bare-field-name"),
        pytest.param("id", {"id": "old"}, {"id": "new-id"}, id="existing-replaced"),
        pytest.param(
            "/meta/id", {"meta": {"a": 1}}, {"meta": {"a": 1, "id": "new-id"}}, id="nested"
        ),
    ],
)
def test_assign_inject_body(name: str, doc: dict[str, Any], expected: dict[str, Any]) -> None:
    original = repr(doc)
    target = Target("/o", [("A", "1")], doc)
    resolved = resolve_id([assign("body", name)], {}, target, fixed_id)
    assert resolved == Resolved("new-id", Target("/o", [("A", "1")], expected), body_changed=True)
    assert repr(doc) == original  # the request's own document is not changed


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param(None, "the body must be a JSON object", id="no-json-body"),
        pytest.param(["a"], "the body must be a JSON object", id="list-body"),
        pytest.param("text", "the body must be a JSON object", id="string-body"),
        pytest.param(3, "the body must be a JSON object", id="number-body"),
        pytest.param({}, "cannot set /meta/id in the body", id="missing-parent"),
        pytest.param({"meta": 5}, "cannot set /meta/id in the body", id="scalar-parent"),
    ],
)
def test_assign_inject_body_needs_an_object(doc: Any, message: str) -> None:
    with pytest.raises(IdNotFound, match=message):
        resolve_id([assign("body", "/meta/id")], {}, Target("/o", [], doc), fixed_id)
