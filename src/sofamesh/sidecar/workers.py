"""A sidecar's worker processes (`workers: N`): started, fed, asked, restarted and stopped.

The main process (sidecar/supervisor.py) binds every listener; each worker gets
its own listening sockets on those ports (SO_REUSEPORT, sidecar/listener_shares.py)
over a Unix socket pair (SCM_RIGHTS, as an upgrade hands them over:
transport/handover.py) and accepts on them.

The registry is watched here, once per service for the whole sidecar, and each
snapshot goes to the workers that follow that service (sidecar/worker.py). A
worker that exits is started again (after `RESTART_PAUSE` if it died young);
stopping tells each to drain and waits for all of them.

A hung worker (stopped, stuck in a loop) is noticed two ways: it does not answer the
liveness ping sent every `PING_INTERVAL` within `worker_liveness_timeout`, or it reads
nothing while its queue fills (worker_link.py bounds it). Either way it is killed, and
started again as a worker that died is.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import attrs

from sofamesh.registry.base import Snapshot
from sofamesh.sidecar.errors import SidecarError
from sofamesh.sidecar.worker_link import Link, link_cap, snapshot_message
from sofamesh.transport.handover import Channel, HandoverError, MessageError, frame

if TYPE_CHECKING:
    from sofamesh.sidecar.supervisor import Supervisor

log = logging.getLogger("sofamesh.sidecar.workers")

START_TIMEOUT = 60.0  # seconds a worker gets to serve after it is started (loaded machines)
RESTART_PAUSE = 1.0  # seconds between restarts of a worker that keeps dying at once
STOP_GRACE = 5.0  # seconds past drain_timeout before a worker that will not exit is killed
WATCH_RETRY = 1.0  # seconds before a registry watch that failed is opened again
PING_INTERVAL = 1.0  # seconds between a worker's answer to a liveness ping and the next ping


@attrs.define(eq=False)
class WorkerProcess:
    index: int
    process: anyio.abc.Process
    link: Link
    pid: int
    exited: anyio.Event = attrs.field(factory=anyio.Event)


@attrs.define(eq=False)
class Follow:
    """One registry watch, for every worker following the service."""

    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    frame: bytes | None = None  # the last snapshot sent on, as a message
    workers: set[int] = attrs.field(factory=set)


class WorkerPool:
    def __init__(self, sidecar: Supervisor, count: int, argv: list[str]) -> None:
        self.sidecar = sidecar
        self.count = count
        self.argv = argv  # `python -m sofamesh.sidecar --worker` and the process's options
        self.cap = link_cap(sidecar.config)  # bytes in one message, each way
        self.live: dict[int, WorkerProcess] = {}
        self.restarts = [0] * count
        self.stopping = False
        self.tg: anyio.abc.TaskGroup | None = None
        self._follows: dict[str, Follow] = {}

    async def start(self) -> None:
        """Start every worker; return once all serve (SidecarError if one cannot)."""
        failed: list[SidecarError] = []
        async with anyio.create_task_group() as starting:  # side by side: start-up is slow
            for index in range(self.count):
                starting.start_soon(self._start_one, index, failed)
        if failed:
            raise failed[0]
        log.info("%d workers serving: pids %s", self.count, self.pids())

    async def _start_one(self, index: int, failed: list[SidecarError]) -> None:
        assert self.tg is not None
        try:
            await self.tg.start(self._keep, index)
        except SidecarError as exc:
            failed.append(exc)

    def running(self) -> bool:
        """Whether exited workers are started again (not once `stop` has begun)."""
        return not self.stopping

    def watched(self) -> list[str]:
        """The services watched for the workers (one registry watch each)."""
        return sorted(self._follows)

    def pids(self) -> list[int]:
        return [w.pid for _, w in sorted(self.live.items())]

    async def _keep(
        self, index: int, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        first = True
        while self.running():
            began = anyio.current_time()
            try:
                worker = await self._spawn(index)
            except (OSError, HandoverError, TimeoutError, KeyError) as exc:
                if first:
                    raise SidecarError(f"worker {index} did not start: {exc}") from None
                log.warning("worker %d did not start again (%s): retrying", index, exc)
                await anyio.sleep(RESTART_PAUSE)
                continue
            if first:
                task_status.started()
                first = False
            code = await self._serve(worker)
            if not self.running():
                return
            self.restarts[index] += 1
            log.warning(
                "worker %d (pid %d) exited with %s: starting another", index, worker.pid, code
            )
            if anyio.current_time() - began < RESTART_PAUSE:
                await anyio.sleep(RESTART_PAUSE)

    async def _spawn(self, index: int) -> WorkerProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = await anyio.open_process(
                [*self.argv, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=None, stderr=None,
            )  # fmt: skip
        finally:
            theirs.close()
        channel = Channel(await anyio.abc.UNIXSocketStream.from_socket(ours))
        try:
            await channel.send({"max_message": self.cap})  # under the hand-over's own cap
            channel.max_message = self.cap
            await channel.send(self.sidecar.hello(index), self.sidecar.listener_fds(index))
            await channel.send_frame(self.sidecar.rules_frame)
            with anyio.fail_after(START_TIMEOUT):
                ready, _ = await channel.receive()
            pid = int(ready["ready"])
        except MessageError as exc:  # a hello over the cap: the config is too large
            await channel.aclose()
            await _reap(process)
            raise HandoverError(str(exc)) from None
        except BaseException:
            await channel.aclose()
            await _reap(process)
            raise
        link = Link(channel, lambda m: self._handle(index, m), f"worker {index}")
        worker = WorkerProcess(index, process, link, pid)
        self.live[index] = worker
        return worker

    async def _serve(self, worker: WorkerProcess) -> int | None:
        """Run the worker's link until the worker exits; its exit status."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_link, worker)
                tg.start_soon(self._check_liveness, worker)
                code = await worker.process.wait()
                tg.cancel_scope.cancel()
            return code
        finally:
            self.live.pop(worker.index, None)
            for service in list(self._follows):
                self._unwatch(worker.index, service)
            with anyio.CancelScope(shield=True):
                await _reap(worker.process)
            worker.exited.set()

    async def _run_link(self, worker: WorkerProcess) -> None:
        await worker.link.run()
        if worker.link.stalled is not None:
            _kill_hung(worker, worker.link.stalled)

    async def _check_liveness(self, worker: WorkerProcess) -> None:
        timeout = self.sidecar.config.worker_liveness_timeout
        while True:
            try:
                await worker.link.ask("ping", timeout=timeout)
            except TimeoutError:
                _kill_hung(worker, f"no answer to a liveness ping in {timeout:g} s")
                return
            await anyio.sleep(PING_INTERVAL)

    async def stop(self) -> None:
        """Tell every worker to drain; wait for them (killing any still there past the drain)."""
        self.stopping = True
        workers = list(self.live.values())
        for worker in workers:
            worker.link.post({"stop": True})
        with anyio.move_on_after(self.sidecar.config.drain_timeout + STOP_GRACE):
            for worker in workers:
                await worker.exited.wait()
        for worker in workers:
            if worker.process.returncode is None:
                log.warning(
                    "worker %d (pid %d) did not drain in time: killed", worker.index, worker.pid
                )
                worker.process.kill()

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send `message` to every worker, or (over the link's cap) to none, logged."""
        try:
            data = frame(message, self.cap)
        except MessageError as exc:
            log.error("not sent to the workers (%s): %s", ", ".join(message), exc)
            return
        self.broadcast_frame(data)

    def broadcast_frame(self, data: bytes) -> None:
        for worker in list(self.live.values()):
            worker.link.post_frame(data)

    async def ask_all(self, op: str) -> list[tuple[WorkerProcess, dict[str, Any]]]:
        """Every serving worker's answer to `op`, asked side by side (a hung worker costs
        one timeout, not one each); one that does not answer is left out (logged)."""
        answers: dict[int, tuple[WorkerProcess, dict[str, Any]]] = {}

        async def ask(worker: WorkerProcess) -> None:
            try:
                reply = await worker.link.ask(op)
            except TimeoutError:
                log.warning("worker %d (pid %d) did not answer %s", worker.index, worker.pid, op)
                return
            if "error" in reply:
                log.warning("worker %d could not answer %s: %s", worker.index, op, reply["error"])
                return
            answers[worker.index] = (worker, reply)

        async with anyio.create_task_group() as tg:
            for worker in list(self.live.values()):
                tg.start_soon(ask, worker)
        return [answers[index] for index in sorted(answers)]

    # -- the worker's requests --------------------------------------------------------------

    async def _handle(self, index: int, message: dict[str, Any]) -> dict[str, Any] | None:
        if "watch" in message:
            self._watch(index, str(message["watch"]))
        elif "unwatch" in message:
            self._unwatch(index, str(message["unwatch"]))
        elif message.get("ask") == "services":
            return {"services": await self.sidecar.runtime.registry.list_services()}
        return None

    def _watch(self, index: int, service: str) -> None:
        follow = self._follows.get(service)
        if follow is None:
            assert self.tg is not None
            follow = self._follows[service] = Follow()
            self.tg.start_soon(self._follow, service, follow)
        follow.workers.add(index)
        worker = self.live.get(index)
        if follow.frame is not None and worker is not None:
            worker.link.post_frame(follow.frame)

    def _unwatch(self, index: int, service: str) -> None:
        follow = self._follows.get(service)
        if follow is None:
            return
        follow.workers.discard(index)
        if not follow.workers:
            follow.scope.cancel()
            del self._follows[service]

    async def _follow(self, service: str, follow: Follow) -> None:
        registry = self.sidecar.runtime.registry
        with follow.scope:
            while True:
                try:
                    async with registry.watch(service) as snapshots:
                        async for snap in snapshots:
                            self._send_snapshot(service, snap, follow)
                except Exception as exc:  # the backend retries inside; this is a bug's last resort
                    log.warning("watching %s for the workers failed: %s", service, exc)
                await anyio.sleep(WATCH_RETRY)

    def _send_snapshot(self, service: str, snap: Snapshot, follow: Follow) -> None:
        try:
            follow.frame = frame(snapshot_message(service, snap), self.cap)
        except MessageError as exc:  # every worker keeps the last one: they never differ
            log.error(
                "%s: a registry snapshot of %d endpoints is not sent to the workers, which "
                "keep the last one: %s", service, len(snap), exc,
            )  # fmt: skip
            return
        for index in follow.workers:
            worker = self.live.get(index)
            if worker is not None:
                worker.link.post_frame(follow.frame)


def _kill_hung(worker: WorkerProcess, why: str) -> None:
    if worker.process.returncode is None:
        log.error("worker %d (pid %d) is hung (%s): killed", worker.index, worker.pid, why)
        worker.process.kill()  # SIGKILL: a stopped process takes no other signal


async def _reap(process: anyio.abc.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()
