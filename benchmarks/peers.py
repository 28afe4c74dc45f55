"""The peers of atkproxy's async path in benchmarks/async_bench.py: one process per role.

    python benchmarks/peers.py receiver --port P   counts every request (duplicates too) and
                                                   answers 204; GET /count answers the count
    python benchmarks/peers.py hold --port P       an upstream that reads a request and never
                                                   answers (jobs stay queued behind it)
    python benchmarks/peers.py big --port P --size N   an upstream answering N bytes of JSON

aiohttp's low-level server on uvloop: the peers should cost as little as possible, so the
proxy is what the machine's CPU is spent on.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

try:
    import uvloop
except ImportError:  # pragma: no cover - the harness runs where uvloop is installed
    uvloop = None


class Receiver:
    def __init__(self) -> None:
        self.count = 0

    async def handle(self, request: web.BaseRequest) -> web.Response:
        if request.method == "GET" and request.path == "/count":
            return web.Response(text=str(self.count))
        self.count += 1
        async for _ in request.content.iter_any():  # read to the end, however large
            pass
        return web.Response(status=204)


async def hold(request: web.BaseRequest) -> web.Response:
    await request.read()
    await asyncio.Event().wait()  # never set: the answer never comes
    raise AssertionError("unreachable")


def big_handler(size: int) -> object:
    # `{"metadata": {"state": 2}, "pad": "xxx..."}`: Completed by the preset's pointer rule
    head = b'{"metadata":{"state":2},"pad":"'
    body = head + b"x" * max(0, size - len(head) - 2) + b'"}'

    async def big(request: web.BaseRequest) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    return big


async def serve(role: str, port: int, size: int) -> None:
    if role == "receiver":
        handler = Receiver().handle
    elif role == "hold":
        handler = hold
    else:
        handler = big_handler(size)
    server = web.Server(handler, access_log=None)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    await loop.create_server(server, "127.0.0.1", port, backlog=1024)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("receiver", "hold", "big"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=10 * 1024 * 1024)
    args = parser.parse_args()
    if uvloop is not None:
        uvloop.install()
    asyncio.run(serve(args.role, args.port, args.size))


if __name__ == "__main__":
    main()
