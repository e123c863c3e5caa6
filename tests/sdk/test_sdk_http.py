"""The SDK in one process: an ASGI provider and an httpx consumer, publication and lifespan."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

import sofamesh
from sofamesh.endpoint import Endpoint
from sofamesh.registry import FileRegistry

pytestmark = pytest.mark.anyio


def app_with_lifespan(events: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                events.append(msg["type"])
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        body = (await receive())["body"]
        if scope["path"] == "/boom":
            raise RuntimeError("the app fails")
        reply = f"{scope['method']} {scope['path']}?{scope['query_string'].decode()} {body!r}"
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-app", b"1")]})
        await send({"type": "http.response.body", "body": reply.encode()})

    return app


async def test_provider_and_consumer_in_one_process(tmp_path: Path) -> None:
    events: list[str] = []
    cfg = {"app": "shop", "registry": f"file://{tmp_path}/reg?poll=0.05"}
    async with sofamesh.open_mesh(cfg, env={}) as mesh:
        assert mesh.mode == "sdk"
        async with mesh.serve_asgi(app_with_lifespan(events), services=["com.example.Echo"]) as p:
            assert events == ["lifespan.startup"]
            async with FileRegistry(tmp_path / "reg") as reg:
                assert await reg.list_services() == ["com.example.Echo"]
            async with httpx.AsyncClient(transport=mesh.httpx_transport()) as client:
                r = await client.post("http://com.example.Echo/a/b?x=1", content=b"hi")
                assert (r.status_code, r.headers["x-app"]) == (201, "1")
                assert r.text == "POST /a/b?x=1 b'hi'"
                boom = await client.get("http://com.example.Echo/boom")
                assert boom.status_code == 500  # the app's failure, not the mesh's
            resp = await mesh.request("com.example.Echo", "GET", "/c")
            assert resp.status == 201 and resp.body == b"GET /c? b''"
            assert p.address.port > 0
        assert events == ["lifespan.startup", "lifespan.shutdown"]
        # a clean exit unpublishes at once (no waiting for the lease)
        async with FileRegistry(tmp_path / "reg") as reg:
            assert await reg.list_services() == []
        with anyio.fail_after(5):
            r = await mesh.request("com.example.Echo", "GET", "/gone")
        assert r.status == 503 and b"com.example.Echo" in r.body


async def test_sidecar_mode_without_a_sidecar_fails_clearly(tmp_path: Path) -> None:
    from sofamesh.sdk.control import SidecarUnavailable

    cfg = {"app": "shop", "mode": "sidecar", "sidecar": "127.0.0.1:1"}
    with pytest.raises(SidecarUnavailable, match="unreachable"):
        async with sofamesh.open_mesh(cfg, env={}):
            pass


async def test_a_provider_that_does_not_answer_times_out_at_the_policy_deadline(
    tmp_path: Path,
) -> None:
    entered = anyio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        if scope["path"] == "/slow":
            entered.set()
            await anyio.sleep_forever()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fast"})

    cfg = {
        "app": "shop",
        "registry": f"file://{tmp_path}/reg?poll=0.05",
        "policy": {"timeout": 0.2},
        "drain_timeout": 0.1,
    }
    # Leaving the provider's block ends even with calls stuck in the app (cut off
    # after drain_timeout).
    with anyio.fail_after(10):
        async with (
            sofamesh.open_mesh(cfg, env={}) as mesh,
            mesh.serve_asgi(app, services=["com.example.Slow"]),
        ):
            started = anyio.current_time()
            slow = await mesh.request("com.example.Slow", "GET", "/slow")
            waited = anyio.current_time() - started
            assert entered.is_set() and 0.15 <= waited < 2
            assert slow.status == 504 and b"did not answer within" in slow.body
            # A caller's shorter timeout wins over the policy's.
            started = anyio.current_time()
            shorter = await mesh.request("com.example.Slow", "GET", "/slow", timeout=0.05)
            assert shorter.status == 504 and anyio.current_time() - started < 0.15
            fast = await mesh.request("com.example.Slow", "GET", "/fast")
            assert (fast.status, fast.body) == (200, b"fast")


@asynccontextmanager
async def resetting_provider() -> AsyncIterator[tuple[int, list[bytes]]]:
    """An HTTP/1.1 provider that drops every odd-numbered request unanswered (a reset
    after the request reached it) and answers the others, one request per connection."""
    seen: list[bytes] = []

    async def handle(conn: anyio.abc.SocketStream) -> None:
        async with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await conn.receive()
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            while length and len(body) < int(length.group(1)):
                body += await conn.receive()
            seen.append(head.split(b" ", 1)[0])
            if len(seen) % 2 == 0:
                await conn.send(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                )

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port), seen
        tg.cancel_scope.cancel()


async def test_mesh_request_retries_an_idempotent_call_after_a_reset_as_httpx_does(
    tmp_path: Path,
) -> None:
    cfg = {"app": "shop", "registry": f"file://{tmp_path}/reg?poll=0.05"}
    async with (
        resetting_provider() as (port, seen),
        FileRegistry(tmp_path / "reg") as reg,
        sofamesh.open_mesh(cfg, env={}) as mesh,
        httpx.AsyncClient(transport=mesh.httpx_transport()) as client,
    ):
        await reg.publish(Endpoint("com.example.Flaky", "127.0.0.1", port))
        with anyio.fail_after(10):
            got = await mesh.request("com.example.Flaky", "GET", "/a")
            assert (got.status, got.body) == (200, b"ok")  # reset, then retried
            r = await client.get("http://com.example.Flaky/b")
            assert (r.status_code, r.text) == (200, "ok")  # the same through httpx
            posted = await mesh.request("com.example.Flaky", "POST", "/c", body=b"x")
            assert posted.status == 502  # not idempotent: the reset is the answer
    assert seen == [b"GET", b"GET", b"GET", b"GET", b"POST"]
