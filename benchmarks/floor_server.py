"""aiohttp's low-level server answering every request itself with the fixed JSON body, no
upstream: what serving a request on aiohttp costs before any proxying, a reference for run.sh.

    python benchmarks/floor_server.py --port 18187
"""

import argparse
import asyncio

import uvloop
from aiohttp import web

BODY = b'{"message":"hello"}'


async def answer(request: web.BaseRequest) -> web.Response:
    if request.body_exists:
        await request.read()
    return web.Response(body=BODY, content_type="application/json")


async def serve(port: int) -> None:
    runner = web.ServerRunner(web.Server(answer), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()  # until the harness stops it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
