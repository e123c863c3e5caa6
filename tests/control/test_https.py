"""The control plane's API over HTTPS: verified by curl, the CLI and data planes; tokens beyond
loopback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.control.harness import eventually, running_control

from sofamesh.config import load_config
from sofamesh.control.enroll import IdentityUnavailable
from sofamesh.security.ca import CertificateAuthority
from sofamesh.sidecar.app import Sidecar

pytestmark = pytest.mark.anyio


async def run(*argv: str) -> tuple[int, str]:
    done = await anyio.run_process(list(argv), check=False)
    return done.returncode, done.stdout.decode() + done.stderr.decode()


async def server_files(tmp: Path) -> tuple[Path, dict[str, str]]:
    """The mesh CA in tmp/ca, and a server certificate for 127.0.0.1 made by the CLI."""
    CertificateAuthority.create("mesh.test").save(tmp / "ca")
    code, out = await run(
        sys.executable, "-m", "sofamesh.cli", "ca", "issue-server", "--ca", str(tmp / "ca"),
        "--ip", "127.0.0.1", "--dns", "localhost", "--out", str(tmp / "api"),
    )  # fmt: skip
    assert code == 0, out
    tls = {"cert": str(tmp / "api" / "cert.pem"), "key": str(tmp / "api" / "key.pem")}
    return tmp / "api" / "bundle.pem", tls


async def test_curl_and_the_cli_verify_the_api(tmp_path: Path, monkeypatch: Any) -> None:
    bundle, tls = await server_files(tmp_path)
    code, out = await run("openssl", "verify", "-CAfile", str(bundle), tls["cert"])
    assert code == 0, out
    more = {"tls": tls, "ca_dir": str(tmp_path / "ca"), "require_token": True}
    async with running_control(tmp_path, monkeypatch, cafile=str(bundle), **more) as (cp, admin):
        url = f"https://{cp.bound}"
        code, out = await run("curl", "-sS", "--cacert", str(bundle), f"{url}/ready")
        assert code == 0 and '"ready": true' in out, out
        code, out = await run("curl", "-sS", f"{url}/ready")  # the system's CAs do not know ours
        assert code == 60, out
        code, out = await run("curl", "-sS", f"http://{cp.bound}/ready")  # plaintext: closed
        assert code != 0, out
        # Tokens everywhere but the health check and the login.
        status, _ = await admin.as_(None).call("GET", "/api/openapi.json")
        assert status == 401
        spec = await admin.ok("GET", "/api/openapi.json")
        assert spec["paths"]["/api/openapi.json"]["get"]["x-sofamesh-role"] == "user"
        ctl = [sys.executable, "-m", "sofamesh.cli", "ctl", "--server", url, "-o", "json"]
        code, out = await run(*ctl, "--ca", str(bundle), "--token", admin.token or "", "workspaces")
        assert code == 0 and out.strip() == "[]", out
        code, out = await run(*ctl, "--token", admin.token or "", "workspaces")
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in out, out
        code, out = await run(*ctl, "--ca", str(tmp_path / "nope.pem"), "workspaces")
        assert code == 2 and "--ca" in out, out


async def test_loopback_keeps_its_public_routes_beyond_it_they_need_a_token(
    tmp_path: Path, monkeypatch: Any
) -> None:
    async with running_control(tmp_path, monkeypatch) as (cp, admin):
        assert not cp.config.tokens_required
        status, _ = await admin.as_(None).call("GET", "/api/openapi.json")
        assert status == 200
    from sofamesh.control.config import load_control_config

    assert load_control_config({"listen": "0.0.0.0:15080"}).tokens_required
    assert load_control_config({"listen": "[::1]:15080"}).tokens_required is False


def data_plane(tmp: Path, control: str, token: str, ca: Path) -> dict[str, Any]:
    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "control": control,
        "control_token": token,
        "control_ca": str(ca),
        "workspace": "a",
        "tls": {"mode": "strict"},
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0"}],
    }


async def test_data_planes_enroll_over_https_and_refuse_an_unknown_server(
    tmp_path: Path, monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state"))
    bundle, tls = await server_files(tmp_path)
    more = {"tls": tls, "ca_dir": str(tmp_path / "ca"), "report_interval": 0.2}
    async with running_control(tmp_path, monkeypatch, cafile=str(bundle), **more) as (cp, admin):
        await admin.ok("POST", "/api/v1/workspaces", {"name": "a"})
        token = await admin.token_for("a", "dataplane")
        good = Sidecar(load_config(data_plane(tmp_path, f"https://{cp.bound}", token, bundle)))
        async with anyio.create_task_group() as tg:
            await tg.start(good.run)

            async def reported() -> Any:
                return await admin.ok("GET", "/api/v1/workspaces/a/sidecars")

            rows = await eventually(reported, what="the data plane reported over HTTPS")
            assert rows[0]["tls"]["spiffe_id"] == "spiffe://mesh.test/ws/a/app/orders"
            ctl = [sys.executable, "-m", "sofamesh.cli", "ctl", "--server", f"https://{cp.bound}"]
            ctl += ["--ca", str(bundle), "--token", admin.token or ""]
            code, out = await run(*ctl, "sidecars", "-w", "a")
            assert code == 0, out
            header, line = out.splitlines()[:2]
            assert header.split()[-3:] == ["MTLS", "IDENTITY", "CERT"]
            assert "strict" in line and "spiffe://mesh.test/ws/a/app/orders" in line
            assert "OK until 20" in line
            code, out = await run(*ctl, "-o", "json", "tokens", "create", "-w", "a",
                                  "--role", "dataplane", "--app", "orders")  # fmt: skip
            assert code == 0 and '"apps": [' in out, out
            good.stop()
        # Another CA's bundle: the data plane does not trust this server, gets no identity.
        other = tmp_path / "other"
        CertificateAuthority.create("mesh.test").save(other)
        cfg = data_plane(tmp_path / "b", f"https://{cp.bound}", token, other / "ca.pem")
        monkeypatch.setenv("SOFAMESH_STATE_DIR", str(tmp_path / "state-b"))
        with pytest.raises(BaseException) as caught:  # a group, or the error itself
            await Sidecar(load_config(cfg)).run()
        assert "IdentityUnavailable" in repr(caught.value) or isinstance(
            caught.value, IdentityUnavailable
        )
    assert "control: refused a TLS connection from 127.0.0.1" in caplog.text
