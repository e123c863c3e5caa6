"""Real etcd and ZooKeeper servers for the registry tests, on 127.0.0.1 free ports.

Each server runs in the foreground as a child process with its data in a temp dir;
`stop()` kills it (SIGKILL by default, an outage as abrupt as a crashed host) and
`start()` brings it back on the same port with the same data, so sessions,
leases and keys survive as they would after a real restart.

The command lines follow /work/shared/peers/infra/start-etcd.sh and
start-zookeeper.sh, copied here so the tests depend on nothing outside the repo:

- etcd 3.4 (Debian etcd-server), with a 10 ms heartbeat so the minimum lease TTL
  is 1 s (etcd's floor is 1.5 election timeouts, rounded up to whole seconds);
- ZooKeeper 3.8 (Debian zookeeper) started with `java` directly, with the
  classpath fix (a logging binding) from start-zookeeper.sh and a 500 ms tick so
  sessions may time out after 1 s.

Also `CuttableProxy`: a TCP forwarder the tests put between a client and a server
to break connections on purpose (`cut()`), leaving the server running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.abc
import pytest

T = TypeVar("T")

ZK_CLASSPATH = ":".join(
    [
        "/etc/zookeeper/conf",
        "/usr/share/java/zookeeper.jar",
        "/usr/share/java/slf4j-log4j12.jar",
        "/usr/share/java/log4j-1.2.jar",
    ]
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One server child process that can be stopped and started again in place."""

    name = "server"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = root / f"{self.name}.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        assert not self.running, f"{self.name} already running"
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self._log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout}s")
            time.sleep(0.05)  # polling a child process, not synchronising a test

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc = None

    async def start_async(self) -> None:
        await anyio.to_thread.run_sync(self.start)

    async def stop_async(self) -> None:
        await anyio.to_thread.run_sync(self.stop)


class EtcdServer(ServerProcess):
    name = "etcd"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.peer_port = free_port()

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        c, p = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{self.peer_port}"
        return [
            "etcd",
            "--name",
            "sofamesh-test",
            "--data-dir",
            str(self.root / "data"),
            "--listen-client-urls",
            c,
            "--advertise-client-urls",
            c,
            "--listen-peer-urls",
            p,
            "--initial-advertise-peer-urls",
            p,
            "--initial-cluster",
            f"sofamesh-test={p}",
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "sofamesh-test",
            "--log-level",
            "warn",
            "--logger",
            "zap",
            "--heartbeat-interval",
            "10",
            "--election-timeout",
            "100",
        ]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False


class ZooKeeperServer(ServerProcess):
    name = "zookeeper"

    def __init__(self, root: Path, *, force_sync: bool = False) -> None:
        super().__init__(root)
        self.force_sync = force_sync  # benchmarks: fsync every write, as production does

    @property
    def url(self) -> str:
        return f"zookeeper://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        data, logs = self.root / "data", self.root / "logs"
        data.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        cfg = self.root / "zoo.cfg"
        cfg.write_text(
            f"tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\nmaxClientCnxns=0\n4lw.commands.whitelist=*\n"
            "admin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n"
            f"forceSync={'yes' if self.force_sync else 'no'}\n"  # tests need no durability
        )
        return [
            "java",
            "-cp",
            ZK_CLASSPATH,
            "-Dzookeeper.root.logger=WARN,CONSOLE",
            f"-Dzookeeper.log.dir={logs}",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(cfg),
        ]

    def ready(self) -> bool:
        # `ruok` answers before the server serves; `srvr` names the mode only once it does.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"srvr")
                reply = b""
                while chunk := s.recv(4096):
                    reply += chunk
                return b"Mode: standalone" in reply
        except OSError:
            return False


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd per test module, for tests that leave it running."""
    with running(EtcdServer(tmp_path_factory.mktemp("etcd"))) as server:
        assert isinstance(server, EtcdServer)
        yield server


@pytest.fixture(scope="module")
def zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """One ZooKeeper per test module, for tests that leave it running."""
    with running(ZooKeeperServer(tmp_path_factory.mktemp("zk"))) as server:
        assert isinstance(server, ZooKeeperServer)
        yield server


class CuttableProxy:
    """Forwards 127.0.0.1:`port` to `target`; `cut()` breaks every open connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self.refusing = False  # while True, new connections are closed at once
        self._conns: set[anyio.abc.SocketStream] = set()
        self._tg: anyio.abc.TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[CuttableProxy]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(listener.serve, self._handle)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        if self.refusing:
            await client.aclose()
            return
        try:
            upstream = await anyio.connect_tcp("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()
            return
        self._conns |= {client, upstream}
        async with client, upstream, anyio.create_task_group() as tg:
            tg.start_soon(self._pump, client, upstream, tg.cancel_scope)
            tg.start_soon(self._pump, upstream, client, tg.cancel_scope)
        self._conns -= {client, upstream}

    @staticmethod
    async def _pump(
        src: anyio.abc.SocketStream, dst: anyio.abc.SocketStream, scope: anyio.CancelScope
    ) -> None:
        with contextlib.suppress(
            anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
        ):
            async for chunk in src:
                await dst.send(chunk)
        scope.cancel()

    async def cut(self) -> None:
        """Reset every connection now open (clients see a broken stream and reconnect)."""
        self.cuts += 1
        for conn in list(self._conns):
            await conn.aclose()


async def next_value(values: AsyncIterator[T], timeout: float = 5.0) -> T:
    """The next value of a watch, or fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        return await values.__anext__()


async def wait_for(
    values: AsyncIterator[T],
    wanted: Callable[[T], bool],
    timeout: float = 10.0,
) -> T:
    """Skip values until one satisfies `wanted`; fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        async for value in values:
            if wanted(value):
                return value
    raise AssertionError("the watch ended")


PROVIDER_SCRIPT = """
import sys, anyio
from sofamesh.endpoint import Endpoint
from sofamesh.registry import open_registry
async def main():
    async with open_registry(sys.argv[1]) as reg:
        await reg.publish(Endpoint(sys.argv[2], "127.0.0.1", int(sys.argv[3])))
        print("up", flush=True)
        await anyio.sleep_forever()
anyio.run(main)
"""


@contextlib.contextmanager
def provider_process(url: str, service: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that publishes one endpoint on `url` and waits to be killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PROVIDER_SCRIPT, url, service, str(port)], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"up", line
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
