"""TLS to the upstream and to callback receivers: verified by default, private CA, client cert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from .conftest import ProxyFactory, ServerFactory
from .pki import Pki, make_pki
from .support import ASYNC, wait_job


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Peers:
    """An https server that answers with the common name of the client certificate."""

    def __init__(self) -> None:
        self.names: list[str | None] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.answer)

    async def answer(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        cert = request.transport.get_extra_info("peercert")
        name = None if not cert else dict(pair[0] for pair in cert["subject"])["commonName"]
        self.names.append(name)
        return web.json_response({"client": name})


async def https_server(aiohttp_server: ServerFactory, pki: Pki, require: bool) -> tuple[Peers, str]:
    peers = Peers()
    server: TestServer = await aiohttp_server(peers.app, ssl=pki.server_context(require))
    return peers, f"https://127.0.0.1:{server.port}"


def tls(pki: Pki, client_cert: bool = True) -> dict[str, Any]:
    config: dict[str, Any] = {"ca_file": pki.ca}
    if client_cert:
        config |= {"cert_file": pki.client_cert, "key_file": pki.client_key}
    return config


FAST_RETRY = {"schedule": ["10ms"], "max_age": "50ms"}


async def test_an_upstream_with_an_unknown_ca_is_refused(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, pki: Pki
) -> None:
    peers, url = await https_server(aiohttp_server, pki, require=False)
    proxy = await make_proxy(url, {"upstream": {"retry": FAST_RETRY}}, automatiko=False)
    async with proxy.get("/x") as response:
        assert response.status == 502
    async with proxy.post("/x", json={}, headers=ASYNC) as response:
        location = response.headers["Location"]
    view = await wait_job(proxy, location)
    assert view["upstream"]["status"] == 502
    assert "certificate verify failed" in view["upstream"]["error"]
    assert peers.names == []  # no request reached it


async def test_an_upstream_with_the_configured_ca_and_a_client_certificate(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, pki: Pki
) -> None:
    peers, url = await https_server(aiohttp_server, pki, require=True)
    proxy = await make_proxy(url, {"upstream": {"tls": tls(pki)}}, automatiko=False)
    async with proxy.get("/x") as response:
        assert response.status == 200
    assert peers.names == ["client"]


async def test_an_upstream_that_requires_a_client_certificate_gets_none_unless_configured(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, pki: Pki
) -> None:
    peers, url = await https_server(aiohttp_server, pki, require=True)
    config = {"upstream": {"tls": tls(pki, client_cert=False)}}
    proxy = await make_proxy(url, config, automatiko=False)
    async with proxy.get("/x") as response:
        assert response.status == 502
    assert peers.names == []


async def test_another_ca_is_not_trusted(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, pki: Pki, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other", "another CA")
    _, url = await https_server(aiohttp_server, pki, require=False)
    proxy = await make_proxy(url, {"upstream": {"tls": {"ca_file": other.ca}}}, automatiko=False)
    async with proxy.get("/x") as response:
        assert response.status == 502


async def test_verify_false_accepts_any_certificate(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, pki: Pki
) -> None:
    _, url = await https_server(aiohttp_server, pki, require=False)
    proxy = await make_proxy(url, {"upstream": {"tls": {"verify": False}}}, automatiko=False)
    async with proxy.get("/x") as response:
        assert response.status == 200


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def deliver(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, pki: Pki, callback_tls: dict[str, Any]
) -> tuple[Peers, dict[str, Any]]:
    peers, receiver = await https_server(aiohttp_server, pki, require=True)
    upstream = web.Application()
    upstream.router.add_post("/x", ok)
    up: TestServer = await aiohttp_server(upstream)
    once = {"schedule": ["0s"]}
    config = {"callback": {"tls": callback_tls, "retry": once}}
    proxy = await make_proxy(f"http://127.0.0.1:{up.port}", config, automatiko=False)
    headers = {**ASYNC, "X-ATK-Callback": receiver + "/cb"}
    async with proxy.post("/x", json={}, headers=headers) as response:
        assert response.status == 202
        location = response.headers["Location"]
    return peers, await wait_job(proxy, location, ("delivered", "dead"))


async def test_a_callback_receiver_with_an_unknown_ca_is_a_failed_attempt(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, pki: Pki
) -> None:
    peers, view = await deliver(aiohttp_server, make_proxy, pki, {})
    assert view["state"] == "dead"
    [attempt] = view["callback"]["attempts"]
    assert attempt["status"] is None
    assert "ClientConnectorCertificateError" in attempt["error"]
    assert peers.names == []


async def test_a_callback_receiver_with_the_configured_ca_gets_the_client_certificate(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, pki: Pki
) -> None:
    peers, view = await deliver(aiohttp_server, make_proxy, pki, tls(pki))
    assert view["state"] == "delivered"
    assert peers.names == ["client"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"ca_file": "missing.pem"}, "ca_file: cannot load a CA bundle"),
        ({"key_file": "k.pem"}, "key_file needs cert_file"),
        ({"cert_file": "missing.pem"}, "cert_file/key_file: cannot load"),
    ],
)
@pytest.mark.parametrize("section", ["upstream", "callback"])
def test_unusable_tls_files_are_configuration_errors(
    section: str, config: dict[str, str], message: str
) -> None:
    from pydantic import ValidationError

    from atkproxy.settings import Settings

    with pytest.raises(ValidationError, match=message):
        Settings.model_validate({section: {"tls": config}})
