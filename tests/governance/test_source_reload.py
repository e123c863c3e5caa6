"""Rules pushed live: file source, atomic swap, rejection of invalid changes, state carried over."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from sofamesh.chain import build_chain
from sofamesh.clock import FakeClock
from sofamesh.governance.filters.breaker import BreakerFilter
from sofamesh.governance.filters.flow import FlowFilter
from sofamesh.governance.holder import Governance
from sofamesh.governance.source import (
    FileRulesSource,
    InlineRulesSource,
    follow,
    rules_source,
    watch_rules,
)
from sofamesh.model import Invocation, Result, Status

pytestmark = pytest.mark.anyio

BREAKERS = {
    "breakers": [
        {"service": "a", "min_request_count": 2, "threshold": 0.1},
        {"service": "b", "min_request_count": 2, "threshold": 0.1},
    ]
}


def write(path: Path, data: Any) -> None:
    """Write atomically, as the docs ask operators to."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(data if isinstance(data, str) else json.dumps(data))
    os.replace(tmp, path)


async def spin(_seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


def inv(service: str) -> Invocation:
    return Invocation(protocol="http", service=service, method="/m", caller="web")


async def test_file_source_yields_the_document_then_each_change(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    write(path, {"version": "1"})
    source = FileRulesSource(path, sleep=spin)
    async with source.watch() as snapshots:
        first = await snapshots.__anext__()
        assert first.data == {"version": "1"} and first.origin == f"file:{path}"
        write(path, {"version": "1"})  # rewritten, same content: not a change
        write(path, {"version": "2"})
        assert (await snapshots.__anext__()).data == {"version": "2"}
        write(path, "version: [")  # half a document
        assert "not valid YAML/JSON" in ((await snapshots.__anext__()).error or "")
        path.unlink()
        assert "cannot read" in ((await snapshots.__anext__()).error or "")


async def test_a_file_is_parsed_once_per_change_and_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polling an unchanged file costs a read, not a parse (a 2 MiB YAML document takes a
    second or more), and a change is parsed in a worker thread while the loop serves."""
    import threading

    import yaml

    parsed_on: list[int] = []
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Counting(base):  # type: ignore[misc, valid-type]
        def __init__(self, stream: Any) -> None:
            parsed_on.append(threading.get_ident())
            super().__init__(stream)

    monkeypatch.setattr(yaml, "CSafeLoader", Counting)
    monkeypatch.setattr(yaml, "SafeLoader", Counting)
    polls = 0
    polled = anyio.Event()

    async def count(_seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 5:
            polled.set()
        await anyio.lowlevel.checkpoint()

    path = tmp_path / "rules.yaml"
    write(path, "version: '1'\n")
    async with FileRulesSource(path, sleep=count).watch() as snapshots:
        assert (await snapshots.__anext__()).data == {"version": "1"}
        async with anyio.create_task_group() as tg:
            tg.start_soon(snapshots.__anext__)  # keeps polling: nothing changes
            await polled.wait()
            tg.cancel_scope.cancel()
    assert len(parsed_on) == 1  # five polls of the same content, one parse
    assert parsed_on[0] != threading.get_ident()


async def test_watch_rules_applies_changes_and_rejects_invalid_ones_whole(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    write(path, "version: v1\nrate_limits: [{service: a, count: 1, direction: outbound}]\n")
    clock = FakeClock()
    g = Governance(clock=clock)
    handler = build_chain([FlowFilter(g, clock, "outbound")], _ok)
    async with watch_rules(g, FileRulesSource(path, sleep=spin)):
        assert g.version == "v1" and g.origin == f"file:{path}" and g.loaded_at is not None
        assert [(await handler(inv("a"))).ok for _ in range(2)] == [True, False]

        seen = g.attempts
        write(
            path,
            "version: v2\nrate_limits: [{service: a, count: 1, direction: outbound, bogus: 1}]\n",
        )
        await g.wait_attempt(seen)
        assert g.version == "v1"  # rejected whole: the last good rules stay in force
        assert g.last_error is not None and "rate_limits[0].bogus: unknown key" in g.last_error
        assert str(path) in g.last_error and g.rejected == 1
        assert not (await handler(inv("a"))).ok

        seen = g.attempts
        write(path, "version: v3\nrate_limits: [{service: a, count: 5, direction: outbound}]\n")
        await g.wait_attempt(seen)
        assert g.version == "v3" and g.last_error is None
        clock.advance(1.0)
        assert all([(await handler(inv("a"))).ok for _ in range(5)])


async def test_an_unrelated_breaker_keeps_its_state_across_a_reload() -> None:
    clock = FakeClock()
    g = Governance(clock=clock)
    assert g.load(BREAKERS, "test")
    failing = build_chain([BreakerFilter(g, clock)], _fail)
    for _ in range(2):
        await failing(inv("a"))
    assert (await failing(inv("a"))).status is Status.CIRCUIT_OPEN

    changed_b = json.loads(json.dumps(BREAKERS))
    changed_b["breakers"][1]["threshold"] = 0.9
    changed_b["rate_limits"] = [{"service": "c", "count": 1}]
    assert g.load(changed_b, "test")
    assert (await failing(inv("a"))).status is Status.CIRCUIT_OPEN  # A's breaker kept its state

    changed_a = json.loads(json.dumps(changed_b))
    changed_a["breakers"][0]["recovery_timeout"] = 9.0
    assert g.load(changed_a, "test")
    assert (await failing(inv("a"))).status is Status.APP_ERROR  # a changed rule starts afresh


async def test_reload_under_concurrent_calls_loses_no_call_both_allow() -> None:
    clock = FakeClock()
    old = {
        "rate_limits": [
            {"service": "a", "count": 50, "grade": "concurrency", "direction": "outbound"},
            {"service": "b", "count": 50, "grade": "concurrency", "direction": "outbound"},
        ],
        "breakers": [{"service": "a"}, {"service": "b"}],
    }
    new = json.loads(json.dumps(old))
    new["rate_limits"][1]["count"] = 60  # b's limiter is replaced, a's carried over
    new["breakers"].append({"service": "c"})
    g = Governance(clock=clock)
    assert g.load(old, "old")
    old_a, old_b = g.current.outbound.rate_limits.leaves
    gate = anyio.Event()
    entered = 0

    async def held(call: Invocation) -> Result:
        nonlocal entered
        entered += 1
        await gate.wait()
        return Result(Status.OK)

    handler = build_chain([FlowFilter(g, clock, "outbound"), BreakerFilter(g, clock)], held)
    results: list[Status] = []

    async def one(service: str) -> None:
        results.append((await handler(inv(service))).status)

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(one, "ab"[i % 2])
        while entered < 40:
            await anyio.lowlevel.checkpoint()
        assert g.load(new, "new")  # swapped while 40 calls are in flight
        for i in range(40):
            tg.start_soon(one, "ab"[i % 2])
        while entered < 80:
            await anyio.lowlevel.checkpoint()
        gate.set()
    assert results == [Status.OK] * 80
    new_a, new_b = g.current.outbound.rate_limits.leaves
    assert new_a is old_a and new_b is not old_b
    passed = [leaf.describe(clock.now())[0]["passed"] for leaf in (new_a, old_b, new_b)]
    assert passed == [40, 20, 20]
    in_flight = [leaf.describe(clock.now())[0]["in_flight"] for leaf in (new_a, old_b, new_b)]
    assert in_flight == [0, 0, 0]  # every permit went back to the limiter that gave it


async def test_inline_source_and_follow() -> None:
    g = Governance(clock=FakeClock())
    await follow(InlineRulesSource({"version": "inline-1"}), g)
    assert g.version == "inline-1" and g.origin == "inline"
    assert rules_source() is None
    assert isinstance(rules_source(inline={}), InlineRulesSource)
    assert isinstance(rules_source(path="/x", inline={}), FileRulesSource)


async def test_an_unchanged_document_keeps_everything() -> None:
    g = Governance(clock=FakeClock())
    assert g.load(BREAKERS, "one")
    state = g.current
    assert g.load(BREAKERS, "two")
    assert g.current is state and g.origin == "two" and g.attempts == 2


async def _ok(call: Invocation) -> Result:
    return Result(Status.OK)


async def _fail(call: Invocation) -> Result:
    return Result(Status.APP_ERROR, code=500)


async def test_governance_without_a_document_reads_as_the_empty_document() -> None:
    # Without a document the state is built on first read; until then nothing of the rules
    # model is loaded, yet what a reader sees must be the empty document's, version and all.
    from sofamesh.governance.holder import Governance
    from sofamesh.governance.rules import EMPTY

    lazy, built = Governance(), Governance(document=EMPTY)
    assert lazy.version == built.version == EMPTY.version
    assert lazy.current.document == built.current.document == EMPTY
