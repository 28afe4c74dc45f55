"""Deriving the workflow status from an upstream result (status.py)."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import pytest
import yaml

from atkproxy.jobs import AtkStatus, UpstreamResult
from atkproxy.settings import Settings, StatusRule
from atkproxy.status import Probe, derive, status_matches

ACTIVE, COMPLETED, ABORTED, FAILED = (
    AtkStatus.ACTIVE,
    AtkStatus.COMPLETED,
    AtkStatus.ABORTED,
    AtkStatus.FAILED,
)
JSON = [("Content-Type", "application/json")]
FIELDS = {"workflow": "registrations", "id": "r-1"}


def preset_rules() -> list[StatusRule]:
    text = files("atkproxy.presets").joinpath("automatiko.yaml").read_text()
    return Settings.model_validate(yaml.safe_load(text)).status.rules


def rules(*specs: dict[str, Any]) -> list[StatusRule]:
    return [StatusRule.model_validate(spec) for spec in specs]


def result(status: int, body: Any = None, *, raw: bytes | None = None) -> UpstreamResult:
    data = raw if raw is not None else b"" if body is None else json.dumps(body).encode()
    return UpstreamResult(status, JSON, data)


def model(state: Any) -> dict[str, Any]:
    return {"id": "r-1", "name": "x", "metadata": {"state": state}}


# -- status_matches -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "status", "expected"),
    [
        pytest.param(["2xx"], 200, True, id="2xx-200"),
        pytest.param(["2xx"], 204, True, id="2xx-204"),
        pytest.param(["2xx"], 299, True, id="2xx-299"),
        pytest.param(["2xx"], 301, False, id="2xx-301"),
        pytest.param(["2xx"], 199, False, id="2xx-199"),
        pytest.param(["4XX"], 404, True, id="4XX-upper-case"),
        pytest.param(["4XX"], 500, False, id="4XX-500"),
        pytest.param(["404"], 404, True, id="exact"),
        pytest.param(["404"], 400, False, id="exact-other"),
        pytest.param(["*"], 200, True, id="star-200"),
        pytest.param(["*"], 503, True, id="star-503"),
        pytest.param(["404", "5xx"], 502, True, id="any-of-several"),
        pytest.param(["404", "5xx"], 403, False, id="none-of-several"),
        pytest.param([], 200, False, id="no-patterns"),
    ],
)
def test_status_matches(patterns: list[str], status: int, expected: bool) -> None:
    assert status_matches(patterns, status) is expected


# -- derive with the Automatiko preset ------------------------------------------------------

PROBE = Probe("/registrations/r-1", {200: ACTIVE, 404: COMPLETED}, COMPLETED)


@pytest.mark.parametrize(
    ("method", "upstream", "expected"),
    [
        pytest.param("POST", result(200, model(1)), ACTIVE, id="state-1-active"),
        pytest.param("POST", result(201, model(2)), COMPLETED, id="state-2-completed"),
        pytest.param("PUT", result(200, model(3)), ABORTED, id="state-3-aborted"),
        pytest.param("POST", result(200, model(4)), ACTIVE, id="state-4-suspended-active"),
        pytest.param("POST", result(200, model(5)), FAILED, id="state-5-failed"),
        pytest.param("POST", result(200, model("2")), COMPLETED, id="state-as-string"),
        pytest.param("POST", result(200, {"id": "r-1"}), PROBE, id="no-metadata-probe"),
        pytest.param("POST", result(200, model(None)), PROBE, id="null-state-probe"),
        pytest.param("POST", result(200, model(9)), PROBE, id="unmapped-state-probe"),
        pytest.param("POST", result(204), PROBE, id="empty-body-probe"),
        pytest.param("POST", result(200, raw=b"<html>ok</html>"), PROBE, id="non-json-probe"),
        pytest.param("POST", result(200, raw=b"\xff\xfe"), PROBE, id="not-utf8-probe"),
        pytest.param("POST", result(200, [model(2)]), PROBE, id="list-body-probe"),
        pytest.param("POST", result(200, "text"), PROBE, id="string-body-probe"),
        pytest.param("POST", result(200, {"metadata": "x"}), PROBE, id="metadata-not-object"),
        pytest.param("DELETE", result(200, model(1)), ABORTED, id="delete-200-aborted"),
        pytest.param("delete", result(204), ABORTED, id="delete-any-case"),
        pytest.param("DELETE", result(404), FAILED, id="delete-404-failed"),
        pytest.param("POST", result(404, {"error": "no instance"}), FAILED, id="404-failed"),
        pytest.param("POST", result(409, {"error": "conflict"}), ABORTED, id="409-aborted"),
        pytest.param("POST", result(400), ABORTED, id="400-aborted"),
        pytest.param("POST", result(500, {"error": "boom"}), FAILED, id="500-failed"),
        pytest.param("POST", result(503), FAILED, id="503-failed"),
        pytest.param("POST", result(302), COMPLETED, id="3xx-no-rule-default"),
        pytest.param(
            "POST",
            UpstreamResult(502, JSON, b"{}", error="upstream unavailable: ClientOSError"),
            FAILED,
            id="no-answer-failed",
        ),
        pytest.param(
            "DELETE",
            UpstreamResult(504, JSON, b"{}", error="timeout"),
            FAILED,
            id="no-answer-failed-before-rules",
        ),
    ],
)
def test_derive_automatiko_preset(
    method: str, upstream: UpstreamResult, expected: AtkStatus | Probe
) -> None:
    assert derive(preset_rules(), method, upstream, FIELDS) == expected


def test_preset_probe_missing_field_skips_the_rule() -> None:
    # no `workflow` field to fill the probe path: the rule does not apply, the default does
    assert derive(preset_rules(), "POST", result(200, {}), {"id": "r-1"}) == COMPLETED


@pytest.mark.parametrize(
    ("instance_id", "path"),
    [
        pytest.param("a b", "/registrations/a%20b", id="space"),
        pytest.param("x/../admin", "/registrations/x%2F..%2Fadmin", id="slash"),
        pytest.param("k?x=1", "/registrations/k%3Fx%3D1", id="question-mark"),
    ],
)
def test_probe_path_encodes_field_values(instance_id: str, path: str) -> None:
    outcome = derive(preset_rules(), "POST", result(200, {}), {**FIELDS, "id": instance_id})
    assert isinstance(outcome, Probe)
    assert outcome.path == path


# -- derive with hand-written rules ---------------------------------------------------------

DONE = {"pointer": "/done", "values": {"true": "Completed", "false": "Active"}}


@pytest.mark.parametrize(
    ("specs", "upstream", "fields", "expected"),
    [
        pytest.param([DONE], result(200, {"done": True}), {}, COMPLETED, id="pointer-bool-json"),
        pytest.param([DONE], result(200, {"done": False}), {}, ACTIVE, id="pointer-false"),
        pytest.param(
            [DONE], result(200, {"done": "yes"}), {}, COMPLETED, id="pointer-unmapped-falls-through"
        ),
        pytest.param(
            [DONE, {"result": "Aborted"}],
            result(200, [1]),
            {},
            ABORTED,
            id="pointer-list-body-next-rule",
        ),
        pytest.param(
            [DONE, {"result": "Aborted"}],
            result(500, raw=b"oops"),
            {},
            ABORTED,
            id="pointer-non-json-next-rule",
        ),
        pytest.param(
            [{"probe": "/{workflow}/{missing}"}, {"result": "Active"}],
            result(200),
            FIELDS,
            ACTIVE,
            id="probe-missing-field-next-rule",
        ),
        pytest.param(
            [{"probe": "/{workflow}/{missing}"}],
            result(200),
            FIELDS,
            COMPLETED,
            id="probe-missing-field-default",
        ),
        pytest.param(
            [{"probe": "/x/{0}"}],
            result(200),
            FIELDS,
            COMPLETED,
            id="probe-positional-field-skipped",
        ),
        pytest.param(
            [{"probe": "/x/{id"}],
            result(200),
            FIELDS,
            COMPLETED,
            id="probe-malformed-template-skipped",
        ),
        pytest.param(
            [{"probe": "/{workflow}/{id}", "status": ["5xx"]}],
            result(500),
            FIELDS,
            Probe("/registrations/r-1", {200: ACTIVE, 404: COMPLETED}, FAILED),
            id="probe-fallback-is-the-default",
        ),
        pytest.param(
            [{"status": ["404"], "result": "Active"}, {"result": "Aborted"}],
            result(404),
            {},
            ACTIVE,
            id="first-rule-wins",
        ),
        pytest.param(
            [{"status": [500], "result": "Active"}], result(500), {}, ACTIVE, id="int-pattern"
        ),
        pytest.param(
            [{"methods": ["PUT"], "result": "Aborted"}],
            result(200),
            {},
            COMPLETED,
            id="rule-for-other-method-skipped",
        ),
    ],
)
def test_derive_rules(
    specs: list[dict[str, Any]],
    upstream: UpstreamResult,
    fields: dict[str, str],
    expected: AtkStatus | Probe,
) -> None:
    assert derive(rules(*specs), "POST", upstream, fields) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(200, COMPLETED, id="200"),
        pytest.param(201, COMPLETED, id="201"),
        pytest.param(204, COMPLETED, id="204"),
        pytest.param(302, COMPLETED, id="302"),
        pytest.param(399, COMPLETED, id="399"),
        pytest.param(400, FAILED, id="400"),
        pytest.param(404, FAILED, id="404"),
        pytest.param(500, FAILED, id="500"),
        pytest.param(503, FAILED, id="503"),
    ],
)
def test_derive_defaults_without_rules(status: int, expected: AtkStatus) -> None:
    assert derive([], "POST", result(status, model(1)), FIELDS) == expected


def test_derive_no_answer_without_rules() -> None:
    assert derive([], "POST", UpstreamResult(0, [], b"", error="refused"), {}) == FAILED


# -- Probe.outcome --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(200, ACTIVE, id="200-active"),
        pytest.param(404, COMPLETED, id="404-completed"),
        pytest.param(None, ABORTED, id="no-answer-fallback"),
        pytest.param(0, ABORTED, id="zero-fallback"),
        pytest.param(500, ABORTED, id="unmapped-fallback"),
        pytest.param(401, ABORTED, id="unmapped-4xx-fallback"),
    ],
)
def test_probe_outcome(status: int | None, expected: AtkStatus) -> None:
    probe = Probe("/registrations/r-1", {200: ACTIVE, 404: COMPLETED}, ABORTED)
    assert probe.outcome(status) == expected
