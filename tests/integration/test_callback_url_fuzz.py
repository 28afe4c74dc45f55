"""Any X-ATK-Callback through the real proxy: a 202 or a 400, never a 500 or a stuck job.

Hypothesis drives a synchronous client, so the servers run in a thread with their own event
loop. Hosts are literal addresses, numeric shortcuts and malformed text (never a name that
needs DNS); the allow list is 127.0.0.1/32, so what is accepted is dialled on loopback only.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atkproxy.app import create_app

from .conftest import proxy_settings
from .support import Echo


class Servers:
    """An upstream and the proxy, served from a thread; `port` is the proxy's."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.upstream_port = 0
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        upstream = web.AppRunner(Echo().app)
        await upstream.setup()
        await web.TCPSite(upstream, "127.0.0.1", 0).start()
        self.upstream_port = upstream.addresses[0][1]
        config = {"callback": {"timeout": "1s", "retry": {"schedule": ["0s"]}}}
        settings_ = proxy_settings(f"http://127.0.0.1:{self.upstream_port}", config)
        proxy = web.AppRunner(create_app(settings_))
        await proxy.setup()
        await web.TCPSite(proxy, "127.0.0.1", 0).start()
        self.port = proxy.addresses[0][1]
        self.ready.set()
        await self._stop.wait()
        await proxy.cleanup()
        await upstream.cleanup()

    def __enter__(self) -> Servers:
        self._thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with Servers() as running:
        yield running


HOSTS = st.one_of(
    st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a)),
    st.from_regex(r"(0x[0-9a-f]{1,8}|0[0-7]{1,4}|[0-9]{1,10})(\.[0-9]{1,3}){0,3}", fullmatch=True),
    st.sampled_from(["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "169.254.169.254"]),
    st.text(alphabet="0123456789abcdefx.:[]%@ ", min_size=1, max_size=24).filter(
        lambda h: any(c in h for c in "[]%@ ")  # never a plain name: no DNS in this test
    ),
)
URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https", "HTTP", "ftp", "javascript", ""]),
    HOSTS,
    st.one_of(st.just(""), st.integers(0, 70000).map(lambda p: f":{p}")),
    st.text(alphabet="abc/?&=%#.", max_size=30),
)


def wait_ended(servers: Servers, location: str, deadline: float = 10) -> str:
    end = time.monotonic() + deadline
    while True:
        status, _, body = servers.request("GET", location, {})
        assert status == 200
        state: str = json.loads(body)["state"]
        if state in ("finished", "delivered", "dead"):
            return state
        assert time.monotonic() < end, f"job still {state}"
        time.sleep(0.02)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(callback=URLS | st.text(max_size=60).filter(lambda t: "\r" not in t and "\n" not in t))
def test_any_callback_url_is_accepted_or_refused_cleanly(servers: Servers, callback: str) -> None:
    headers = {
        "X-ATK-Mode": "async",
        "X-ATK-Callback": callback,
        "Content-Type": "application/json",
    }
    try:
        headers["X-ATK-Callback"].encode("latin-1")
    except UnicodeEncodeError:
        return  # http.client cannot send it; aiohttp's parser is tested elsewhere
    status, seen, body = servers.request("POST", "/orders", headers, b"{}")
    assert status in (202, 400), body
    assert seen["Content-Type"].startswith("application/json")
    if status == 400:
        assert "X-ATK-Job" not in seen
        refusals = ("X-ATK-Callback refused: ", "bad request", "a request header is not valid")
        assert json.loads(body)["error"].startswith(refusals)
        return
    # accepted: a loopback address the allow list names; its job ends, delivered or not
    assert wait_ended(servers, seen["Location"]) in ("finished", "delivered", "dead")
