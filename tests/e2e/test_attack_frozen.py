"""A frozen provider (SIGSTOP: its kernel still accepts connections, nothing answers).

A caller sidecar in front of two SDK provider processes of one service, with a route retry
policy (a 0.25 s per-try timeout, timeouts retried) as a demanding user configures it. One
provider is stopped: its timed-out tries are retried on the other, count toward its
ejection, and once it is ejected no call waits on it, so calls keep succeeding and soon
run at full speed again.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio

SERVICE = "orders"
PER_TRY = 0.25
CALLS = 60


def caller_config(registry: str) -> dict[str, Any]:
    retry = {"attempts": 3, "retry_on": ["connect_failure", "reset", "timeout"],
             "per_try_timeout": PER_TRY}  # fmt: skip
    return {
        "app": "shop",
        "registry": registry,
        "admin": "127.0.0.1:0",
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
        "services": {SERVICE: {"timeout": 2}},
        "rules": {"routes": [{"service": SERVICE, "retry": retry}]},
    }


async def test_a_frozen_provider_is_ejected_and_calls_keep_succeeding(
    tmp_path: Path, anyio_backend: str
) -> None:
    registry = f"file://{tmp_path}/reg?poll=0.05"
    async with Procs(tmp_path, anyio_backend) as procs:
        for instance in ("orders-1", "orders-2"):
            await procs.sdk_provider(instance, SERVICE, registry)
        bound = await procs.sidecar("shop", caller_config(registry))
        url, host = f"http://{bound['outbound[0]']}/x", {"host": SERVICE}
        frozen, _ = procs.running["orders-2"]
        async with httpx.AsyncClient(timeout=5) as c:
            seen = {(await c.get(url, headers=host)).json()["instance"] for _ in range(10)}
            assert seen == {"orders-1", "orders-2"}  # both serve before the freeze
            frozen.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                codes = [(await c.get(url, headers=host)).status_code for _ in range(CALLS)]
                took = time.monotonic() - started
                stats = (await c.get(f"http://{bound['admin']}/stats")).json()
            finally:
                frozen.send_signal(signal.SIGCONT)
    assert codes == [200] * CALLS  # every timed-out try was retried on the live provider
    assert stats["counters"]["outlier.ejections"] == 1
    # Unejected, every other call would wait out a try: CALLS / 2 x 0.25 s = 7.5 s.
    assert took < CALLS / 2 * PER_TRY * 0.7, took
