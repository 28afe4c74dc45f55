"""The callback client (receivers.py, dial.py) against real receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from atkproxy.auth import NoAuth
from atkproxy.callback import Deliverer, callback_client
from atkproxy.destinations import Policy
from atkproxy.dial import (
    ClientConnectorCertificateError,
    ClientConnectorDNSError,
    ClientConnectorError,
    DestinationRefused,
    ServerDisconnectedError,
    system_lookup,
)
from atkproxy.http1 import Connection
from atkproxy.jobs import AtkStatus, Job, JobState, UpstreamRequest, UpstreamResult
from atkproxy.receivers import SLICE, SMALL_ANSWER, CallbackClient
from atkproxy.retry import delivery_stops
from atkproxy.settings import CallbackRetry
from atkproxy.tls import client_context

from .conftest import ServerFactory
from .pki import make_pki

LOOPBACK = Policy.from_lists(["127.0.0.1/32"], [])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Peer:
    """A receiver that notes the client port of every request (one port: one connection)."""

    handler: Handler | None = None
    ports: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.ports.append(request.transport.get_extra_info("peername")[1])
        if self.handler is not None:
            return await self.handler(request)
        self.bodies.append(await request.read())
        return web.Response(text="ok")


async def serve(aiohttp_server: ServerFactory, peer: Peer) -> int:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    server = await aiohttp_server(app)
    assert server.port is not None
    return server.port


@pytest.fixture
async def client() -> AsyncIterator[CallbackClient]:
    async with callback_client(5.0, LOOPBACK) as client:
        yield client


def make_job(url: str, body: bytes = b"{}") -> Job:
    result = UpstreamResult(200, [("Content-Type", "application/json")], body)
    return Job(id="job-1", instance_id="i-1", callback_url=url, method="POST", path_qs="/o",
               due_at=0.0, request=UpstreamRequest("POST", "/o", [], b"{}"),
               state=JobState.DELIVERING, result=result, status=AtkStatus.COMPLETED)  # fmt: skip


def answers(*rounds: list[str]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver whose answers change from one lookup to the next (DNS rebinding)."""
    queue = list(rounds)

    async def lookup(host: str, port: int) -> list[str]:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return lookup


# --- keep-alive and the pools ----------------------------------------------------------


async def test_callbacks_to_one_receiver_share_a_connection(
    aiohttp_server: ServerFactory, client: CallbackClient
) -> None:
    peer = Peer()
    url = URL(f"http://127.0.0.1:{await serve(aiohttp_server, peer)}/cb")
    for _ in range(3):
        assert await client.post(url, [], b"{}") == (200, None)
    assert len(set(peer.ports)) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "cb.example"])
async def test_the_host_header_names_the_urls_host_and_port(
    aiohttp_server: ServerFactory, host: str
) -> None:
    hosts: list[str | None] = []

    async def note(request: web.Request) -> web.Response:
        hosts.append(request.headers.get("Host"))
        return web.Response(status=204)

    port = await serve(aiohttp_server, Peer(note))
    lookup = Recorded({"cb.example": ["127.0.0.1"]})
    async with CallbackClient(5.0, LOOPBACK, lookup=lookup) as client:
        assert await client.post(URL(f"http://{host}:{port}/cb"), [], b"{}") == (204, None)
    assert hosts == [f"{host}:{port}"]


async def test_an_origin_busy_with_a_callback_keeps_its_pool_when_room_is_made(
    aiohttp_server: ServerFactory,
) -> None:
    gates = [asyncio.Event(), asyncio.Event()]
    arrived: list[int] = []

    async def held(request: web.Request) -> web.Response:
        arrived.append(len(arrived))
        await gates[arrived[-1]].wait()
        return web.Response(status=204)

    busy = URL(f"http://127.0.0.1:{await serve(aiohttp_server, Peer(held))}/cb")
    other = URL(f"http://127.0.0.1:{await serve(aiohttp_server, Peer())}/cb")
    async with CallbackClient(5.0, LOOPBACK, max_origins=1) as client:
        first = asyncio.create_task(client.post(busy, [], b"x"))
        second = asyncio.create_task(client.post(busy, [], b"x"))
        deadline = time.monotonic() + 5.0
        while len(arrived) < 2:  # both callbacks at the receiver
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        gates[0].set()
        assert await first == (204, None)  # one callback still under way to that origin

        assert await client.post(other, [], b"x") == (200, None)
        gates[1].set()
        assert await second == (204, None)
        assert client.origins == 2  # over the bound rather than cut a callback short


class Clock:
    """The client's clock for idle origins, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_origin_unused_for_idle_seconds_is_closed_at_the_next_use_after(
    aiohttp_server: ServerFactory,
) -> None:
    urls = [URL(f"http://127.0.0.1:{await serve(aiohttp_server, Peer())}/cb") for _ in range(2)]
    clock = Clock()
    async with CallbackClient(5.0, LOOPBACK, idle=60.0, clock=clock) as client:
        await client.post(urls[0], [], b"x")
        clock.now += 59.0
        await client.post(urls[1], [], b"x")
        assert client.origins == 2  # short of `idle`: both kept
        clock.now += 60.0  # past `idle` for both: the next use closes them, whatever it is for
        await client.post(urls[1], [], b"x")
        assert client.origins == 1


async def test_an_origin_used_within_idle_seconds_keeps_its_connection(
    aiohttp_server: ServerFactory,
) -> None:
    peer = Peer()
    url = URL(f"http://127.0.0.1:{await serve(aiohttp_server, peer)}/cb")
    clock = Clock()
    async with CallbackClient(5.0, LOOPBACK, idle=60.0, clock=clock) as client:
        await client.post(url, [], b"x")
        clock.now += 59.0  # past a sweep (every idle / 4), short of `idle`
        await client.post(url, [], b"x")
    assert len(peer.ports) == 2 and len(set(peer.ports)) == 1


async def test_pools_are_bounded_by_origin_count(aiohttp_server: ServerFactory) -> None:
    peers = [Peer() for _ in range(3)]
    ports = [await serve(aiohttp_server, peer) for peer in peers]
    async with CallbackClient(5.0, LOOPBACK, max_origins=2) as client:
        for port in [*ports, ports[0]]:
            assert (await client.post(URL(f"http://127.0.0.1:{port}/cb"), [], b"x"))[0] == 200
            assert client.origins <= 2
    # the first receiver's pool made room for the third one: its second callback came anew
    assert len(set(peers[0].ports)) == 2


async def test_an_origin_unused_for_idle_seconds_is_closed(aiohttp_server: ServerFactory) -> None:
    first, second = Peer(), Peer()
    urls = [URL(f"http://127.0.0.1:{await serve(aiohttp_server, p)}/cb") for p in (first, second)]
    async with CallbackClient(5.0, LOOPBACK, idle=0.0) as client:
        await client.post(urls[0], [], b"x")
        await client.post(urls[1], [], b"x")
        assert client.origins == 1


# --- the body out, the answer in -----------------------------------------------------------


async def test_a_large_body_goes_out_in_slices(aiohttp_server: ServerFactory) -> None:
    """The transport holds a slice or so at a time, never a copy of the whole 10 MiB."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        peer.bodies.append(await request.read())
        return web.Response(status=204)

    peer = Peer(slow)
    body = os.urandom(10 * 1024 * 1024)
    url = URL(f"http://127.0.0.1:{await serve(aiohttp_server, peer)}/cb")
    async with CallbackClient(10.0, LOOPBACK) as client:
        sending = asyncio.create_task(client.post(url, [], body))
        [conn] = await paused_connection(client)
        assert conn.transport is not None
        assert conn.transport.get_write_buffer_size() <= SLICE + 64 * 1024
        release.set()
        assert await sending == (204, None)
    assert hashlib.sha256(peer.bodies[0]).digest() == hashlib.sha256(body).digest()


async def paused_connection(client: CallbackClient) -> list[Connection]:
    """The client's connections, once one waits for the receiver to read (a poll, 5 s at most)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        conns = [c for r in client._receivers.values() for c in r.pool._open]
        if any(c._write_paused for c in conns):
            return list(conns)
        await asyncio.sleep(0.01)
    raise AssertionError("the client never waited for the receiver")


async def test_an_endless_answer_body_is_not_read_and_its_connection_closed(
    aiohttp_server: ServerFactory, client: CallbackClient
) -> None:
    done = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            while True:
                await response.write(b"x" * 65536)
        finally:
            done.set()  # the client closed the connection: the write failed

    peer = Peer(endless)
    url = URL(f"http://127.0.0.1:{await serve(aiohttp_server, peer)}/cb")
    started = time.monotonic()
    assert await client.post(url, [], b"{}") == (200, None)
    assert time.monotonic() - started < 2.0  # the status decided: no wait for the body
    async with asyncio.timeout(5):
        await done.wait()


async def test_a_small_framed_answer_body_keeps_the_connection(
    aiohttp_server: ServerFactory, client: CallbackClient
) -> None:
    async def in_two_writes(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=503, headers={"Retry-After": "7"})
        response.content_length = 6
        await response.prepare(request)
        await response.write(b"bus")
        await asyncio.sleep(0.05)  # the rest of the body comes later, as a slow receiver's
        await response.write(b"y!!")
        await response.write_eof()
        return response

    peer = Peer(in_two_writes)
    url = URL(f"http://127.0.0.1:{await serve(aiohttp_server, peer)}/cb")
    assert await client.post(url, [], b"{}") == (503, "7")
    assert await client.post(url, [], b"{}") == (503, "7")
    assert len(set(peer.ports)) == 1


@pytest.mark.parametrize(("size", "connections"), [(SMALL_ANSWER, 1), (SMALL_ANSWER + 1, 2)])
async def test_an_answer_body_up_to_the_small_size_keeps_the_connection(
    aiohttp_server: ServerFactory, client: CallbackClient, size: int, connections: int
) -> None:
    async def in_two_writes(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_length = size
        await response.prepare(request)
        await response.write(b"x")
        await asyncio.sleep(0.05)  # not with the head: the client decides to read it or not
        await response.write(b"x" * (size - 1))
        await response.write_eof()
        return response

    peer = Peer(in_two_writes)
    url = URL(f"http://127.0.0.1:{await serve(aiohttp_server, peer)}/cb")
    for _ in range(2):
        assert await client.post(url, [], b"{}") == (200, None)
    assert len(set(peer.ports)) == connections


@pytest.mark.parametrize("rest", ["cut", "stalled"])
async def test_a_status_received_stands_whatever_becomes_of_the_small_body(rest: str) -> None:
    """The receiver answered: its body cut short, or not there by the attempt's end, is no
    failure of the callback (which would be sent again); that connection is not reused."""
    ended = asyncio.Event()
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcde")
        await writer.drain()
        if rest == "stalled":
            await ended.wait()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/cb")
    async with server, CallbackClient(0.3, LOOPBACK) as client:
        assert await client.post(url, [], b"{}") == (200, None)
        assert await client.post(url, [], b"{}") == (200, None)
        ended.set()
    assert connections == 2


# --- time and failures -------------------------------------------------------------------


@pytest.fixture
async def silent() -> AsyncIterator[int]:
    """A receiver that takes the request and never answers."""

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_receiver_that_never_answers_is_a_timeout(silent: int) -> None:
    async with callback_client(0.3, LOOPBACK) as client:
        started = time.monotonic()
        attempt = await Deliverer(client, NoAuth()).deliver(
            make_job(f"http://127.0.0.1:{silent}/cb?token=s3cr3t"), 1
        )
    assert time.monotonic() - started < 2.0
    assert (attempt.status, attempt.error) == (
        None,
        "callback failed: no answer within callback.timeout",
    )


@pytest.mark.parametrize("slow", ["head", "body"])
async def test_a_receiver_that_trickles_is_bounded_by_the_timeout_as_a_whole(slow: str) -> None:
    """Each byte comes well within the timeout (the connection's own bound, from one byte to
    the next), and still the attempt ends when its time is up."""
    first = b"HTTP/1.1 200 OK\r\n" + (b"Content-Length: 1000\r\n\r\n" if slow == "body" else b"")

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(first)
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing():
                await asyncio.sleep(0.05)  # a slow receiver, a byte at a time
                writer.write(b"x" if slow == "body" else b"X-Slow: 1\r\n")
                await writer.drain()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/cb")
    async with server, CallbackClient(0.3, LOOPBACK) as client:
        started = time.monotonic()
        async with asyncio.timeout(10):
            if slow == "head":
                with pytest.raises(TimeoutError):
                    await client.post(url, [], b"{}")
            else:  # the status came: it stands, and the body is given up at the end
                assert await client.post(url, [], b"{}") == (200, None)
        assert time.monotonic() - started < 2.0


async def test_a_resolver_that_never_answers_is_a_timeout() -> None:
    """Dialling has no bound of its own: the attempt's bound covers the lookup and connect."""

    async def never(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        return []

    async with CallbackClient(0.3, LOOPBACK, lookup=never) as client:
        started = time.monotonic()
        async with asyncio.timeout(10):
            with pytest.raises(TimeoutError):
                await client.post(URL("http://cb.example:9/cb"), [], b"{}")
        assert time.monotonic() - started < 2.0


async def test_a_receiver_that_closes_without_answering(aiohttp_server: ServerFactory) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with callback_client(5.0, LOOPBACK) as client:
            with pytest.raises(ServerDisconnectedError):
                await client.post(URL(f"http://127.0.0.1:{port}/cb"), [], b"{}")
    finally:
        server.close()


# --- the destination policy when dialling ----------------------------------------------


async def test_a_rebinding_name_is_refused_when_dialled_again(
    aiohttp_server: ServerFactory,
) -> None:
    async def closing(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.force_close()  # the next callback dials anew, and resolves anew
        return response

    port = await serve(aiohttp_server, Peer(closing))
    lookup = answers(["127.0.0.1"], ["127.0.0.2"])
    async with CallbackClient(5.0, LOOPBACK, lookup=lookup) as client:
        deliverer = Deliverer(client, NoAuth())
        first = await deliverer.deliver(make_job(f"http://cb.example:{port}/cb?t=s3cr3t"), 1)
        second = await deliverer.deliver(make_job(f"http://cb.example:{port}/cb?t=s3cr3t"), 2)
    assert (first.status, first.error) == (200, None)
    assert second.status is None
    refused = "address 127.0.0.2 is not in callback.destinations.allow"
    assert second.error == f"callback failed: destination refused: {refused}"
    assert delivery_stops(second, CallbackRetry())


async def test_only_the_permitted_addresses_of_a_name_are_dialled(
    aiohttp_server: ServerFactory,
) -> None:
    peer = Peer()
    port = await serve(aiohttp_server, peer)
    lookup = answers(["127.0.0.2", "::1", "127.0.0.1"])
    async with CallbackClient(5.0, LOOPBACK, lookup=lookup) as client:
        assert (await client.post(URL(f"http://cb.example:{port}/cb"), [], b"{}"))[0] == 200


@pytest.mark.parametrize(
    ("allow", "host", "reason"),
    [
        (["127.0.0.1/32"], "127.1", "numeric address not in canonical form"),
        (["127.0.0.1/32"], "0x7f000001", "numeric address not in canonical form"),
        (["127.0.0.1/32"], "127.0.0.2", "address 127.0.0.2 is not in callback.destinations"),
        ([], "127.0.0.1", "loopback address 127.0.0.1"),
        ([], "[::ffff:127.0.0.1]", "loopback address ::ffff:7f00:1"),
        ([], "[::1]", "loopback address ::1"),
    ],
)
async def test_the_host_is_checked_when_dialled(
    silent: int, allow: list[str], host: str, reason: str
) -> None:
    """A recorded job (from before a policy change, say) is checked again when delivered."""
    async with CallbackClient(5.0, Policy.from_lists(allow, [])) as client:
        with pytest.raises(DestinationRefused, match=reason):
            await client.post(URL(f"http://{host}:{silent}/cb"), [], b"{}")


class Recorded:
    """A resolver that notes what it was asked and answers from a table (else nothing)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.table.get(host, [])


@asynccontextmanager
async def answering_on(host: str) -> AsyncIterator[int]:
    """A receiver listening on `host` only that answers every request 200."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(answer, host, 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it did a moment ago)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def test_a_name_is_resolved_with_its_port_and_its_addresses_dialled_in_turn() -> None:
    # 127.0.0.3 refuses the connection; the receiver listens on 127.0.0.2 only
    lookup = Recorded({"cb.example": ["127.0.0.3", "127.0.0.2"]})
    async with (
        answering_on("127.0.0.2") as port,
        CallbackClient(5.0, Policy.from_lists(["127.0.0.0/8"], []), lookup=lookup) as client,
    ):
        assert await client.post(URL(f"http://cb.example:{port}/cb"), [], b"{}") == (200, None)
    assert lookup.asked == [("cb.example", port)]


async def test_a_literal_address_is_dialled_without_a_lookup() -> None:
    lookup = Recorded({})
    async with (
        answering_on("127.0.0.2") as port,
        CallbackClient(5.0, Policy.from_lists(["127.0.0.0/8"], []), lookup=lookup) as client,
    ):
        assert await client.post(URL(f"http://127.0.0.2:{port}/cb"), [], b"{}") == (200, None)
    assert lookup.asked == []


@pytest.mark.parametrize("host", ["127.0.0.1", "cb.example"])
async def test_the_upstreams_own_address_and_port_are_refused_when_dialled(
    aiohttp_server: ServerFactory, host: str
) -> None:
    peer = Peer()
    port = await serve(aiohttp_server, peer)
    policy = Policy.from_lists(["127.0.0.0/8"], [])
    policy.protect("127.0.0.1", port, "the upstream")
    lookup = Recorded({"cb.example": ["127.0.0.1"]})
    async with CallbackClient(5.0, policy, lookup=lookup) as client:
        with pytest.raises(DestinationRefused, match="the upstream's own address"):
            await client.post(URL(f"http://{host}:{port}/cb"), [], b"{}")
    assert peer.ports == []


async def test_a_name_that_resolves_to_no_address_is_refused() -> None:
    async with CallbackClient(5.0, LOOPBACK, lookup=Recorded({})) as client:
        with pytest.raises(DestinationRefused) as caught:
            await client.post(URL("http://cb.example:9/cb"), [], b"{}")
    assert str(caught.value) == "destination refused: the name resolved to no address"


async def test_a_scoped_address_is_checked_and_recorded_without_its_zone() -> None:
    async with CallbackClient(5.0, Policy(), lookup=Recorded({"cb.example": ["fe80::1%lo"]})) as c:
        with pytest.raises(DestinationRefused) as caught:
            await c.post(URL("http://cb.example:9/cb"), [], b"{}")
    assert str(caught.value) == "destination refused: link-local address fe80::1"


async def test_the_system_resolver_gives_each_address_once() -> None:
    assert await system_lookup("127.0.0.2", 80) == ["127.0.0.2"]
    addresses = await system_lookup("localhost", 80)  # ::1 as well on some systems
    assert "127.0.0.1" in addresses and len(set(addresses)) == len(addresses)


async def test_a_name_that_does_not_resolve_is_recorded_without_the_name() -> None:
    async with CallbackClient(5.0, LOOPBACK) as client:
        with pytest.raises(ClientConnectorDNSError) as caught:
            await client.post(URL("http://no-such-receiver.invalid:9/cb"), [], b"{}")
    assert str(caught.value) == "the name did not resolve"


async def test_no_address_taking_the_connection_is_recorded_with_the_systems_reason() -> None:
    port = await closed_port()
    lookup = Recorded({"cb.example": ["127.0.0.1"]})
    async with CallbackClient(5.0, LOOPBACK, lookup=lookup) as client:
        deliverer = Deliverer(client, NoAuth())
        attempt = await deliverer.deliver(make_job(f"http://cb.example:{port}/cb?t=s3cr3t"), 1)
    assert attempt.status is None
    assert attempt.error == (
        f"callback failed: ClientConnectorError: Connect call failed ('127.0.0.1', {port})"
    )


async def test_a_tls_failure_other_than_the_certificate_is_recorded_by_its_reason() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)  # a TLS hello, answered in plain HTTP
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    async with server, CallbackClient(5.0, LOOPBACK) as client:
        url = URL(f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/cb")
        with pytest.raises(ClientConnectorError) as caught:
            await client.post(url, [], b"{}")
    assert str(caught.value) == "WRONG_VERSION_NUMBER"


async def test_https_is_checked_against_the_host_name_not_the_address(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    """The certificate is for 127.0.0.1; a name that resolves there does not match it."""
    pki = make_pki(tmp_path)
    peer = Peer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    server = await aiohttp_server(app, ssl=pki.server_context())
    context = client_context(ca_file=pki.ca)
    lookup = answers(["127.0.0.1"])
    async with CallbackClient(5.0, LOOPBACK, context, lookup=lookup) as client:
        assert (await client.post(URL(f"https://127.0.0.1:{server.port}/cb"), [], b"{}"))[0] == 200
        with pytest.raises(ClientConnectorCertificateError) as caught:
            await client.post(URL(f"https://cb.example:{server.port}/cb"), [], b"{}")
    assert str(caught.value) == "Hostname mismatch, certificate is not valid for the host."
    assert len(peer.ports) == 1


async def test_a_kept_connection_closed_by_the_receiver_is_replaced_once() -> None:
    """The receiver drops its kept connection as the next callback arrives (an idle timeout
    racing the request): that callback goes again, once, on a new connection."""
    seen: list[int] = []  # the connection number of each request received

    async def serve_two_then_drop(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        number = len(set(seen)) + 1
        while await read_request(reader):
            seen.append(number)
            if number == 1 and seen.count(1) == 2:
                break  # the second request on the first connection: closed unanswered
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(serve_two_then_drop, "127.0.0.1", 0)
    url = URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/cb")
    try:
        async with callback_client(5.0, LOOPBACK) as client:
            assert await client.post(url, [], b"{}") == (200, None)
            assert await client.post(url, [], b"{}") == (200, None)
    finally:
        server.close()
    assert seen == [1, 1, 2]


@asynccontextmanager
async def closing_after(answered: dict[int, int]) -> AsyncIterator[tuple[URL, list[int]]]:
    """A receiver whose n-th connection answers `answered[n]` requests (all if not listed),
    then closes on the next one unanswered; yields its URL and the connection of each request."""
    seen: list[int] = []
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        number, count = accepted, 0
        while await read_request(reader):
            seen.append(number)
            if count == answered.get(number, -1):
                break
            count += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield URL(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/cb"), seen


async def test_a_kept_connection_closed_is_replaced_by_a_new_one_not_another_kept_one() -> None:
    async with closing_after({1: 1, 2: 1}) as (url, seen), callback_client(5.0, LOOPBACK) as c:
        # two kept connections, both closed by the receiver when next used
        both = await asyncio.gather(c.post(url, [], b"{}"), c.post(url, [], b"{}"))
        assert list(both) == [(200, None), (200, None)]
        assert await c.post(url, [], b"{}") == (200, None)
    assert sorted(seen[:2]) == [1, 2] and seen[3:] == [3]


async def test_a_replacement_closed_unanswered_too_is_a_disconnection() -> None:
    async with closing_after({1: 1, 2: 0}) as (url, seen), callback_client(5.0, LOOPBACK) as c:
        assert await c.post(url, [], b"{}") == (200, None)
        with pytest.raises(ServerDisconnectedError):
            await c.post(url, [], b"{}")
    assert seen == [1, 1, 2]


async def read_request(reader: asyncio.StreamReader) -> bool:
    """One request's head and Content-Length body; False at the end of the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return False
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            await reader.readexactly(int(value))
    return True
