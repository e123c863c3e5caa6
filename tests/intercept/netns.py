"""Two "hosts" as network namespaces joined by a veth pair, made and removed by the tests.

Host A is 10.231.N.1, host B 10.231.N.2 (N differs per run), each with loopback up;
A routes everything else (the virtual IPs) towards B. `ip netns exec` bind-mounts
/etc/netns/<ns>/resolv.conf over /etc/resolv.conf, so each host gets its own resolver.
Everything is removed on exit, even after a failure: the namespaces (and with them the
veth pair and every iptables rule inside) and the resolv.conf directories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest

NETNS_ETC = Path("/etc/netns")


@attrs.frozen
class Hosts:
    a: str  # namespace names
    b: str
    a_ip: str
    b_ip: str

    def exec(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


@contextmanager
def two_hosts() -> Iterator[Hosts]:
    tag = f"{os.getpid() % 10000}{os.urandom(2).hex()}"
    net = 10 + os.getpid() % 240
    hosts = Hosts(f"smA{tag}", f"smB{tag}", f"10.231.{net}.1", f"10.231.{net}.2")
    made: list[str] = []
    try:
        for ns in (hosts.a, hosts.b):
            _run("ip", "netns", "add", ns)
            made.append(ns)
        va, vb = f"va{tag}"[:15], f"vb{tag}"[:15]
        _run(
            "ip", "link", "add", va, "netns", hosts.a, "type", "veth", "peer", vb, "netns", hosts.b
        )
        for ns, dev, ip in ((hosts.a, va, hosts.a_ip), (hosts.b, vb, hosts.b_ip)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            (NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / ns / "resolv.conf").write_text(f"nameserver {hosts.b_ip}\n")
        _run("ip", "-n", hosts.a, "route", "add", "default", "via", hosts.b_ip)
        yield hosts
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)


def hosts_or_fail() -> Iterator[Hosts]:
    """`two_hosts` for a fixture to yield from: a machine that refuses network namespaces
    fails the test (a missing component is a failure, never a skip)."""
    try:
        made = two_hosts()
        net = made.__enter__()
    except RuntimeError as e:
        pytest.fail(f"this machine refuses network namespaces (needs root, ip, iptables): {e}")
    try:
        yield net
    finally:
        made.__exit__(None, None, None)
