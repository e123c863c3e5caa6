"""Real processes for the console's browser tests, screenshots and benchmark (synchronous).

A `Stage` starts `python -m sofamesh.control`, sidecars and plain apps as
subprocesses (each reporting `... READY {json}` on its first stdout line), an
admin client of the API, and a traffic thread through a sidecar's outbound
listener; `close()` stops them all. Chromium comes from Debian (`/usr/bin/chromium`),
driven by Playwright from PyPI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

PASSWORD = "console-admin-password"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Call `check()` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)  # polling a condition of external processes, with a deadline
    raise AssertionError(f"not reached: {what}; last seen: {last!r}")


class Traffic:
    """Calls `service` through a sidecar's outbound listener at about `rate` per second."""

    def __init__(self, outbound: str, service: str, rate: float) -> None:
        self.outbound, self.service, self.rate = outbound, service, rate
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://{self.outbound}", timeout=5) as c:
            while not self._stop.is_set():
                try:
                    status = c.get("/", headers={"host": self.service}).status_code
                except httpx.HTTPError:
                    status = 0
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self._stop.wait(1.0 / self.rate)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Stage:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.traffic: list[Traffic] = []
        self.url = ""
        self.admin: httpx.Client | None = None
        self.env = {
            **os.environ,
            "SOFAMESH_ADMIN_PASSWORD": PASSWORD,
            "SOFAMESH_STATE_DIR": str(tmp / "state"),
        }

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        with open(self.tmp / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=log, env={**self.env, **(env or {})}
            )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if "READY " not in line:
            raise RuntimeError(f"{name} did not start; see {self.tmp / (name + '.log')}")
        ready: dict[str, Any] = json.loads(line.split("READY ", 1)[1])
        return ready

    def control(self, **config: Any) -> str:
        cfg = self.tmp / "control.yaml"
        settings = {
            "listen": "127.0.0.1:0",
            "store": f"sqlite://{self.tmp}/control.db",
            "registry": f"file://{self.tmp}/reg?poll=0.05",
            "report_interval": 0.5,
            **config,
        }
        cfg.write_text(yaml.safe_dump(settings))
        argv = [sys.executable, "-m", "sofamesh.control", "-c", str(cfg)]
        self.url = "http://" + self.start("control", argv)["listen"]
        token = self.login("admin", PASSWORD)
        self.admin = self.client(token)
        return self.url

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=10, headers={"authorization": f"Bearer {token}"}
        )

    def login(self, user: str, password: str) -> str:
        resp = httpx.post(f"{self.url}/api/v1/login", json={"user": user, "password": password})
        resp.raise_for_status()
        return str(resp.json()["token"])

    def call(self, method: str, path: str, body: Any = None) -> Any:
        assert self.admin is not None
        resp = self.admin.request(method, path, json=body)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json()

    def workspace(self, name: str) -> str:
        """Create workspace `name`; its dataplane token."""
        self.call("POST", "/api/v1/workspaces", {"name": name})
        return str(
            self.call("POST", f"/api/v1/workspaces/{name}/tokens", {"role": "dataplane"})["token"]
        )

    def user(self, name: str, password: str, role: str, workspace: str) -> None:
        body = {"name": name, "password": password, "role": role, "workspace": workspace}
        self.call("POST", "/api/v1/users", body)

    def plain_app(self, instance: str) -> int:
        argv = [sys.executable, "-m", "sofamesh.demo.apps", "plain", "--instance", instance]
        return int(self.start(f"plain-{instance}", argv)["port"])

    def sidecar(
        self,
        app: str,
        workspace: str,
        token: str,
        *,
        provides: str = "",
        env: dict[str, str] | None = None,
        control: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A sidecar process; `control`: its own policy on pushed rules (`refuse_kinds`, ...)."""
        cfg: dict[str, Any] = {
            "app": app,
            "registry": f"file://{self.tmp}/reg?poll=0.05",
            "admin": "127.0.0.1:0",
            "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
            "control": {"urls": self.url, **control} if control else self.url,
            "control_token": token,
            "workspace": workspace,
        }
        if provides:
            upstream = self.plain_app(app)
            cfg["inbound"] = [
                {
                    "protocol": "http",
                    "listen": "127.0.0.1:0",
                    "upstream": f"127.0.0.1:{upstream}",
                    "services": [provides],
                }
            ]
        path = self.tmp / f"sidecar-{app}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        argv = [sys.executable, "-m", "sofamesh.sidecar", "-c", str(path)]
        return self.start(f"sidecar-{app}", argv, env)

    def drive(self, outbound: str, service: str, rate: float = 20.0) -> Traffic:
        t = Traffic(outbound, service, rate)
        self.traffic.append(t)
        return t

    def close(self) -> None:
        for t in self.traffic:
            t.stop()
        if self.admin is not None:
            self.admin.close()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
