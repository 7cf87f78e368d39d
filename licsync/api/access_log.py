"""The optional HTTP access log (``[api] access_log = true``): one structured line per request.

What a line holds: method, path, status, duration, the client's address. What it never holds: the
query string (it can carry a secret a client put there), headers (``Authorization``, cookies) or a
body. Paths carry tenant names and user ids, as the API's own URLs do, never a token.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from licsync.log import get_logger


class AccessLog:
    """Pure ASGI middleware: logs after the response started (or failed), on the ``http`` logger."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = get_logger(component="http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            self.log.info("http_request", method=scope["method"], path=scope["path"], status=status,
                          duration_ms=round((time.perf_counter() - started) * 1000, 2),
                          client=client[0] if client else None)
