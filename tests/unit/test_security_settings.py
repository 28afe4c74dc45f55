"""Settings of the security features: destinations, credentials for trusted receivers only."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from atkproxy.cli import effective_config
from atkproxy.settings import Settings
from atkproxy.sources import describe, explain, load

CUSTOM = {"type": "custom", "custom_name": "X-Key", "custom_value": "s3cr3t-value"}


def callback(**section: Any) -> Settings:
    return Settings.model_validate({"callback": section})


def test_destinations_default_to_empty_lists() -> None:
    destinations = Settings().callback.destinations
    assert (destinations.allow, destinations.deny) == ([], [])


def test_destinations_as_text() -> None:
    settings = callback(destinations={"allow": "[10.0.0.0/8, '*.svc']", "deny": "[10.9.0.0/16]"})
    assert settings.callback.destinations.allow == ["10.0.0.0/8", "*.svc"]
    assert settings.callback.destinations.deny == ["10.9.0.0/16"]


@pytest.mark.parametrize("key", ["allow", "deny"])
def test_a_malformed_destination_names_the_key(key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        callback(destinations={key: ["10.0.0.300"]})
    assert f"callback.destinations.{key}.0" not in str(caught.value)  # one message for the list
    assert f"destinations.{key}" in str(caught.value)
    assert "neither a CIDR nor a host name" in str(caught.value)


@pytest.mark.parametrize("mode", ["basic", "oauth", "custom", "on-behalf", "query"])
def test_credentials_without_an_allow_list_are_refused(mode: str) -> None:
    auth = {
        "basic": {"type": "basic", "basic": "dTpw"},
        "oauth": {"type": "oauth", "access_token": "t0k3n"},
        "custom": CUSTOM,
        "on-behalf": {"type": "on-behalf"},
        "query": {"type": "query", "query_name": "k", "query_value": "s3cr3t-value"},
    }[mode]
    with pytest.raises(ValidationError) as caught:
        callback(auth=auth)
    text = str(caught.value)
    assert "callback.destinations.allow" in text and "any_destination" in text
    assert "s3cr3t-value" not in text and "t0k3n" not in text


@pytest.mark.parametrize(
    "section",
    [
        {"auth": CUSTOM, "destinations": {"allow": ["receiver.example"]}},
        {"auth": {**CUSTOM, "any_destination": True}},
        {"auth": {**CUSTOM, "any_destination": "true"}},  # from the environment or -D
        {"auth": {"type": "none"}},
    ],
)
def test_credentials_with_an_allow_list_or_on_purpose(section: dict[str, Any]) -> None:
    callback(**section)


OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()


@pytest.mark.parametrize(
    "given", [[OLD, NEW], f"{OLD} {NEW}", f"{OLD},{NEW}", f"{OLD}\n{NEW}\n", f"[{OLD}, {NEW}]"]
)
def test_signing_secrets_as_list_or_text(given: Any) -> None:
    signing = callback(signing={"secrets": given}).callback.signing
    assert signing.keys == [b"o" * 32, b"n" * 32]


def test_a_malformed_signing_secret_is_refused_without_echo() -> None:
    with pytest.raises(ValidationError) as caught:
        callback(signing={"secrets": ["whsec_short-but-secret"]})
    assert "callback.signing.secrets" in describe(caught.value)
    assert "short-but-secret" not in str(caught.value)


def test_signing_secrets_from_a_file_are_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the repository's config/atkproxy.yaml is not a source here
    secrets = tmp_path / "signing"
    secrets.write_text(f"{OLD}\n{NEW}\n")
    env = {"ATKPROXY_CALLBACK__SIGNING__SECRETS_FILE": str(secrets)}
    settings, layered = load(None, env, ["store.url=memory://"])
    assert settings.callback.signing.keys == [b"o" * 32, b"n" * 32]
    shown = repr(list(explain(layered))) + effective_config(settings, layered)
    assert OLD not in shown and NEW not in shown
