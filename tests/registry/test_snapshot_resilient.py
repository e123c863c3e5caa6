"""What the networked registries share: backoff with jitter, the reconciler, URL options."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sofamesh import registry
from sofamesh.registry import open_registry, validate_registry_url
from sofamesh.registry.base import RegistryError
from sofamesh.registry.resilient import (
    NETWORK_SCHEMES,
    Backoff,
    Latest,
    Reconciler,
    check_workspace,
    parse_hosts,
    parse_network_url,
)


def test_backoff_doubles_up_to_its_cap_and_jitter_cuts_at_most_its_share() -> None:
    b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.5)
    assert [b.delay(n, lambda: 0.0) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1, 1])
    assert b.delay(3, lambda: 1.0) == pytest.approx(0.4)  # the largest cut: half
    assert Backoff(jitter=1.0).delay(0, lambda: 1.0) == 0.0  # "full jitter" may reach zero


@given(st.integers(0, 10_000), st.floats(0, 1))
def test_backoff_stays_within_bounds(attempt: int, r: float) -> None:
    b = Backoff(initial=0.05, maximum=3.0, jitter=0.5)
    assert 0.025 * 0.999 <= b.delay(attempt, lambda: r) <= 3.0


@pytest.mark.parametrize("bad", [{"initial": 0}, {"maximum": -1}, {"jitter": 1.5}])
def test_backoff_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**bad)


@pytest.mark.anyio
async def test_reconciler_retries_until_a_pass_succeeds_and_again_when_kicked() -> None:
    outcomes = [False, False, True, True]
    passed = anyio.Event()

    async def sync() -> None:
        if not outcomes.pop(0):
            raise RegistryError("down")
        passed.set()

    rec = Reconciler(sync, Backoff(initial=0.001, maximum=0.002), name="test")
    async with anyio.create_task_group() as tg:
        await tg.start(rec.run)
        with pytest.raises(RegistryError):
            await rec.sync_now()  # fails, and leaves the work to the background loop
        with anyio.fail_after(5):
            await rec.in_sync.wait()
        assert rec.passes == 3 and rec.failures == 2 and outcomes == [True]
        rec.kick()
        assert not rec.in_sync.is_set()
        with anyio.fail_after(5):
            await rec.in_sync.wait()
        assert outcomes == []
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_latest_keeps_only_the_newest_value() -> None:
    box: Latest[int] = Latest()
    box.put(1)
    box.put(2)
    assert await box.get() == 2
    with pytest.raises(anyio.WouldBlock):
        box.get_nowait()


def test_hosts_and_workspaces() -> None:
    assert parse_hosts("a:1,b,[::1]:3", 2379) == [("a", 1), ("b", 2379), ("::1", 3)]
    for bad in ("", "a:x", "a:70000", ":1"):
        with pytest.raises(ValueError):
            parse_hosts(bad, 1)
    assert check_workspace("team-a.prod_1") == "team-a.prod_1"
    for bad in ("", "-x", "a/b", "a b", "x" * 65):
        with pytest.raises(ValueError):
            check_workspace(bad)


def test_network_url_options() -> None:
    opts = parse_network_url("etcd://h1:1,h2?workspace=w&lease=4&timeout=0.5&snapshot=/s.json")
    assert opts.hosts == (("h1", 1), ("h2", 2379)) and opts.workspace == "w"
    assert (opts.ttl, opts.timeout, opts.snapshot) == (4.0, 0.5, "/s.json")
    zk = parse_network_url("zookeeper://z?session_timeout=7")
    assert zk.hosts == (("z", 2181),) and zk.ttl == 7.0
    assert zk.snapshot is not None
    assert zk.snapshot.startswith("/var/tmp/sofamesh/snapshots/zookeeper-default-")
    assert parse_network_url("etcd://h?snapshot=none").snapshot is None


def test_every_problem_of_a_url_is_named_at_once() -> None:
    problem = validate_registry_url("etcd://h:x?lease=-1&workspace=a/b&colour=red")
    assert problem is not None
    for part in ("hosts", "lease", "workspace", "colour"):
        assert part in problem
    assert validate_registry_url("zookeeper://h?lease=3") is not None  # etcd's word, not ZK's
    assert validate_registry_url("etcd://h:2379?workspace=ok") is None
    with pytest.raises(ValueError):
        open_registry("etcd://h?timeout=soon")


def test_the_package_names_the_networked_schemes_whose_options_resilient_holds() -> None:
    # The package lists them without importing `resilient`, which loads with the first URL.
    assert tuple(NETWORK_SCHEMES) == registry.NETWORK_SCHEMES
    assert registry.SnapshotRegistry.__module__ == "sofamesh.registry.snapshot"
