"""The configuration model: durations, sizes, defaults and validation (settings.py)."""

from __future__ import annotations

from functools import reduce
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from atkproxy.jobs import AtkStatus
from atkproxy.settings import (
    IdSource,
    Management,
    Route,
    Settings,
    StatusRule,
    UpstreamSettings,
    parse_duration,
    parse_size,
)


def error_text(model: type[BaseModel], data: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return str(caught.value)


# -- parse_duration and parse_size ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param("250ms", 0.25, id="ms"),
        pytest.param("30s", 30.0, id="s"),
        pytest.param("5m", 300.0, id="m"),
        pytest.param("2h", 7200.0, id="h"),
        pytest.param("7d", 604800.0, id="d"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("45", 45.0, id="bare-number-is-seconds"),
        pytest.param(" 10 s ", 10.0, id="blanks"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param(12, 12.0, id="int"),
        pytest.param(0.5, 0.5, id="float"),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("soon", id="word"),
        pytest.param("5 minutes", id="long-unit"),
        pytest.param("5w", id="unknown-unit"),
        pytest.param("s", id="unit-only"),
        pytest.param("-5s", id="negative-text"),
        pytest.param("1.2.3s", id="two-points"),
        pytest.param("5m30s", id="compound"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
    ],
)
def test_parse_duration_invalid(value: Any) -> None:
    message = f"invalid duration {value!r} (use e.g. 250ms, 30s, 5m, 2h)"
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


def test_parse_duration_rejects_negative_numbers() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(-5)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        pytest.param("512", 512, id="bare"),
        pytest.param("512B", 512, id="bytes"),
        pytest.param("64KiB", 64 * 1024, id="KiB"),
        pytest.param("2KB", 2000, id="KB"),
        pytest.param("1MiB", 1024**2, id="MiB"),
        pytest.param("1MB", 1000**2, id="MB"),
        pytest.param("1GiB", 1024**3, id="GiB"),
        pytest.param("3GB", 3 * 1000**3, id="GB"),
        pytest.param("64kib", 64 * 1024, id="any-case"),
        pytest.param(" 10 MiB ", 10 * 1024**2, id="blanks"),
        pytest.param(4096, 4096, id="int"),
        pytest.param(0, 0, id="zero"),
    ],
)
def test_parse_size(value: Any, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("big", id="word"),
        pytest.param("1.5MiB", id="fraction"),
        pytest.param("1TB", id="unknown-unit"),
        pytest.param("-1", id="negative-text"),
        pytest.param("MiB", id="unit-only"),
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
    ],
)
def test_parse_size_invalid(value: Any) -> None:
    message = f"invalid size {value!r} (use e.g. 512, 64KiB, 1MiB)"
    with pytest.raises(ValueError) as caught:
        parse_size(value)
    assert str(caught.value) == message


def test_parse_size_rejects_negative_numbers() -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(-1)


def test_durations_and_sizes_in_settings() -> None:
    settings = Settings.model_validate(
        {"upstream": {"timeout": "2m", "connect_timeout": "250ms"}, "async": {"max_body": "2MiB"}}
    )
    assert (settings.upstream.timeout, settings.upstream.connect_timeout) == (120.0, 0.25)
    assert settings.async_.max_body == 2 * 1024**2


def test_an_invalid_duration_names_the_key() -> None:
    text = error_text(Settings, {"callback": {"timeout": "soon"}})
    assert "callback.timeout" in text
    assert "invalid duration 'soon'" in text


# -- defaults and aliases ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("listen.host", "0.0.0.0", id="listen.host"),
        pytest.param("listen.port", 8080, id="listen.port"),
        pytest.param("upstream.url", "http://127.0.0.1:8081", id="upstream.url"),
        pytest.param("upstream.timeout", 30.0, id="upstream.timeout"),
        pytest.param("upstream.connect_timeout", 5.0, id="upstream.connect_timeout"),
        pytest.param("upstream.max_connections", 100, id="upstream.max_connections"),
        pytest.param("store.url", "sqlite:///atkproxy-jobs.db", id="store.url"),
        pytest.param("store.retention", 7 * 86400.0, id="store.retention"),
        pytest.param("async_.max_body", 1024 * 1024, id="async.max_body"),
        pytest.param("async_.max_inflight", 16, id="async.max_inflight"),
        pytest.param("async_.max_queue", 1000, id="async.max_queue"),
        pytest.param("async_.retry_after", 1, id="async.retry_after"),
        pytest.param("async_.drain_timeout", 10.0, id="async.drain_timeout"),
        pytest.param("async_.routes", [], id="async.routes"),
        pytest.param("callback.timeout", 10.0, id="callback.timeout"),
        pytest.param("callback.no_callback_statuses", [401, 403], id="no_callback_statuses"),
        pytest.param("status.rules", [], id="status.rules"),
        pytest.param("management.prefix", "/_atk", id="management.prefix"),
        pytest.param("logging.level", "info", id="logging.level"),
        pytest.param("logging.format", "auto", id="logging.format"),
    ],
)
def test_settings_defaults(key: str, value: Any) -> None:
    found = reduce(getattr, key.split("."), Settings())
    assert found == value


def test_route_defaults() -> None:
    route = Route.model_validate({"path": "/x"})
    assert route.methods == ["POST", "PUT", "PATCH", "DELETE"]
    assert (route.start, route.json_body, route.wants_json, route.replay_safe) == (
        False,
        None,
        False,
        False,
    )
    assert [(s.source, s.name, s.inject) for s in route.id] == [("assign", None, None)]


@pytest.mark.parametrize(
    ("spec", "wants_json"),
    [
        pytest.param({"path": "/x"}, False, id="default-not-json"),
        pytest.param({"path": "/x", "start": True}, True, id="start-json"),
        pytest.param({"path": "/x", "start": True, "json": False}, False, id="start-json-off"),
        pytest.param({"path": "/x", "json": True}, True, id="json-on"),
    ],
)
def test_route_wants_json(spec: dict[str, Any], wants_json: bool) -> None:
    assert Route.model_validate(spec).wants_json is wants_json


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"async": {"max_queue": 5}}, id="alias"),
        pytest.param({"async_": {"max_queue": 5}}, id="field-name"),
    ],
)
def test_async_section_alias(data: dict[str, Any]) -> None:
    settings = Settings.model_validate(data)
    assert settings.async_.max_queue == 5
    assert settings.model_dump(by_alias=True)["async"]["max_queue"] == 5


@pytest.mark.parametrize(
    ("data", "key"),
    [
        pytest.param({"bogus": {}}, "bogus", id="unknown-section"),
        pytest.param({"async": {"max_bodies": 1}}, "async.max_bodies", id="unknown-key"),
        pytest.param({"listen": {"port": 70000}}, "listen.port", id="port-range"),
        pytest.param({"async": {"max_inflight": 0}}, "async.max_inflight", id="max-inflight"),
        pytest.param({"store": {"url": "postgres://x"}}, "store.url", id="store-scheme"),
        pytest.param({"logging": {"level": "loud"}}, "logging.level", id="logging-level"),
    ],
)
def test_invalid_settings_name_the_key(data: dict[str, Any], key: str) -> None:
    assert key in error_text(Settings, data)


def test_logging_level_any_case() -> None:
    assert Settings.model_validate({"logging": {"level": "DEBUG"}}).logging.level == "debug"


# -- status rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "patterns"),
    [
        pytest.param([404], ["404"], id="int"),
        pytest.param(["404"], ["404"], id="text"),
        pytest.param([404, "5xx", "*"], ["404", "5xx", "*"], id="mixed"),
    ],
)
def test_status_patterns_accept_ints(given: list[Any], patterns: list[str]) -> None:
    rule = StatusRule.model_validate({"status": given, "result": "Failed"})
    assert rule.status == patterns


def test_status_rule_values_keys_are_json_text() -> None:
    rule = StatusRule.model_validate(
        yaml.safe_load("{pointer: /s, values: {1: Active, 'x': Failed, false: Completed}}")
    )
    assert rule.values == {
        "1": AtkStatus.ACTIVE,
        "x": AtkStatus.FAILED,
        "false": AtkStatus.COMPLETED,
    }


def test_status_rule_defaults() -> None:
    rule = StatusRule.model_validate({"probe": "/{id}"})
    assert (rule.status, rule.methods) == (["*"], ["*"])
    assert rule.probe_map == {200: AtkStatus.ACTIVE, 404: AtkStatus.COMPLETED}


ONE_OUTCOME = "a status rule needs exactly one of: pointer (+values), probe, result"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({}, ONE_OUTCOME, id="none"),
        pytest.param({"status": ["2xx"]}, ONE_OUTCOME, id="patterns-only"),
        pytest.param({"result": "Failed", "probe": "/x"}, ONE_OUTCOME, id="result-and-probe"),
        pytest.param(
            {"pointer": "/s", "values": {"1": "Active"}, "result": "Failed"},
            ONE_OUTCOME,
            id="pointer-and-result",
        ),
        pytest.param(
            {"pointer": "/s", "values": {"1": "Active"}, "probe": "/x"},
            ONE_OUTCOME,
            id="pointer-and-probe",
        ),
        pytest.param(
            {"pointer": "/s"}, "a pointer rule needs a values map", id="pointer-no-values"
        ),
        pytest.param(
            {"pointer": "/s", "values": {}},
            "a pointer rule needs a values map",
            id="pointer-empty-values",
        ),
        pytest.param({"result": "Done"}, "result", id="unknown-status"),
        pytest.param(
            {"pointer": "/s", "values": {"1": "Done"}}, "values.1", id="unknown-status-in-values"
        ),
        pytest.param({"result": "Failed", "extra": 1}, "extra", id="unknown-key"),
    ],
)
def test_status_rule_invalid(spec: dict[str, Any], message: str) -> None:
    assert message in error_text(StatusRule, spec)


# -- id sources -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"from": "path"}, "id source 'path' needs a name", id="path-no-name"),
        pytest.param(
            {"from": "query", "name": ""}, "id source 'query' needs a name", id="query-empty-name"
        ),
        pytest.param({"from": "header"}, "id source 'header' needs a name", id="header-no-name"),
        pytest.param({"from": "body"}, "id source 'body' needs a name", id="body-no-name"),
        pytest.param(
            {"from": "body", "name": "id"},
            "body id source needs a JSON pointer, got 'id'",
            id="body-not-a-pointer",
        ),
        pytest.param(
            {"from": "assign", "inject": "query"},
            "an assigned id injected upstream needs a name",
            id="inject-no-name",
        ),
        pytest.param({"from": "cookie", "name": "x"}, "from", id="unknown-source"),
        pytest.param(
            {"from": "assign", "inject": "cookie", "name": "x"}, "inject", id="unknown-inject"
        ),
        pytest.param({"name": "id"}, "from", id="no-source"),
    ],
)
def test_id_source_invalid(spec: dict[str, Any], message: str) -> None:
    assert message in error_text(IdSource, spec)


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        pytest.param({"from": "assign"}, ("assign", None, None), id="assign"),
        pytest.param(
            {"from": "assign", "inject": "body", "name": "id"},
            ("assign", "id", "body"),
            id="assign-inject-bare-body-name",
        ),
        pytest.param({"from": "body", "name": "/a/b"}, ("body", "/a/b", None), id="body-pointer"),
        pytest.param({"from": "header", "name": "X-Id"}, ("header", "X-Id", None), id="header"),
    ],
)
def test_id_source_valid(spec: dict[str, Any], fields: tuple[str, str | None, str | None]) -> None:
    found = IdSource.model_validate(spec)
    assert (found.source, found.name, found.inject) == fields


# -- upstream URL and management prefix ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("http://127.0.0.1:8081", "http://127.0.0.1:8081", id="http"),
        pytest.param("https://backend.svc", "https://backend.svc", id="https"),
        pytest.param("http://backend:8080/", "http://backend:8080", id="trailing-slash-cut"),
        pytest.param("http://backend/api/", "http://backend/api", id="base-path"),
    ],
)
def test_upstream_url_valid(url: str, expected: str) -> None:
    assert UpstreamSettings.model_validate({"url": url}).url == expected


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://backend", id="ftp"),
        pytest.param("backend:8080", id="no-scheme"),
        pytest.param("/api", id="relative"),
        pytest.param("http://", id="no-host"),
        pytest.param("", id="empty"),
    ],
)
def test_upstream_url_invalid(url: str) -> None:
    expected = f"must be an absolute http(s) URL, got {url!r}"
    assert expected in error_text(UpstreamSettings, {"url": url})


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("/_atk", "/_atk", id="default-form"),
        pytest.param("/ops/atk/", "/ops/atk", id="trailing-slash-cut"),
    ],
)
def test_management_prefix_valid(prefix: str, expected: str) -> None:
    assert Management.model_validate({"prefix": prefix}).prefix == expected


@pytest.mark.parametrize(
    "prefix",
    [pytest.param("_atk", id="no-leading-slash"), pytest.param("", id="empty")],
)
def test_management_prefix_invalid(prefix: str) -> None:
    assert "must start with '/'" in error_text(Management, {"prefix": prefix})


# -- lists given as text (environment variables, -D) -----------------------------------------

ROUTES_YAML = """
- path: "/{workflow}"
  methods: [post]
  start: true
  id:
    - {from: query, name: businessKey}
    - {from: assign, inject: query, name: businessKey}
- path: "/{workflow}/{id}"
  id: [{from: path, name: id}]
"""


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(ROUTES_YAML, id="yaml"),
        pytest.param(
            '[{"path": "/{workflow}", "methods": ["post"], "start": true, "id": ['
            '{"from": "query", "name": "businessKey"},'
            '{"from": "assign", "inject": "query", "name": "businessKey"}]},'
            '{"path": "/{workflow}/{id}", "id": [{"from": "path", "name": "id"}]}]',
            id="json",
        ),
    ],
)
def test_routes_as_text(text: str) -> None:
    routes = Settings.model_validate({"async": {"routes": text}}).async_.routes
    assert [(r.path, r.methods, r.start) for r in routes] == [
        ("/{workflow}", ["POST"], True),
        ("/{workflow}/{id}", ["POST", "PUT", "PATCH", "DELETE"], False),
    ]
    assert [[(s.source, s.name, s.inject) for s in r.id] for r in routes] == [
        [("query", "businessKey", None), ("assign", "businessKey", "query")],
        [("path", "id", None)],
    ]


def test_no_callback_statuses_as_text() -> None:
    settings = Settings.model_validate({"callback": {"no_callback_statuses": "[401, 403, 407]"}})
    assert settings.callback.no_callback_statuses == [401, 403, 407]


def test_status_rules_as_text() -> None:
    settings = Settings.model_validate({"status": {"rules": "- {status: [404], result: Failed}"}})
    assert [(r.status, r.result) for r in settings.status.rules] == [(["404"], AtkStatus.FAILED)]


def test_routes_text_not_a_list_names_the_key() -> None:
    assert "async.routes" in error_text(Settings, {"async": {"routes": "just text"}})


def test_routes_text_malformed_yaml_is_a_validation_error() -> None:
    # unquoted `{` inside a flow mapping: a YAML syntax error
    assert "async.routes" in error_text(Settings, {"async": {"routes": "- {path: /{workflow}}"}})
