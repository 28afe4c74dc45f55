"""The demo's parts as their own processes, for a pod: the example backend or the receiver.

    python -m atkproxy.demo.standalone backend  [--host 127.0.0.1] [--port 8081]
    python -m atkproxy.demo.standalone receiver [--host 127.0.0.1] [--port 9000]

The receiver also answers `GET /_received` with what it was sent, credentials included: it is
a test tool, never a real callback target.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from aiohttp import web

from ..observability import configure_logging
from ..settings import Logging
from .backend import create_backend
from .receiver import CallbackReceiver

DEFAULT_PORTS = {"backend": 8081, "receiver": 9000}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m atkproxy.demo.standalone")
    parser.add_argument("part", choices=sorted(DEFAULT_PORTS))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    configure_logging(Logging())
    app = create_backend() if args.part == "backend" else CallbackReceiver().app
    port = DEFAULT_PORTS[args.part] if args.port is None else args.port
    web.run_app(app, host=args.host, port=port, print=None)


if __name__ == "__main__":
    main()
