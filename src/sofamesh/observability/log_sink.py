"""Where access-log lines go: stderr, stdout or a file, written off the event loop.

`write` only appends to a list: a line costs the loop no system call. One task
(owned by the sidecar's task group) writes what has gathered `flush_interval`
seconds after the first line of it, or as soon as `buffer_bytes` have gathered, in
a worker thread, so a slow disk slows the log, never the calls; with no lines it
sleeps until one comes (an idle sidecar does not wake for its log). Past four buffers waiting
(the disk is stuck) lines are dropped and counted. A file is reopened on
`reopen()` (SIGHUP) and when it was rotated away (its path names another file).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

import anyio
import anyio.abc
import anyio.to_thread

log = logging.getLogger("sofamesh.access_log")


class LogSink:
    def __init__(self, path: str, *, flush_interval: float, buffer_bytes: int) -> None:
        self.path = path
        self._interval = flush_interval
        self._limit = buffer_bytes
        self._lines: list[str] = []
        self._size = 0
        self._full = anyio.Event()
        self._pending = anyio.Event()  # set by the first line since the last flush
        self._file: IO[str] | None = None
        self._reopen = False
        self._writing = anyio.Lock()  # the timer's flush and the final one never overlap
        self.dropped = 0
        self.written = 0

    def write(self, line: str) -> None:
        if self._size > 4 * self._limit:
            self.dropped += 1
            return
        if not self._lines:
            self._pending.set()
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self._limit:
            self._full.set()

    def reopen(self) -> None:
        """Reopen the file at the next flush (after logrotate moved it: SIGHUP)."""
        self._reopen = True

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await self._pending.wait()
            with anyio.move_on_after(self._interval):
                await self._full.wait()
            await self.flush()

    async def flush(self) -> None:
        async with self._writing:
            await self._flush()

    async def _flush(self) -> None:
        if not self._lines:
            return
        chunk, count = "".join(self._lines), len(self._lines)
        self._lines, self._size = [], 0
        self._full, self._pending = anyio.Event(), anyio.Event()
        try:
            await anyio.to_thread.run_sync(self._write, chunk)
        except OSError as exc:
            self.dropped += count
            log.warning("access log %s: %d lines lost: %s", self.path, count, exc)
            return
        self.written += count

    async def aclose(self) -> None:
        """The last lines, at exit; then the file is closed."""
        with anyio.CancelScope(shield=True):
            await self.flush()
            if self._file is not None:
                await anyio.to_thread.run_sync(self._file.close)
                self._file = None

    # -- in the worker thread -------------------------------------------------------------

    def _write(self, chunk: str) -> None:
        out = self._target()
        out.write(chunk)
        out.flush()

    def _target(self) -> IO[str]:
        if self.path == "stderr":
            return sys.stderr
        if self.path == "stdout":
            return sys.stdout
        if self._file is not None and (self._reopen or self._rotated(self._file)):
            self._file.close()
            self._file = None
        if self._file is None:
            self._reopen = False
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        return self._file

    def _rotated(self, file: IO[str]) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return True
        was = os.fstat(file.fileno())
        return (now.st_dev, now.st_ino) != (was.st_dev, was.st_ino)
