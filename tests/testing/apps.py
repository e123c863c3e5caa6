"""Provider apps the plugin's tests run in every shape (named `tests.testing.apps:...`)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]


async def orders(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Answers with who served it (pid) and who called (the mesh's caller header)."""
    if scope["type"] == "lifespan":
        while (msg := await receive())["type"] != "lifespan.shutdown":
            await send({"type": msg["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()
    headers = dict(scope["headers"])
    status = 500 if scope["path"].startswith("/fail") else 200
    body = {
        "pid": os.getpid(),
        "path": scope["path"],
        "caller": headers.get(b"x-sofamesh-caller", b"").decode() or None,
    }
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class Calculator:
    """A SOFARPC service object (`com.example.Calculator:1.0`)."""

    async def add(self, a: int, b: int) -> int:
        return a + b

    def pid(self) -> int:
        return os.getpid()
