"""Start and stop the demo's processes; each reports readiness with one `READY` line."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import yaml


class Procs:
    """The `async with` owner of every process the demo starts."""

    def __init__(self, workdir: Path, backend: str = "asyncio") -> None:
        self.workdir = workdir
        self.backend = backend
        self.running: dict[str, tuple[anyio.abc.Process, dict[str, Any]]] = {}
        self._done: list[anyio.abc.Process] = []
        self._sidecars: set[str] = set()

    async def __aenter__(self) -> Procs:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Every process ever started, including one still starting when a signal or an
        # error ended the demo: none may outlive it.
        with anyio.CancelScope(shield=True):
            self.running.clear()
            for p in self._done:
                if p.returncode is None:
                    p.terminate()
            for p in self._done:
                await _reap(p)

    async def start(self, name: str, argv: list[str], timeout: float = 30.0) -> dict[str, Any]:
        log = await anyio.open_file(self.workdir / f"{name}.log", "ab")
        try:
            process = await anyio.open_process(argv, stderr=log.wrapped)
        finally:
            await log.aclose()
        self._done.append(process)
        line = await _first_line(process, timeout)
        if not line:
            process.kill()
            raise RuntimeError(f"{name} failed to start; see {self.workdir / (name + '.log')}")
        payload = line.split("READY ", 1)[1]
        ready: dict[str, Any] = json.loads(payload)
        self.running[name] = (process, ready)
        return ready

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> None:
        process, _ = self.running.pop(name)
        if process.returncode is None:
            process.send_signal(sig)

    def kill(self, name: str) -> None:
        self.stop(name, signal.SIGKILL)

    def sidecars(self) -> dict[str, dict[str, Any]]:
        return {n: r for n, (_, r) in self.running.items() if n in self._sidecars}

    async def plain_app(self, instance: str, port: int = 0) -> dict[str, Any]:
        argv = [
            sys.executable,
            "-m",
            "sofamesh.demo.apps",
            "plain",
            "--instance",
            instance,
            "--port",
            str(port),
        ]
        return await self.start(f"plain-{instance}", argv)

    async def sdk_provider(
        self,
        instance: str,
        service: str,
        registry: str,
        *,
        mode: str = "sdk",
        sidecar: str = "",
        calls: str = "",
        ejection_time: float = 0.0,
        version: str = "",
    ) -> dict[str, Any]:
        argv = [
            sys.executable,
            "-m",
            "sofamesh.demo.apps",
            "sdk-provider",
            "--instance",
            instance,
            "--service",
            service,
            "--registry",
            registry,
            "--mode",
            mode,
            "--backend",
            self.backend,
            "--app",
            instance.rsplit("-", 1)[0],
        ]
        for flag, value in (("--sidecar", sidecar), ("--calls", calls), ("--version", version)):
            if value:
                argv += [flag, value]
        if ejection_time:
            argv += ["--ejection-time", str(ejection_time)]
        return await self.start(instance, argv)

    async def sidecar(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        path = self.workdir / f"sidecar-{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [
            sys.executable,
            "-m",
            "sofamesh.sidecar",
            "-c",
            str(path),
            "--backend",
            self.backend,
        ]
        ready = await self.start(f"sidecar-{name}", argv)
        self._sidecars.add(f"sidecar-{name}")
        return ready


async def _reap(process: anyio.abc.Process, grace: float = 5.0) -> None:
    """Wait for a terminated process; SIGKILL it if it does not exit within `grace` seconds."""
    with anyio.move_on_after(grace):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()
    await process.aclose()


async def _first_line(process: anyio.abc.Process, timeout: float) -> str:
    assert process.stdout is not None
    buf = b""
    with anyio.move_on_after(timeout):
        try:
            while b"\n" not in buf:
                buf += await process.stdout.receive()
        except anyio.EndOfStream:
            return ""
    line = buf.split(b"\n", 1)[0].decode()
    return line if "READY " in line else ""
