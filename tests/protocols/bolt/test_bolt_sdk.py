"""The SDK's Bolt consumer and provider, in one process over loopback (memory registry)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import sofamesh
from sofamesh.codecs.bolt import ResponseStatus
from sofamesh.codecs.hessian2 import ClassRegistry, Long, TypedList
from sofamesh.model import Status
from sofamesh.registry.memory import MemoryHub, MemoryRegistry
from sofamesh.sdk.bolt import BoltCallError, RemoteError, current_call
from sofamesh.sdk.mesh import Mesh

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class Person:
    name: str | None = None
    age: int = 0


CLASSES = ClassRegistry()
CLASSES.register("com.example.Person", Person)


class Echo:
    def __init__(self) -> None:
        self.notified = anyio.Event()
        self.cancelled = anyio.Event()
        self.seen: dict[str, Any] = {}

    def echo(self, value: Any) -> Any:
        return value

    async def add(self, a: int, b: int) -> int:
        return a + b

    def describe(self, *args: Any) -> list[str]:
        call = current_call.get()
        return [f"{sig}={type(a).__name__}" for sig, a in zip(call.signatures, args, strict=True)]

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def notify(self, text: str) -> None:
        self.seen["notify"] = text
        self.notified.set()

    async def slow(self) -> None:
        deadline = current_call.get().deadline
        assert deadline is not None
        self.seen["left"] = deadline - time.monotonic()  # the mesh's default clock
        try:
            await anyio.sleep_forever()
        finally:
            self.cancelled.set()

    def whoami(self) -> dict[str, str]:
        call = current_call.get()
        return {"caller": call.caller, "trace": call.trace_id, "service": call.service}


@asynccontextmanager
async def mesh(hub: MemoryHub, app: str) -> AsyncIterator[Mesh]:
    async with sofamesh.open_mesh(
        {"app": app, "registry": "memory://"}, env={}, registry=MemoryRegistry(hub)
    ) as m:
        yield m


@asynccontextmanager
async def provider_and_consumer(**options: Any) -> AsyncIterator[tuple[Echo, Any, Mesh]]:
    hub = MemoryHub()
    echo = Echo()
    iface = f"com.example.Echo{uuid.uuid4().hex[:8]}"
    async with (
        mesh(hub, "echo-app") as prov,
        mesh(hub, "shop") as cons,
        prov.serve_bolt(echo, iface, version="2.0", registry=CLASSES) as published,
    ):
        assert published.services == (f"{iface}:2.0",)
        yield echo, cons.bolt_consumer(iface, "2.0", registry=CLASSES, **options), cons


async def test_declared_java_types_reach_the_provider() -> None:
    sigs = ["long", "int", "float", "[I", "java.util.List", "java.lang.String"]
    async with provider_and_consumer(methods={"describe": sigs}) as (_, echo, cons):
        assert await echo.add(2, 40) == 42
        got = await echo.describe(1, 2, 1.5, [1, 2], [3], "s")
        assert got == [
            "long=Long", "int=int", "float=float", "[I=TypedList", "java.util.List=list",
            "java.lang.String=str",
        ]  # fmt: skip
        # Undeclared: guessed from the Python values; a per-call override wins.
        undeclared = cons.bolt_consumer(*echo.service.split(":"))
        assert await undeclared.describe(1, "x", None) == [
            "int=int", "java.lang.String=str", "java.lang.Object=NoneType",
        ]  # fmt: skip
        assert await echo.call("describe", 5, types=["java.lang.Long"]) == ["java.lang.Long=Long"]
        with pytest.raises(TypeError, match="takes 6 arguments"):
            await echo.describe(1)
        with pytest.raises(TypeError, match="Java int"):
            await echo.call("add", "2", 40, types=["int", "int"])


async def test_java_objects_and_collections_round_trip() -> None:
    async with provider_and_consumer() as (_, echo, _m):
        person = Person("ada", 36)
        assert await echo.echo(person) == person
        assert await echo.echo({"k": [1, Long(2)]}) == {"k": [1, 2]}
        got = await echo.call("echo", [1, 2], types=["[J"])
        assert got == TypedList("[long", [1, 2])


async def test_provider_errors_surface_with_their_message() -> None:
    async with provider_and_consumer() as (_, echo, _m):
        with pytest.raises(RemoteError) as raised:
            await echo.fail("bad")
        err = raised.value
        assert err.message == "ValueError: bad" and "#fail" in str(err)
        assert (err.status, err.code) == (Status.APP_ERROR, ResponseStatus.SERVER_EXCEPTION)
        assert err.exception is not None and err.exception.message == "ValueError: bad"
        with pytest.raises(RemoteError, match=r"Can not find method: .*#nope\(\)"):
            await echo.nope()


async def test_oneway_and_future_calls() -> None:
    async with provider_and_consumer() as (provider, echo, _m):
        assert await echo.oneway("notify", "hello") is None
        await provider.notified.wait()
        assert provider.seen["notify"] == "hello"
        futures = [echo.future("add", i, i) for i in range(5)]
        assert [await f.result() for f in futures] == [0, 2, 4, 6, 8]
        assert all(f.done() for f in futures)
        failing = echo.future("fail", "later")
        with pytest.raises(RemoteError, match="later"):
            await failing


async def test_deadline_rides_in_the_frame_and_late_work_is_cancelled() -> None:
    async with provider_and_consumer(timeout=0.3) as (provider, echo, _m):
        with pytest.raises(BoltCallError) as raised:
            await echo.slow()
        assert raised.value.status is Status.TIMEOUT
        await provider.cancelled.wait()  # the provider dropped the work at the deadline
        assert 0 < provider.seen["left"] < 0.3  # what the caller had left, not a fresh 0.3 s


async def test_caller_and_trace_context_travel_with_the_call() -> None:
    async with provider_and_consumer() as (_, echo, _m):
        me = await echo.whoami()
        assert me["caller"] == "shop" and me["service"] == echo.service
        assert me["trace"].startswith("7f000001") and len(me["trace"]) > 20


async def test_mesh_failures_are_not_remote_errors() -> None:
    async with mesh(MemoryHub(), "shop") as cons:
        missing = cons.bolt_consumer("com.example.Missing", "1.0")
        with pytest.raises(BoltCallError) as raised:
            await missing.anything()
        assert not isinstance(raised.value, RemoteError)
        assert raised.value.status is Status.NO_ENDPOINT
        assert "no healthy endpoint for service com.example.Missing:1.0" in raised.value.message
