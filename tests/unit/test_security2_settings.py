"""Settings of job ownership, the management listener, TLS and trusted proxies."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from pydantic import ValidationError

from atkproxy.settings import Settings


def test_defaults_are_the_safe_ones() -> None:
    settings = Settings()
    assert settings.listen.trusted_proxies == []
    assert settings.management.listen.port is None  # the API under the prefix, main port
    assert settings.management.owner_key is None
    assert settings.upstream.tls.verify and settings.callback.tls.verify


@pytest.mark.parametrize(
    ("config", "wanted"),
    [
        ({"listen": {"trusted_proxies": "[10.0.0.0/8, 'fd00::/8']"}}, None),
        ({"listen": {"trusted_proxies": ["10.0.0.1"]}}, None),
        ({"listen": {"trusted_proxies": ["10.0.0.1/8"]}}, "trusted_proxies"),  # host bits
        ({"listen": {"trusted_proxies": ["proxy.local"]}}, "trusted_proxies"),
        ({"management": {"listen": {"port": 9091}}}, None),
        ({"management": {"listen": {"port": 8080}}}, "must differ from listen.port"),
        ({"listen": {"port": 0}, "management": {"listen": {"port": 0}}}, None),  # tests
        ({"management": {"listen": {"port": 70000}}}, "management.listen.port"),
        ({"upstream": {"tls": {"verify": "no"}}}, None),
        ({"callback": {"tls": {"ca_file": "/nonexistent/ca.pem"}}}, "ca_file"),
    ],
)
def test_keys(config: dict[str, Any], wanted: str | None) -> None:
    if wanted is None:
        Settings.model_validate(config)
    else:
        with pytest.raises(ValidationError, match=wanted.replace(".", r"\.")):
            Settings.model_validate(config)


def test_trusted_proxies_are_networks() -> None:
    settings = Settings.model_validate({"listen": {"trusted_proxies": ["10.0.0.1", "::1"]}})
    assert settings.listen.trusted_proxies == [
        ipaddress.ip_network("10.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    ]


def test_the_owner_key_is_a_secret() -> None:
    settings = Settings.model_validate({"management": {"owner_key": "s3cret-owner"}})
    assert "s3cret-owner" not in repr(settings)
