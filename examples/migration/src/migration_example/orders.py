"""The orders service: a plain ASGI app that knows nothing of the mesh.

Served by the SDK (`mesh.serve_asgi(app, services=[SERVICE])`) or run as a plain
process behind a sidecar; the app does not change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

SERVICE = "com.example.Orders"

Message = MutableMapping[str, Any]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()
    order_id = scope["path"].rsplit("/", 1)[-1]
    caller = dict(scope["headers"]).get(b"x-sofamesh-caller", b"").decode()
    body = {"order": order_id, "served_by": os.getpid(), "caller": caller}
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
