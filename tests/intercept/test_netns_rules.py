"""`sofamesh-init` against real iptables in a namespace: both backends, twice, then removed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from tests.intercept.netns import Hosts, hosts_or_fail

from sofamesh.intercept import rules


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    yield from hosts_or_fail()


def _in(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True)


def _init(ns: str, *args: str) -> None:
    done = _in(ns, sys.executable, "-m", "sofamesh.intercept", *args)
    assert done.returncode == 0, done.stderr


def _nat(ns: str, iptables: str) -> list[str]:
    done = _in(ns, iptables, "-t", "nat", "-S")
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "SOFAMESH" in line]


@pytest.mark.parametrize("iptables", ["iptables", "iptables-legacy"])
def test_install_twice_gives_one_set_and_remove_leaves_nothing(hosts: Hosts, iptables: str) -> None:
    args = ["--iptables", iptables, "--proxy-uid", "1337", "--inbound-ports", "8080", "--dns"]
    _init(hosts.a, *args)
    once = _nat(hosts.a, iptables)
    _init(hosts.a, *args)
    assert _nat(hosts.a, iptables) == once
    for chain in rules.CHAINS:
        assert f"-N {chain}" in once
    assert "-A OUTPUT -p tcp -j SOFAMESH_OUTPUT" in once
    assert "-A PREROUTING -p tcp -j SOFAMESH_INBOUND" in once
    assert "-A SOFAMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN" in once
    _init(hosts.a, "--iptables", iptables, "--remove")
    assert _nat(hosts.a, iptables) == []
    _init(hosts.a, "--iptables", iptables, "--remove")  # nothing left to remove: still fine


def test_a_failing_install_leaves_nothing_behind(hosts: Hosts) -> None:
    # An owner match on a uid iptables refuses makes the install fail part-way.
    done = _in(hosts.b, sys.executable, "-m", "sofamesh.intercept", "--proxy-uid", "-5")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed" in done.stderr
    assert _nat(hosts.b, "iptables") == []
