"""The snapshot wrapper: remembers, persists, and serves the last known state on a cold start."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import pytest
from tests.registry.servers import next_value

from sofamesh.endpoint import Endpoint
from sofamesh.registry import MemoryHub, MemoryRegistry, RegistryError, SnapshotRegistry
from sofamesh.registry.snapshot import SnapshotFile

pytestmark = pytest.mark.anyio

A = Endpoint("svc", "10.0.0.1", 1, version="1")
B = Endpoint("svc", "10.0.0.2", 2)


class ScriptedRegistry:
    """An inner registry that is 'down' (its watches say nothing) until the test speaks."""

    def __init__(self) -> None:
        self.sends: dict[str, anyio.abc.ObjectSendStream[Any]] = {}
        self.opened = anyio.Event()

    async def __aenter__(self) -> ScriptedRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    @asynccontextmanager
    async def watch(self, service: str) -> AsyncIterator[AsyncIterator[Any]]:
        send, receive = anyio.create_memory_object_stream[Any](16)
        self.sends[service] = send
        self.opened.set()
        async with send, receive:
            yield receive

    watch_document = watch

    async def list_services(self) -> list[str]:
        raise RegistryError("registry down")

    async def say(self, name: str, value: Any) -> None:
        await self.opened.wait()
        await self.sends[name].send(value)


def stored(
    path: Path,
    services: dict[str, list[Endpoint]],
    documents: dict[str, str] | None = None,
    at: float = 1.0,
) -> None:
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "services": {
                    s: {"at": at, "endpoints": [e.to_dict() for e in eps]}
                    for s, eps in services.items()
                },
                "documents": {n: {"at": at, "text": t} for n, t in (documents or {}).items()},
            }
        )
    )


async def test_cold_start_serves_the_stored_snapshot_then_follows_the_registry(
    tmp_path: Path,
) -> None:
    path = tmp_path / "snap.json"
    stored(path, {"svc": [A, B]})
    inner = ScriptedRegistry()
    opened = SnapshotRegistry(inner, path, cold_start_wait=0.05)
    async with opened as reg, reg.watch("svc") as snaps:
        assert await next_value(snaps) == {A, B}  # the registry said nothing: the file speaks
        assert reg.statistics().served_from_file == 1
        await inner.say("svc", frozenset({B}))
        assert await next_value(snaps) == {B}
        assert await reg.list_services() == ["svc"]  # the registry is down: what we know


async def test_a_registry_that_answers_in_time_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    stored(path, {"svc": [A, B]})
    inner = ScriptedRegistry()
    async with SnapshotRegistry(inner, path, cold_start_wait=5) as reg, reg.watch("svc") as snaps:
        await inner.say("svc", frozenset({A}))
        assert await next_value(snaps) == {A}
        assert reg.statistics().served_from_file == 0


async def test_no_stored_snapshot_means_waiting_for_the_registry(tmp_path: Path) -> None:
    inner = ScriptedRegistry()
    async with (
        SnapshotRegistry(inner, tmp_path / "none.json", cold_start_wait=0) as reg,
        reg.watch("svc") as snaps,
    ):
        with anyio.move_on_after(0.1):
            await snaps.__anext__()
            pytest.fail("served something nobody knew")


async def test_an_explicit_removal_empties_even_a_stored_set(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    stored(path, {"svc": [A]})
    inner = ScriptedRegistry()
    async with SnapshotRegistry(inner, path, cold_start_wait=0) as reg, reg.watch("svc") as snaps:
        assert await next_value(snaps) == {A}
        await inner.say("svc", frozenset())
        assert await next_value(snaps) == frozenset()


async def test_what_was_learnt_is_written_and_survives_a_restart(tmp_path: Path) -> None:
    path, hub = tmp_path / "snap.json", MemoryHub()
    async with SnapshotRegistry(MemoryRegistry(hub), path, flush_interval=0) as reg:
        await reg.publish(A)
        async with reg.watch("svc") as snaps:
            assert await next_value(snaps) == {A}
    assert SnapshotFile(path).load()["services"]["svc"]["endpoints"] == [A.to_dict()]
    inner = ScriptedRegistry()
    async with SnapshotRegistry(inner, path, cold_start_wait=0) as reg, reg.watch("svc") as snaps:
        assert await next_value(snaps) == {A}


async def test_documents_are_kept_too(tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    stored(path, {}, {"rules": "flow: []"})
    inner = ScriptedRegistry()
    async with (
        SnapshotRegistry(inner, path, cold_start_wait=0, flush_interval=0) as reg,
        reg.watch_document("rules") as docs,
    ):
        assert await next_value(docs) == "flow: []"
        await inner.say("rules", "flow: [1]")
        assert await next_value(docs) == "flow: [1]"
    assert SnapshotFile(path).load()["documents"]["rules"]["text"] == "flow: [1]"


def test_unreadable_files_are_empty(tmp_path: Path) -> None:
    for content in ("{nope", "[]", '{"version": 99}'):
        (tmp_path / "s.json").write_text(content)
        assert SnapshotFile(tmp_path / "s.json").load() == {"services": {}, "documents": {}}
    assert SnapshotFile(tmp_path / "missing.json").load()["services"] == {}


def test_merge_keeps_the_newest_entry_of_every_name(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    stored(path, {"mine": [A], "theirs": [B]}, at=5.0)
    f = SnapshotFile(path)
    f.merge_and_save(
        {
            "services": {
                "mine": {"at": 9.0, "endpoints": []},
                "theirs": {"at": 1.0, "endpoints": []},
            },
            "documents": {},
        }
    )
    services = f.load()["services"]
    assert services["mine"]["endpoints"] == [] and services["theirs"]["endpoints"] == [B.to_dict()]


class _Closing:
    def __init__(self) -> None:
        self.closed = False

    async def __aenter__(self) -> _Closing:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.closed = True


async def test_closing_the_wrapper_closes_the_inner_registry(tmp_path: Path) -> None:
    inner = _Closing()
    async with SnapshotRegistry(inner, tmp_path / "s.json"):
        assert not inner.closed
    assert inner.closed


async def test_an_unwritable_file_is_reported_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    async with SnapshotRegistry(
        MemoryRegistry(MemoryHub()), blocker / "snap.json", flush_interval=0
    ) as reg:
        await reg.publish(A)
        async with reg.watch("svc") as snaps:
            assert await next_value(snaps) == {A}
    assert reg.statistics().flush_errors >= 1
