"""The data plane's side of the control-plane session (sidecar and SDK alike).

With `control:` in its config, a mesh process runs one `ControlAgent` for its
life, owned by its task group:

1. On start, before serving, the last rules document received from the control
   plane (persisted under `SOFAMESH_STATE_DIR`) is put in force, so a restart
   while the control plane is down keeps the last good rules.
2. **Reports** every `report_interval` (the control plane says how often): who
   this process is, what it serves and calls, health, the rules version in force,
   traffic counters and rule decisions (see `sessions.py`).
3. **Watches** with a long-poll. A new rules document goes through the
   governance's own reload path (`Governance.load`, as a watched `rules_file`
   does): accepted, it is persisted (atomically) and acked; refused, the rules in
   force stay and the refusal is sent as a nack. Before it is parsed, a document
   meets this data plane's own policy (`control.refuse_kinds`,
   `control.max_document_bytes`): whatever the control plane validated, a data
   plane may keep a kind of rule (fault injection in production) or an outsized
   document out; such a document is refused the same way. An operator's request (mark
   failed / ok, drain) is carried out through the host.

Several control-plane addresses are tried in turn; the agent stays with whichever
answered last and moves on when one stops answering. While none answers the
data plane keeps serving with its rules; it converges when one returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.to_thread

from sofamesh.codecs.http1 import DEFAULT_LIMITS, Http1Limits, HttpRequest
from sofamesh.config.control_urls import ControlUrls
from sofamesh.governance.holder import Governance
from sofamesh.protocols.http.pool import Http1Pool
from sofamesh.security.enroll import STATE_DIR, state_dir_of
from sofamesh.transport.errors import TransportError
from sofamesh.transport.tls_https import https_connector

log = logging.getLogger("sofamesh.control.agent")

DEFAULT_STATE_DIR = STATE_DIR


class ControlUnavailable(Exception):
    """No control-plane address answered (or it answered with a server error)."""


class DataPlaneHost(Protocol):
    """What the agent needs of the process it runs in (`hosts.py` has the sidecar's and SDK's)."""

    app: str
    mode: str
    governance: Governance

    @property
    def ready(self) -> bool:
        """Whether listeners serve and publications are out (the first report waits for it)."""
        ...

    def describe(self) -> dict[str, Any]:
        """listeners, provides, calls, health (serving/draining/failed), started_at."""
        ...

    def traffic(self) -> list[dict[str, Any]]: ...

    async def set_healthy(self, healthy: bool) -> None: ...

    def drain(self) -> None: ...


class Enrolls(Protocol):
    """The identity from the control plane (`enroll.py`): at start, then renewed."""

    async def ensure(self) -> None: ...

    async def renew_forever(self) -> None: ...


class ControlAgent:
    def __init__(
        self,
        host: DataPlaneHost,
        urls: ControlUrls,
        token: str,
        workspace: str,
        *,
        state_dir: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.urls = urls
        self.token = token
        self.workspace = workspace
        self.env = dict(os.environ if env is None else env)
        state = state_dir or state_dir_of(self.env)
        self.state_file = Path(state) / f"{workspace}-{host.app}.rules.json"
        self.id = f"{host.app}-{os.getpid()}-{secrets.token_hex(3)}"
        self.interval = 5.0
        self.offered: str | None = None  # the last rules version offered (accepted or not)
        self.rules_error: dict[str, str] | None = None
        self.desired_seq = 0
        self._current = 0
        self._pool: Http1Pool | None = None
        self.reports = 0  # reports the control plane accepted (tests, statistics)
        self._reported = anyio.Event()
        self.enroller: Enrolls | None = None  # with tls: and no cert of its own
        self.ca_file: str | None = None  # verifies an https:// control plane (None: system CAs)

    # -- lifecycle ------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._restore()
        # The pool's body limit stays above the document cap, so an outsized document is
        # refused by the cap (and nacked) rather than lost as a failed watch.
        body = max(DEFAULT_LIMITS.max_body_size, self.urls.max_document_bytes + 64 * 1024)
        async with Http1Pool(Http1Limits(max_body_size=body), connect_timeout=2.0) as pool:
            if self.urls.secure:  # the control plane's certificate and name verified
                pool.connect = https_connector(self.ca_file)
            self._pool = pool
            if self.enroller is not None:  # an identity before serving, or no start at all
                await self.enroller.ensure()
            async with anyio.create_task_group() as tg:
                if self.enroller is not None:
                    tg.start_soon(self.enroller.renew_forever)
                tg.start_soon(self._report_forever)
                tg.start_soon(self._watch_forever)
                task_status.started()

    async def wait_reported(self) -> None:
        """Return after the next report the control plane accepts."""
        await self._reported.wait()

    # -- local persistence ------------------------------------------------------------------

    def _restore(self) -> None:
        try:
            saved = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("ignoring the saved rules in %s: %s", self.state_file, e)
            return
        refused = refusal(self.urls, saved["document"])
        if refused:  # the policy changed since it was saved: start on no pushed rules
            log.warning("not restoring the saved rules in %s: %s", self.state_file, refused)
            return
        if self.host.governance.load(saved["document"], f"control-cache:{saved['version']}"):
            self.offered = saved["version"]
            log.info("rules %s restored from %s", saved["version"], self.state_file)

    def _persist(self, version: str, document: Any) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".rules-")
        with os.fdopen(fd, "w") as f:
            json.dump({"version": version, "document": document}, f)
        os.replace(tmp, self.state_file)  # atomic: a crash leaves the old file or the new

    # -- HTTP -----------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """`method path` on the control plane that answers, failing over to the next."""
        assert self._pool is not None
        data = b"" if body is None else json.dumps(body, default=str).encode()
        addresses = self.urls.addresses
        for _ in range(len(addresses)):
            host, port = addresses[self._current]
            headers = [
                (b"host", f"{host}:{port}".encode()),
                (b"authorization", f"Bearer {self.token}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(data)),
            ]
            try:
                resp = await self._pool.send(
                    host, port, HttpRequest(method, path, headers, data), timeout
                )
            except (TransportError, TimeoutError) as e:
                log.debug("control plane %s:%d: %r", host, port, e)
            else:
                if resp.status < 500:
                    return resp.status, json.loads(resp.body or b"null")
            self._current = (self._current + 1) % len(addresses)
        raise ControlUnavailable(f"no control plane answered at {self.urls}")

    # -- reports --------------------------------------------------------------------------

    async def _report_forever(self) -> None:
        path = f"/api/v1/workspaces/{self.workspace}/dataplanes"
        # The agent starts first, to restore rules before serving; the hosts keep `ready` as a
        # plain flag.
        while not self.host.ready:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        while True:
            try:
                status, reply = await self.call("POST", path, self.report())
            except (ControlUnavailable, ValueError) as e:
                log.warning("report not delivered: %s", e)
                await anyio.sleep(min(self.interval, 1.0))
                continue
            if status == 200:
                self.interval = float(reply.get("report_interval", self.interval))
                self.reports += 1
                self._reported.set()
                self._reported = anyio.Event()
            else:
                log.warning("control plane refused a report (%d): %s", status, reply)
            await anyio.sleep(self.interval)

    def report(self) -> dict[str, Any]:
        gov = self.host.governance
        env = self.env
        injected = env.get("SOFAMESH_INJECTED_AT") or None
        return {
            **self.host.describe(),
            "id": self.id,
            "app": self.host.app,
            "mode": self.host.mode,
            "version": _version(),
            "host": env.get("HOSTNAME") or os.uname().nodename,
            "pid": os.getpid(),
            "injected_at": injected,
            "pod": _pod(env),
            "rules_version": gov.version if gov.origin.startswith("control") else None,
            "rules_error": self.rules_error,
            "traffic": self.host.traffic(),
            "decisions": decisions(gov),
        }

    # -- watch ----------------------------------------------------------------------------

    async def _watch_forever(self) -> None:
        path = f"/api/v1/workspaces/{self.workspace}/dataplanes/{self.id}/watch"
        while True:
            if not self.reports:
                await self.wait_reported()  # the control plane knows us before we watch
            query = f"?rules={self.offered or ''}&desired={self.desired_seq}&wait=25"
            try:
                status, found = await self.call("GET", path + query, timeout=35.0)
            except (ControlUnavailable, ValueError) as e:
                log.warning("watch failed: %s", e)
                await anyio.sleep(1.0)
                continue
            if status != 200:
                log.warning("control plane refused a watch (%d): %s", status, found)
                await anyio.sleep(self.interval)
                continue
            if "rules" in found:
                await self._apply(found["rules"]["version"], found["rules"]["document"])
            if "desired" in found:
                await self._obey(found["desired"])

    async def _apply(self, version: str, document: Any) -> None:
        gov = self.host.governance
        self.offered = version
        error = refusal(self.urls, document)
        if error is not None:  # fails closed: the rules in force stay
            log.warning("rules %s refused by this data plane's policy: %s", version, error)
            self.rules_error = {"version": version, "error": error}
        elif gov.load(document, f"control:{version}"):
            await anyio.to_thread.run_sync(self._persist, version, document)
            self.rules_error = None
            error = None
        else:
            error = gov.last_error or "refused"
            self.rules_error = {"version": version, "error": error}
        path = f"/api/v1/workspaces/{self.workspace}/dataplanes/{self.id}/ack"
        with contextlib.suppress(ControlUnavailable):  # the next report carries the same state
            await self.call("POST", path, {"version": version, "error": error})

    async def _obey(self, desired: dict[str, Any]) -> None:
        self.desired_seq = int(desired["seq"])
        if desired.get("drain"):
            log.warning("the control plane asked this data plane to drain")
            self.host.drain()
            return
        await self.host.set_healthy(desired.get("health", "serving") == "serving")


def refusal(policy: ControlUrls, document: Any) -> str | None:
    """Why this data plane's own policy refuses a pushed document, or None.

    The size is that of the document as compact JSON, measured before the rules
    parser reads it; a kind counts when its section holds anything.
    """
    size = len(json.dumps(document, separators=(",", ":"), default=str).encode())
    if size > policy.max_document_bytes:
        return (
            f"document of {size} bytes is larger than this data plane takes "
            f"(control.max_document_bytes: {policy.max_document_bytes})"
        )
    if not isinstance(document, dict):
        return None  # the rules parser says what is wrong with it
    kinds = [k for k in policy.refuse_kinds if document.get(k)]
    if kinds:
        return (
            f"rules of kind {', '.join(kinds)} are refused by this data plane "
            f"(control.refuse_kinds)"
        )
    return None


def decisions(gov: Governance) -> list[dict[str, Any]]:
    """Every rule's counters, one flat row per rule (kind, name, numbers)."""
    rows = []
    for kind, items in gov.snapshot().get("rules", {}).items():
        for row in items:
            name = row.get("rule") or row.get("name") or row.get("service") or ""
            numbers = {
                k: v
                for k, v in row.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            rows.append({"kind": kind, "name": str(name), **numbers})
    return rows


def _pod(env: dict[str, str]) -> dict[str, str]:
    """Pod name/namespace/node/phase as the Downward API variables give them."""
    keys = {
        "name": "POD_NAME",
        "namespace": "POD_NAMESPACE",
        "node": "NODE_NAME",
        "phase": "POD_PHASE",
    }
    return {
        k: env.get(f"SOFAMESH_{var}") or env.get(var, "")
        for k, var in keys.items()
        if env.get(f"SOFAMESH_{var}") or env.get(var)
    }


def _version() -> str:
    from sofamesh._version import __version__

    return __version__
