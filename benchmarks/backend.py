"""A minimal upstream for load tests: as cheap per request as aiohttp allows.

    GET  /hello                 -> 200 {"message": "hello"}
    POST /registrations         -> 200, the request body echoed with its Content-Type
    GET  /registrations/{id}    -> 404 (the preset's status probe: the instance has completed)

`--app example` serves atkproxy's demo backend (atkproxy.demo.backend.create_backend) instead,
for runs that want the workflow's real decisions rather than the cheapest possible answer.

    python benchmarks/backend.py --port 18181 [--app minimal|example]
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

HELLO = b'{"message":"hello"}'
GONE = b'{"message":"instance not found"}'


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=HELLO, content_type="application/json")


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(body=body, content_type=request.content_type or "application/json")


async def gone(request: web.Request) -> web.Response:
    return web.Response(status=404, body=GONE, content_type="application/json")


def create_minimal() -> web.Application:
    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_post("/registrations", echo)
    app.router.add_get("/registrations/{id}", gone)
    return app


def create_example() -> web.Application:
    from atkproxy.demo.backend import create_backend

    app = create_backend()
    app.router.add_get("/hello", hello)
    return app


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18181)
    parser.add_argument("--app", choices=("minimal", "example"), default="minimal")
    args = parser.parse_args()
    app = create_minimal() if args.app == "minimal" else create_example()
    web.run_app(app, host=args.host, port=args.port, loop=new_loop(), access_log=None,
                print=None)  # fmt: skip


if __name__ == "__main__":
    main()
