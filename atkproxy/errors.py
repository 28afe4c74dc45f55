"""Request errors answered as JSON: `{"error": "...", "status": N}`."""

from __future__ import annotations

from aiohttp import web


class Rejected(Exception):
    """A request the proxy refuses; `status` and the message go back to the client."""

    def __init__(
        self, status: int, message: str, retry_after: int | None = None, logged: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.logged = logged  # already accounted for in the log by whoever raised it


def json_error(status: int, message: str, retry_after: int | None = None) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)
