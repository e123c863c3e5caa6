"""`python -m sofamesh.demo`: a small mesh on this machine, calls flowing every way.

Topology, on the embedded file registry (a temporary directory):

    shop (SDK consumer, this process) ------+
    web (plain client) -> sidecar "web" ----+--> com.example.Orders x2: ASGI apps served by
                                            |      the SDK, each calling Inventory through the mesh
                                            +--> com.example.Inventory x2: plain HTTP apps,
                                                   each behind its own sidecar

Phases: steady traffic; inventory-2's app is SIGKILLed (its sidecar stays up and
published, so callers see connect failures, retry elsewhere, and eject it);
the app comes back and, once its ejection ends, gets traffic again.
Exits 0 when every phase behaved; `--keep-running` stays up to explore the
admin endpoints it prints. SIGTERM or Ctrl-C stops every process the demo
started and removes its temporary directory (exit status 128 + the signal).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx

import sofamesh
from sofamesh.control.demo import DemoControl, start_demo_control
from sofamesh.demo.procs import Procs
from sofamesh.demo.tally import Tally

ORDERS, INVENTORY = "com.example.Orders", "com.example.Inventory"
EJECTION_TIME = 3.0
PHASE_LIMIT = 30.0  # seconds a phase may run past its length for what it shows to happen
CALLERS = ("shop (SDK)", "web (plain -> sidecar)")
PAIRS = [(caller, service) for caller in CALLERS for service in (ORDERS, INVENTORY)]
POLICY = {"outlier": {"consecutive_failures": 3, "base_ejection_time": EJECTION_TIME}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_mesh(procs: Procs, registry: str, control: DemoControl) -> dict[str, Any]:
    """Every process of the demo, started side by side: each finds the others through the
    registry, so none waits for another's READY line. Returns what the phases need to know."""
    ports = {i: free_port() for i in (1, 2)}
    common = {"registry": registry, **control.mesh_keys(), "admin": "127.0.0.1:0", "policy": POLICY}
    web: dict[str, Any] = {}

    async def inventory(i: int) -> None:
        await procs.plain_app(f"inventory-{i}", ports[i])

    async def inventory_sidecar(i: int) -> None:
        inbound = {"protocol": "http", "listen": "127.0.0.1:0",
                   "upstream": f"127.0.0.1:{ports[i]}", "services": [INVENTORY]}  # fmt: skip
        await procs.sidecar(f"inventory-{i}", {"app": "inventory", **common, "inbound": [inbound]})

    async def orders(i: int) -> None:
        await procs.sdk_provider(
            f"orders-{i}", ORDERS, registry, calls=INVENTORY, ejection_time=EJECTION_TIME
        )

    async def web_sidecar() -> None:
        outbound = {"protocol": "http", "listen": "127.0.0.1:0"}
        web.update(await procs.sidecar("web", {"app": "web", **common, "outbound": [outbound]}))

    async with anyio.create_task_group() as tg:
        for i in (1, 2):
            for start in (inventory, inventory_sidecar, orders):
                tg.start_soon(start, i)
        tg.start_soon(web_sidecar)
    return {"inventory_ports": ports, "web": web}


async def drive(tally: Tally, name: str, call: Any, service: str, stop: anyio.Event) -> None:
    while not stop.is_set():
        try:
            resp = await call(service)
            body = resp.json() if resp.status_code == 200 else {}
            tally.record(name, service, resp.status_code, body.get("instance", "-"))
        except httpx.HTTPError as e:
            tally.record(name, service, 0, type(e).__name__)
        await anyio.sleep(0.02)


async def run_demo(keep_running: bool, seconds: float) -> int:
    with tempfile.TemporaryDirectory(prefix="sofamesh-demo-") as tmp:
        registry = f"file://{tmp}/registry"
        async with Procs(Path(tmp)) as procs:
            print(f"starting the demo mesh (registry {registry}) ...", flush=True)
            control = await start_demo_control(procs, Path(tmp), registry)
            info = await start_mesh(procs, registry, control)
            web = info["web"]
            cfg = {"app": "shop", "registry": registry, "policy": POLICY, **control.mesh_keys()}
            async with (
                sofamesh.open_mesh(cfg, env={}) as mesh,
                httpx.AsyncClient(transport=mesh.httpx_transport()) as shop,
                httpx.AsyncClient() as plain,
                anyio.create_task_group() as tg,
            ):
                tally = Tally()
                stop = anyio.Event()

                async def via_sdk(service: str) -> httpx.Response:
                    return await shop.get(f"http://{service}/items/42")

                async def via_sidecar(service: str) -> httpx.Response:
                    return await plain.get(
                        f"http://{web['outbound[0]']}/items/42", headers={"host": service}
                    )

                calls = dict(zip(CALLERS, (via_sdk, via_sidecar), strict=True))
                for caller, service in PAIRS:
                    tg.start_soon(drive, tally, caller, calls[caller], service, stop)
                ok = await phases(procs, tally, info, web["admin"], seconds)
                await wait_synced(control, PHASE_LIMIT)
                print(f"control plane: {await control.sync_summary()}")
                if keep_running:
                    print_admin(procs)
                print("\n" + "\n".join(control.commands()), flush=True)
                if keep_running:
                    print("running until Ctrl-C ...", flush=True)
                    await anyio.sleep_forever()
                stop.set()
        return 0 if ok else 1


async def phases(
    procs: Procs, tally: Tally, info: dict[str, Any], web_admin: str, seconds: float
) -> bool:
    """Each phase lasts `seconds`, and longer (up to `PHASE_LIMIT` more) until what it shows
    has happened: the story is the same on a loaded machine, only slower."""
    limit = seconds + PHASE_LIMIT
    await warm_up(tally, limit)
    steady_ok = await steady(tally, seconds, limit)
    procs.kill("plain-inventory-2")
    print("\n>>> SIGKILL inventory-2's app; its sidecar stays published\n", flush=True)
    down_ok = await down(tally, web_admin, seconds, limit)
    await procs.plain_app("inventory-2", info["inventory_ports"][2])
    print("\n>>> inventory-2's app is back; it returns once its ejection ends\n", flush=True)

    async def back() -> bool:
        return "inventory-2" in tally.phase_instances(INVENTORY)

    recovered = await tally.show_until("recovery", seconds, back, limit + EJECTION_TIME)
    print(
        f"\nsteady ok: {steady_ok}   ejection seen, no failed calls: {down_ok}"
        f"   recovered: {recovered}"
    )
    return steady_ok and down_ok and recovered


async def steady(tally: Tally, seconds: float, limit: float) -> bool:
    both = {"inventory-1", "inventory-2"}

    async def every_instance() -> bool:
        return tally.instances(INVENTORY) == both and tally.pairs_reached() == len(PAIRS)

    title = "steady: every caller reaches every service"
    await tally.show_until(title, seconds, every_instance, limit)
    return tally.phase_errors() == 0 and tally.instances(INVENTORY) == both


async def down(tally: Tally, web_admin: str, seconds: float, limit: float) -> bool:
    seen: dict[str, str] = {}

    async def ejected() -> bool:
        state = await ejection_state(web_admin)
        if "ejected" in state.values() and not seen:
            seen.update(state)  # the first look that shows it: it ends after EJECTION_TIME
        return bool(seen)

    title = "inventory-2 down: retried elsewhere, then ejected"
    await tally.show_until(title, seconds, ejected, limit)
    shown = seen or await ejection_state(web_admin)
    print(f"    web sidecar /clusters says inventory endpoints: {shown}")
    return "ejected" in seen.values() and tally.phase_errors() == 0


async def wait_synced(control: DemoControl, limit: float) -> None:
    """Until every data plane reporting to the control plane has acknowledged its rules
    (each one's session pushes and acks on its own schedule), or `limit` seconds."""
    with anyio.move_on_after(limit):
        while True:
            reporting, synced = await control.sync_counts()
            if reporting and synced == reporting:
                return
            await anyio.sleep(0.2)  # another process's state: polled with a deadline


async def warm_up(tally: Tally, limit: float) -> None:
    """Until every caller has reached every service once (each process discovers the others
    through the registry's polls): calls failing before then are start-up, not a phase's."""
    with anyio.move_on_after(limit):
        await tally.wait_reached(len(PAIRS))


async def ejection_state(admin: str) -> dict[str, str]:
    async with httpx.AsyncClient() as client:
        clusters = (await client.get(f"http://{admin}/clusters")).json()["clusters"]
    inv: dict[str, Any] = next(
        (c for c in clusters if c["service"] == INVENTORY), {"endpoints": []}
    )
    return {e["address"]: e["health"] for e in inv["endpoints"]}


def print_admin(procs: Procs) -> None:
    print("\nadmin endpoints (try /ready /stats /stats/prometheus /clusters /config_dump):")
    for name, ready in sorted(procs.sidecars().items()):
        print(f"  {name:<14} http://{ready['admin']}/clusters")


async def run_until_signal(keep_running: bool, seconds: float) -> int:
    """The demo, ended early by SIGTERM or SIGINT as cleanly as by its own end."""
    codes: list[int] = []
    async with anyio.create_task_group() as tg:
        await tg.start(_stop_on_signal, tg.cancel_scope, codes)
        codes.append(await run_demo(keep_running, seconds))
        tg.cancel_scope.cancel()
    return codes[0]


async def _stop_on_signal(
    scope: anyio.CancelScope,
    codes: list[int],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    # Handled as a cancellation, so every `async with` owner unwinds: Procs stops the
    # children, the temporary directory is removed. Python's default would skip both on
    # SIGTERM, and leave SIGINT's KeyboardInterrupt to land anywhere.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            print(
                f"\n{signal.Signals(signum).name}: stopping the demo", file=sys.stderr, flush=True
            )
            codes.append(128 + signum)
            scope.cancel()
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sofamesh.demo", description=__doc__.split("\n")[0])
    p.add_argument("--keep-running", action="store_true", help="stay up after the phases")
    p.add_argument("--phase-seconds", type=float, default=4.0)
    args = p.parse_args(argv)
    return anyio.run(run_until_signal, args.keep_running, args.phase_seconds)


if __name__ == "__main__":
    sys.exit(main())
