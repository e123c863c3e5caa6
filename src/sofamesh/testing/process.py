"""Child processes under test: a real sidecar, or a plain upstream app, each owned by a `Processes`.

Every process prints one `... READY {json}` line on stdout once it serves (the sidecar's bound
addresses, an upstream's port); the handle reads that line instead of guessing ports. Its stderr
goes to a log file, kept so a failing test can show it.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import httpx
import yaml

from sofamesh.config.local_api import default_token_path

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
RULES_TIMEOUT = 5.0
POLL = 0.02


class ProcessFailed(RuntimeError):
    """A child process exited, or printed no READY line in time; the message holds its log."""


class RulesRejected(ValueError):
    """The sidecar refused a rules document; the message lists every problem."""


class MeshProcess:
    """One child process: its READY payload, its log, and how to stop it."""

    def __init__(self, name: str, process: anyio.abc.Process, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self.ready: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log(self) -> str:
        """Everything the process wrote to stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the process dies at once, without draining or unpublishing."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: a sidecar drains and unpublishes, then exits."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)

    async def wait(self) -> int:
        return await self.process.wait()

    async def aclose(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after `STOP_TIMEOUT`) and reap it."""
        with anyio.CancelScope(shield=True):
            self.terminate()
            with anyio.move_on_after(STOP_TIMEOUT):
                await self.process.wait()
            if self.running:
                self.process.send_signal(signal.SIGKILL)
                await self.process.wait()
            await self.process.aclose()

    async def _read_ready(self, timeout: float) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        buf = b""
        with anyio.move_on_after(timeout):
            try:
                while b"\n" not in buf:
                    buf += await stdout.receive()
            except anyio.EndOfStream:
                pass
        line = buf.split(b"\n", 1)[0].decode(errors="replace")
        if "READY " not in line:
            self.kill()
            raise ProcessFailed(f"{self.name} did not become ready:\n{self.log()}")
        self.ready = json.loads(line.split("READY ", 1)[1])


class SidecarProcess(MeshProcess):
    """A running `python -m sofamesh.sidecar`, started by the `sofamesh_sidecar` fixture."""

    def __init__(
        self, name: str, process: anyio.abc.Process, log_path: Path, config: dict[str, Any]
    ) -> None:
        super().__init__(name, process, log_path)
        self.config = config
        self.rules_path = Path(config["rules_file"])
        self.rules: dict[str, Any] = {}
        self._changes = itertools.count(1)

    @property
    def app(self) -> str:
        return str(self.config["app"])

    @property
    def admin_url(self) -> str:
        return f"http://{self.ready['admin']}"

    @property
    def admin_address(self) -> str:
        """`host:port` of the admin API (what an SDK in sidecar mode is given as `sidecar`)."""
        return str(self.ready["admin"])

    def outbound_url(self, protocol: str = "http") -> str:
        """The URL of the first outbound listener of `protocol` (`bolt://` for Bolt)."""
        address = self._bound("outbound", protocol)
        return f"{'bolt' if protocol == 'bolt' else 'http'}://{address}"

    def outbound_address(self, protocol: str = "http") -> str:
        return self._bound("outbound", protocol)

    def inbound_address(self, i: int = 0) -> str:
        """`host:port` of inbound listener `i`, as published in the registry."""
        return str(self.ready[f"inbound[{i}]"])

    def _bound(self, side: str, protocol: str) -> str:
        for i, lc in enumerate(self.config.get(side, [])):
            if lc.get("protocol", "http") == protocol:
                return str(self.ready[f"{side}[{i}]"])
        raise LookupError(f"sidecar {self.name} has no {side} {protocol} listener")

    async def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One request to the admin API (a POST as JSON; the local API with the sidecar's token)."""
        headers = {}
        if path.startswith("/api/v1/"):
            headers["authorization"] = f"Bearer {self.local_api_token()}"
        async with httpx.AsyncClient(base_url=self.admin_url, timeout=10.0) as client:
            if method == "POST":
                return await client.request(method, path, json=body or {}, headers=headers)
            return await client.request(method, path, headers=headers)

    def local_api_token(self) -> str:
        """The token this sidecar wrote for its local API (docs/security.md)."""
        configured = self.config.get("local_api", {}).get("token_file")
        port = int(self.admin_url.rsplit(":", 1)[1])
        path = Path(configured) if configured else default_token_path(port)
        return path.read_text().strip()

    async def stats(self) -> dict[str, Any]:
        """`GET /stats`: counters, per-service and per-endpoint calls, rule decisions."""
        return dict((await self.admin("GET", "/stats")).json())

    async def clusters(self) -> list[dict[str, Any]]:
        """`GET /clusters`: each service this sidecar calls, with its endpoints' health."""
        return list((await self.admin("GET", "/clusters")).json()["clusters"])

    async def rules_status(self) -> dict[str, Any]:
        return dict((await self.admin("GET", "/config_dump")).json()["rules"])

    async def set_rules(self, document: dict[str, Any] | None) -> None:
        """Put `document` in force (None or {} clears every rule); returns once it is.

        The sidecar re-reads its rules file; this writes it atomically and waits
        until the sidecar has read the change. Raises `RulesRejected` if it refused it.
        """
        doc = dict(document or {})
        before = int((await self.rules_status())["attempts"])
        # The marker makes every write a change, so the sidecar always reads it.
        text = f"# sofamesh.testing change {next(self._changes)}\n" + yaml.safe_dump(doc)
        write_atomically(self.rules_path, text)
        status: dict[str, Any] = {}

        async def read() -> bool:
            nonlocal status
            status = await self.rules_status()
            return int(status["attempts"]) > before

        await poll_until(read, RULES_TIMEOUT)
        if status["last_error"]:
            raise RulesRejected(str(status["last_error"]))
        self.rules = doc


async def poll_until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    """Wait until `check()` is true, re-reading every `POLL` s; `TimeoutError` after `timeout`.

    For state another process holds (a sidecar's clusters, its rules), which cannot wake us.
    """
    with anyio.fail_after(timeout):
        while True:
            if await check():
                return
            await anyio.sleep(POLL)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Processes:
    """The `async with` owner of every process a test starts; stops them all on exit."""

    def __init__(self, workdir: Path, backend: str = "asyncio") -> None:
        self.workdir = workdir
        self.backend = backend
        self.started: list[MeshProcess] = []
        self._names = itertools.count(1)

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for p in self.started:
                p.terminate()  # all at once: they drain in parallel
            for p in reversed(self.started):
                await p.aclose()

    def unique(self, name: str) -> str:
        taken = {p.name for p in self.started}
        return name if name not in taken else f"{name}-{next(self._names)}"

    async def _spawn(self, name: str, argv: list[str]) -> tuple[anyio.abc.Process, Path]:
        log_path = self.workdir / f"{name}.log"
        log = await anyio.open_file(log_path, "ab")
        try:
            process = await anyio.open_process(argv, stderr=log.wrapped, env=_child_env())
        finally:
            await log.aclose()
        return process, log_path

    async def sidecar(
        self,
        config: dict[str, Any],
        rules: dict[str, Any] | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> SidecarProcess:
        """Start `python -m sofamesh.sidecar` on `config` and wait for its READY line.

        Listeners default to free loopback ports, the admin API is always on, and the
        rules come from a file of the sidecar's own (`set_rules` rewrites it).
        """
        name = self.unique(f"sidecar-{config['app']}")
        path = self.workdir / f"{name}.yaml"
        config = complete_config(config, self.workdir / f"{name}-rules.yaml")
        write_atomically(Path(config["rules_file"]), yaml.safe_dump(dict(rules or {})))
        path.write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(path)]
        process, log_path = await self._spawn(name, [*argv, "--backend", self.backend])
        handle = SidecarProcess(name, process, log_path, config)
        handle.rules = dict(rules or {})
        self.started.append(handle)
        await handle._read_ready(timeout)
        return handle

    async def upstream(
        self, name: str, argv: list[str], timeout: float = READY_TIMEOUT
    ) -> MeshProcess:
        """Start any process that prints a `READY {json}` line (a plain app)."""
        name = self.unique(name)
        process, log_path = await self._spawn(name, argv)
        handle = MeshProcess(name, process, log_path)
        self.started.append(handle)
        await handle._read_ready(timeout)
        return handle


def complete_config(config: dict[str, Any], rules_path: Path) -> dict[str, Any]:
    """`config` with what a sidecar under test needs filled in where it is missing.

    Its state stays in the test's directory (the last good rules), and SDK apps in sidecar
    mode may publish any service through its local API (the registry is the test's own),
    unless the test gives `local_api` itself.
    """
    listeners = {
        side: [_listener(lc) for lc in config.get(side, [])] for side in ("inbound", "outbound")
    }
    defaults = {
        "admin": "127.0.0.1:0",
        "rules_file": str(rules_path),
        "rules_last_good": str(rules_path.with_suffix(".last-good.json")),
        "local_api": {"services": ["*"]},
    }
    return {**defaults, **config, **listeners}


def _listener(lc: dict[str, Any]) -> dict[str, Any]:
    """A listener on a free loopback port; an upstream may be given as a started process."""
    up = lc.get("upstream")
    if isinstance(up, MeshProcess):
        lc = {**lc, "upstream": f"127.0.0.1:{up.ready['port']}"}
    return {"listen": "127.0.0.1:0", **lc}


def _child_env() -> dict[str, str]:
    """The test's environment, with its import path, so children import what the test does."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env
