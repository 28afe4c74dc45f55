"""The plainest aiohttp reverse proxy, a reference for run.sh: uvloop, one ClientSession, no
features (no header hygiene, no streaming, no error handling).

    python benchmarks/plain_proxy.py --port 18184 --upstream http://127.0.0.1:18181
"""

import argparse
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web


async def proxy(request: web.Request) -> web.Response:
    session: aiohttp.ClientSession = request.app["session"]
    async with session.request(
        request.method, request.app["upstream"] + request.raw_path, data=await request.read()
    ) as r:
        return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)


async def session_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as app["session"]:
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    app = web.Application()
    app["upstream"] = args.upstream
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", proxy)
    web.run_app(app, host="127.0.0.1", port=args.port, loop=uvloop.new_event_loop(),
                access_log=None, print=None)  # fmt: skip


if __name__ == "__main__":
    main()
