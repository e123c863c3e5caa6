"""What mesh tests keep needing: wait for discovery, count calls, apply a rule for a block.

Each helper takes either a sidecar handle (`SidecarProcess`, read through its admin API) or an
SDK `Mesh` in `sdk` mode (read in-process), so a test reads the same whichever side it holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from sofamesh.governance.rules import parse_rules
from sofamesh.sdk.mesh import Mesh
from sofamesh.testing.process import SidecarProcess, poll_until

Target = SidecarProcess | Mesh


async def healthy_endpoints(target: Target, service: str) -> list[str]:
    """Addresses of `service`'s endpoints that `target` would call now."""
    if isinstance(target, SidecarProcess):
        # Subscribing makes the sidecar follow the service even before its first call.
        await target.admin("POST", "/api/v1/subscribe", {"service": service})
        clusters = await target.clusters()
    else:
        cm = target.runtime.clusters
        if cm is None:
            raise TypeError("an SDK mesh in sidecar mode has no clusters; ask its sidecar")
        cm.get(service)
        clusters = [c.describe() for c in cm.clusters.values()]
    return [
        str(ep["address"])
        for c in clusters
        if c["service"] == service
        for ep in c["endpoints"]
        if ep["health"] == "healthy"
    ]


async def wait_endpoints(target: Target, service: str, n: int, *, timeout: float = 10.0) -> None:
    """Wait until `target` sees exactly `n` healthy endpoints of `service`."""
    seen: list[str] = []

    async def enough() -> bool:
        nonlocal seen
        seen = await healthy_endpoints(target, service)
        return len(seen) == n

    try:
        await poll_until(enough, timeout)
    except TimeoutError:
        raise AssertionError(
            f"{service}: wanted {n} healthy endpoint(s) within {timeout}s, have {seen}"
        ) from None


async def call_stats(
    target: Target, service: str, direction: str = "outbound", *, caller: str | None = None
) -> dict[str, Any]:
    """`target`'s counts for `service` in `direction` (`rq_total`, `rq_error`, `rq_status`), or {}.

    Inbound rows are kept per caller; they are added up unless `caller` names one.
    """
    if isinstance(target, SidecarProcess):
        rows = (await target.stats())["services"]
    else:
        rows = target.runtime.stats.as_dict()["services"]
    total: dict[str, Any] = {}
    for row in rows:
        if row["service"] != service or row["direction"] != direction:
            continue
        if caller is not None and row.get("caller", "") != caller:
            continue
        if not total:
            total = {"rq_total": 0, "rq_error": 0, "rq_status": {}}
        total["rq_total"] += row["rq_total"]
        total["rq_error"] += row["rq_error"]
        for status, n in row["rq_status"].items():
            total["rq_status"][status] = total["rq_status"].get(status, 0) + n
    return total


async def calls_to(
    target: Target, service: str, *, status: str | None = "ok", direction: str = "outbound"
) -> int:
    """How many calls `target` made to `service` (with neutral `status`; None: any status)."""
    row = await call_stats(target, service, direction)
    if not row:
        return 0
    return int(row["rq_total"] if status is None else row["rq_status"].get(status, 0))


async def assert_reached(
    caller: Target,
    service: str,
    n: int,
    *,
    status: str | None = "ok",
    direction: str = "outbound",
) -> None:
    """Assert `caller` reached `service` exactly `n` times (successful calls, by default).

    With `direction="inbound"`, on a provider's side: `service` was reached through it `n` times.
    """
    got = await calls_to(caller, service, status=status, direction=direction)
    who = caller.name if isinstance(caller, SidecarProcess) else caller.config.app
    assert got == n, f"{who}: {direction} calls to {service}: {got}, expected {n}"


@asynccontextmanager
async def rules_applied(target: Target, document: dict[str, Any]) -> AsyncIterator[None]:
    """Put `document` in force on `target` for the block, then restore what was before."""
    if isinstance(target, SidecarProcess):
        before = target.rules
        await target.set_rules(document)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await target.set_rules(before)
        return
    governance = target.governance
    previous = governance.current.document
    governance.apply(parse_rules(document), origin="sofamesh.testing")
    try:
        yield
    finally:
        governance.apply(previous, origin="sofamesh.testing")


def fault_rule(
    service: str,
    *,
    code: int = 503,
    method: str = "",
    percent: float = 100.0,
    direction: str = "outbound",
) -> dict[str, Any]:
    """A rules document that aborts calls to `service` (optionally one `method`) with `code`."""
    fault: dict[str, Any] = {
        "name": "sofamesh-testing-fault",
        "service": service,
        "direction": direction,
        "abort": {"code": code, "percentage": percent},
    }
    if method:
        fault["method"] = method
    return {"faults": [fault]}


def fault_applied(target: Target, service: str, **options: Any) -> Any:
    """`rules_applied` with a fault aborting calls to `service` (see `fault_rule`)."""
    return rules_applied(target, fault_rule(service, **options))
