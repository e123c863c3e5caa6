"""Upgrading a running sidecar in place: its listening sockets move to a new process.

MOSN's smooth upgrade and Envoy's hot restart, for one host's sidecar. The running
sidecar listens on a Unix socket (`upgrade_socket`, 0600 in a 0700 directory,
peers of another user refused by SO_PEERCRED). A new process started with
`--upgrade` (`take_over`) runs this exchange over it:

    new                                    old
    hello {pid, app}             ---->     refuse (another upgrade under way, other user,
                                           other app) or
                                 <----     listeners [{name, address, count}] + their fds
    (bind what is new, serve the inherited sockets, publish, become ready)
    ready {pid}                  ---->     stop accepting, forget its registrations
                                 <----     going {pid}
    (publish again: the entries are now the new process's alone)
    published                    ---->     drain in-flight calls, exit 0

The kernel keeps one socket per listener across both processes: connections
queued while the two overlap are accepted by one or the other, never refused.
Anything that ends the exchange before `ready` (a bad config, a port that cannot
be bound, a crash) leaves the old process serving exactly as before; both log why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from sofamesh.config import Address, MeshConfig
from sofamesh.config.model import DEFAULT_STATE
from sofamesh.sidecar.errors import SidecarError
from sofamesh.transport.handover import (
    Channel,
    HandoverError,
    listener_from_sockets,
    listening_sockets,
    peer_uid,
)

if TYPE_CHECKING:
    from sofamesh.sidecar.app import Sidecar

log = logging.getLogger("sofamesh.sidecar.upgrade")

ACCEPT_PAUSE = 0.1  # seconds before the upgrade socket accepts again after an error
HANDSHAKE_TIMEOUT = 10.0  # seconds a peer gets for each step but the new process's start-up
MAX_SOCKET_PATH = 100  # bytes; sun_path holds 108 on Linux, fewer elsewhere

Bind = Callable[[str, Address], Awaitable[MultiListener[anyio.abc.SocketStream]]]


def upgrade_socket_path(config: MeshConfig) -> Path:
    """`upgrade_socket`, else `$SOFAMESH_STATE_DIR/upgrade/<app>-<admin port>.sock` (state
    dir default /var/tmp/sofamesh/state; `<app>-<host>-<port>.sock` for an admin API off
    127.0.0.1).

    The admin address names the sidecar: two sidecars of one app on a host cannot share
    it, and the `--upgrade` of either, reading the same config, finds its own. An admin
    port of 0 names no one: such a sidecar gets `<app>.sock` (the first one started).
    """
    if config.upgrade_socket:
        return Path(config.upgrade_socket)
    admin = config.admin
    if admin is None or admin.port == 0:
        return legacy_socket_path(config)
    host = "" if admin.host == "127.0.0.1" else admin.host.replace(":", "_") + "-"
    return _state_dir() / "upgrade" / f"{config.app}-{host}{admin.port}.sock"


def legacy_socket_path(config: MeshConfig) -> Path:
    """Where sidecars before the admin-named default listened: `<app>.sock`."""
    return _state_dir() / "upgrade" / f"{config.app}.sock"


def _state_dir() -> Path:
    return Path(os.environ.get("SOFAMESH_STATE_DIR") or DEFAULT_STATE)


class ListenerSockets:
    """The sidecar's listening sockets by listener name: those handed to it, those it serves."""

    def __init__(self) -> None:
        # name -> (the addresses it answers to: as configured and as bound, its sockets)
        self.inherited: dict[str, tuple[list[str], list[socket.socket]]] = {}
        self.serving: dict[str, tuple[list[str], list[socket.socket]]] = {}
        self.token: str | None = None  # the local API's, handed over with the admin listener

    async def open(
        self, name: str, address: Address, bind: Bind
    ) -> MultiListener[anyio.abc.SocketStream]:
        """A listener for `name` on `address`: the old process's socket if it had one there,
        else freshly bound."""
        sockets = self._claim(name, str(address))
        if sockets is not None:
            listener = await listener_from_sockets(sockets)
            log.info("%s: serving the socket handed over for %s", name, address)
        else:
            listener = await bind(name, address)
        sockets = listening_sockets(listener)
        bound = [_format(s.getsockname()) for s in sockets]
        self.serving[name] = ([str(address), *bound], sockets)
        return listener

    def _claim(self, name: str, address: str) -> list[socket.socket] | None:
        # The same listener (name and configured address); else, for a fixed port, the
        # same address under another name (listeners were reordered).
        found = self.inherited.get(name)
        if found is not None and address in found[0]:
            return self.inherited.pop(name)[1]
        if address.endswith(":0"):
            return None
        for other, (addresses, _) in self.inherited.items():
            if address in addresses:
                return self.inherited.pop(other)[1]
        return None

    def close_unclaimed(self) -> None:
        """Close what the new config has no listener for (the old process closes its own)."""
        for name, (addresses, sockets) in self.inherited.items():
            log.info("%s on %s is not in this config: not serving it", name, addresses[-1])
            for sock in sockets:
                sock.close()
        self.inherited.clear()

    def offer(self) -> tuple[list[dict[str, Any]], list[int]]:
        """What the old process sends: each listener's name, address and count, and the fds."""
        listeners: list[dict[str, Any]] = []
        fds: list[int] = []
        for name, (addresses, sockets) in self.serving.items():
            live = [s for s in sockets if s.fileno() >= 0]
            listeners.append({"name": name, "addresses": addresses, "count": len(live)})
            fds.extend(s.fileno() for s in live)
        return listeners, fds


def _format(sockname: Any) -> str:
    return str(Address(sockname[0], sockname[1]))  # as the config writes addresses


def adopt(offer: list[dict[str, Any]], sockets: list[socket.socket]) -> ListenerSockets:
    """The new process's `ListenerSockets` from the old one's offer and the fds it sent."""
    adopted = ListenerSockets()
    rest = list(sockets)
    for entry in offer:
        count = int(entry["count"])
        taken, rest = rest[:count], rest[count:]
        addresses = [str(a) for a in entry["addresses"]]
        adopted.inherited[str(entry["name"])] = (addresses, taken)
    if rest:
        for sock in sockets:
            sock.close()
        raise HandoverError("more descriptors than the listeners offered")
    return adopted


class UpgradeServer:
    """The running sidecar's side: one upgrade at a time, by a process of the same user."""

    def __init__(self, sidecar: Sidecar, path: Path) -> None:
        self.sidecar = sidecar
        self.path = path
        self.finished = anyio.Event()  # the hand-over is complete: this process may exit
        self.uid = os.getuid()  # the only user whose processes may take over
        self._busy = False
        self._handed_over = False
        self._accepting = anyio.CancelScope()
        self._closed = anyio.Event()  # the upgrade socket no longer accepts
        self._inode: int | None = None

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        listener = await self._listen()
        task_status.started()
        if listener is None:
            return
        try:
            async with anyio.create_task_group() as tg:
                with self._accepting:
                    async with listener:
                        while True:
                            tg.start_soon(self._session, await _accept(listener))
                self._closed.set()
        finally:
            self._unlink_if_mine()

    async def _listen(self) -> anyio.abc.SocketListener | None:
        """The control socket, or None (logged) when it cannot be had: the sidecar serves on,
        it only cannot be upgraded in place."""
        try:
            sock = await anyio.to_thread.run_sync(self._bind)
        except OSError as exc:
            log.warning(
                "no upgrade socket at %s (%s): this sidecar cannot be upgraded in place",
                self.path,
                exc.strerror or exc,
            )
            return None
        log.info("upgrades: listening on %s", self.path)
        return await anyio.abc.SocketListener.from_socket(sock)

    def _bind(self) -> socket.socket:
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise OSError(0, f"the path is longer than {MAX_SOCKET_PATH} bytes")
        if not self.path.parent.is_dir():  # ours: only this user may look inside
            self.path.parent.mkdir(mode=0o700, parents=True)
        if _answers(self.path):
            raise OSError(0, "another sidecar listens there (set upgrade_socket)")
        self.path.unlink(missing_ok=True)  # a dead sidecar's
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Created under the umask (others cannot write, so cannot connect), then
            # narrowed to this user; SO_PEERCRED is checked on every connection anyway.
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(4)
            self._inode = self.path.stat().st_ino
        except BaseException:
            sock.close()
            raise
        return sock

    def _unlink_if_mine(self) -> None:
        # After a hand-over the new process owns the path (it binds it again).
        if self._handed_over or self._inode is None:
            return
        try:
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass

    async def _session(self, stream: anyio.abc.SocketStream) -> None:
        channel = Channel(stream)  # type: ignore[arg-type]
        try:
            await self._converse(channel)
        except (HandoverError, TimeoutError, OSError) as exc:
            if self._handed_over:  # the new process serves; we drain all the same
                log.warning("upgrade: after the hand-over: %s", exc)
            else:
                log.warning("upgrade failed (%s): this sidecar keeps serving", exc)
        except Exception:
            log.exception("upgrade failed: this sidecar keeps serving")
        finally:
            await channel.aclose()

    async def _converse(self, channel: Channel) -> None:
        uid = peer_uid(channel.stream)
        if uid != self.uid:
            log.warning(
                "upgrade refused: a process of uid %d connected (ours is %d)", uid, self.uid
            )
            return
        with anyio.fail_after(HANDSHAKE_TIMEOUT):
            hello, _ = await channel.receive()
        why = self._refusal(hello)
        if why:
            log.warning("upgrade refused: %s", why)
            await channel.send({"refused": why})
            return
        self._busy = True
        try:
            await self._hand_over(channel, hello)
        finally:
            self._busy = False

    def _refusal(self, hello: dict[str, Any]) -> str | None:
        if self._busy or self._handed_over:
            return "another upgrade of this sidecar is under way"
        app = self.sidecar.config.app
        if hello.get("app") != app:
            return f"this sidecar serves app {app!r}, not {hello.get('app')!r}"
        ours, theirs = self.sidecar.config.admin, hello.get("admin")
        named = isinstance(theirs, str) and theirs and not theirs.endswith(":0")
        if named and ours is not None and ours.port and theirs != str(ours):
            return f"this sidecar's admin API is {ours}, not {theirs}"  # another of this app
        return None

    async def _hand_over(self, channel: Channel, hello: dict[str, Any]) -> None:
        pid = hello.get("pid")
        listeners, fds = self.sidecar.sockets.offer()
        log.info("upgrade: handing %d listening sockets to pid %s", len(fds), pid)
        offer = {"listeners": listeners, "pid": os.getpid(), "token": self.sidecar.token}
        await channel.send(offer, fds)
        # The new process starts up now (config, listeners, registry): no tighter bound.
        ready, _ = await channel.receive()
        if "ready" not in ready:
            raise HandoverError(f"pid {pid} sent {sorted(ready)} instead of ready")
        self._handed_over = True
        self._accepting.cancel()
        self.sidecar.hand_over()
        await self._closed.wait()  # the new process binds the path next: ours must be shut
        log.info("upgrade: pid %s serves now; draining and exiting", pid)
        try:
            await channel.send({"going": os.getpid()})
            with anyio.fail_after(HANDSHAKE_TIMEOUT):
                await channel.receive()  # "published": its entries are its own
        finally:
            self.finished.set()


async def _accept(listener: anyio.abc.SocketListener) -> anyio.abc.SocketStream:
    """The next connection; an accept that fails (out of descriptors) is retried."""
    while True:
        try:
            return await listener.accept()
        except OSError as exc:
            log.warning("upgrade socket: accept failed: %s", exc)
            await anyio.sleep(ACCEPT_PAUSE)


def _answers(path: Path) -> bool:
    """Whether a live process accepts connections on the Unix socket `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class Takeover:
    """The new process's side, once it holds the old one's sockets (from `take_over`)."""

    def __init__(self, channel: Channel, sockets: ListenerSockets, old_pid: int) -> None:
        self.channel = channel
        self.sockets = sockets
        self.old_pid = old_pid

    async def complete(self, sidecar: Sidecar) -> None:
        """Tell the old process to go, then publish again as the entries' sole owner."""
        try:
            await self.channel.send({"ready": os.getpid()})
            with anyio.fail_after(HANDSHAKE_TIMEOUT):
                going, _ = await self.channel.receive()
            if "going" not in going:
                raise HandoverError(f"it answered {sorted(going)} to ready")
        except (HandoverError, TimeoutError, OSError) as exc:
            # We serve and told it to go: whatever it says now changes nothing.
            log.warning("upgrade: the old process did not confirm (%s); serving", exc)
        await sidecar.republish()
        with contextlib.suppress(HandoverError, OSError):
            await self.channel.send({"published": os.getpid()})
        await self.channel.aclose()
        log.info("upgrade: took over from pid %d, which drains and exits", self.old_pid)


async def take_over(config: MeshConfig) -> Takeover:
    """Connect to the running sidecar's upgrade socket and receive its listening sockets."""
    channel = Channel(await _connect(config))
    try:
        admin = str(config.admin) if config.admin is not None else ""
        await channel.send({"hello": os.getpid(), "pid": os.getpid(), "app": config.app,
                            "admin": admin})  # fmt: skip
        with anyio.fail_after(HANDSHAKE_TIMEOUT):
            offer, sockets = await channel.receive()
        if "refused" in offer:
            raise SidecarError(f"the running sidecar refused: {offer['refused']}")
        _check_admin(config, list(offer.get("listeners", [])), sockets)
        adopted = adopt(list(offer.get("listeners", [])), sockets)
        adopted.token = str(offer.get("token") or "") or None
    except BaseException:
        await channel.aclose()
        raise
    log.info("upgrade: received %d listening sockets from pid %s", len(sockets), offer.get("pid"))
    return Takeover(channel, adopted, int(offer.get("pid", 0)))


async def _connect(config: MeshConfig) -> anyio.abc.UNIXSocketStream:
    """The running sidecar's upgrade socket; one started before the admin-named default
    listens on `<app>.sock`, which is tried next (`_check_admin` then makes sure it is ours)."""
    paths = [upgrade_socket_path(config)]
    if not config.upgrade_socket and paths[0] != legacy_socket_path(config):
        paths.append(legacy_socket_path(config))
    errors = []
    for path in paths:
        try:
            return await anyio.connect_unix(path)
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
    raise SidecarError(f"no running sidecar answers on {'; '.join(errors)}")


def _check_admin(config: MeshConfig, offer: list[dict[str, Any]], fds: list[socket.socket]) -> None:
    """Refuse an offer from a sidecar whose admin API is not at our configured address: it is
    another sidecar of this app (one that predates the refusal on its own side)."""
    admin = config.admin
    if admin is None or admin.port == 0:
        return
    theirs: list[Any] = next((e["addresses"] for e in offer if e.get("name") == "admin"), [])
    if str(admin) not in [str(a) for a in theirs]:
        for sock in fds:
            sock.close()
        raise SidecarError(
            f"the sidecar that answered has its admin API at {theirs[:1]}, not {admin}: "
            "another sidecar of this app (set upgrade_socket)"
        )
