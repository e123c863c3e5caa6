"""The admission webhook over real TLS: AdmissionReviews in, JSON Patches out.

Each patch, applied with `jsonpatch`, must give exactly what `sofamesh inject`
gives for the same object and time, and a valid `kubernetes` model.
"""

from __future__ import annotations

import base64
import json
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import jsonpatch
import pytest
from tests.deploy.workloads import (
    NOW,
    SETTINGS,
    as_model,
    cronjob,
    deployment,
    pod,
    rich_spec,
    statefulset,
)

from sofamesh.config import Address
from sofamesh.deploy.inject import inject
from sofamesh.deploy.webhook import Injector, InjectorConfig
from sofamesh.security.ca import CertificateAuthority, write_identity
from sofamesh.security.spiffe import SpiffeId

pytestmark = pytest.mark.anyio


def issue(directory: Path, ca: CertificateAuthority) -> None:
    cert, key = ca.issue(SpiffeId("cluster.local", "sofamesh", "injector"), dns=("localhost",))
    write_identity(directory, cert, key, b"")


def trusting(ca: CertificateAuthority) -> ssl.SSLContext:
    from cryptography.hazmat.primitives.serialization import Encoding

    return ssl.create_default_context(cadata=ca.cert.public_bytes(Encoding.PEM).decode())


class Webhook:
    def __init__(self, injector: Injector, ca: CertificateAuthority, certs: Path) -> None:
        self.injector, self.ca, self.certs = injector, ca, certs
        assert injector.bound is not None
        self.url = f"https://localhost:{injector.bound.port}"

    async def post(self, body: bytes, *, ca: CertificateAuthority | None = None) -> httpx.Response:
        async with httpx.AsyncClient(verify=trusting(ca or self.ca)) as client:
            return await client.post(
                self.url + "/inject", content=body, headers={"content-type": "application/json"}
            )

    async def review(self, obj: dict[str, Any], **request: Any) -> dict[str, Any]:
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u-42", "operation": "CREATE", "object": obj, **request},
        }
        reply = await self.post(json.dumps(review).encode())
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["apiVersion"] == "admission.k8s.io/v1"
        assert body["kind"] == "AdmissionReview"
        assert body["response"]["uid"] == "u-42"
        response: dict[str, Any] = body["response"]
        return response


@pytest.fixture
async def webhook(tmp_path: Path) -> AsyncIterator[Webhook]:
    ca = CertificateAuthority.create("cluster.local")
    issue(tmp_path, ca)
    config = InjectorConfig(
        listen=Address("127.0.0.1", 0),
        cert=tmp_path / "cert.pem",
        key=tmp_path / "key.pem",
        settings=SETTINGS,
        max_body_bytes=256 * 1024,
    )
    async with anyio.create_task_group() as tg:
        injector = await tg.start(Injector(config, now=lambda: NOW).run)
        yield Webhook(injector, ca, tmp_path)
        injector.stop()


def patched(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(obj, ops)
    return result


def replicaset_pod() -> dict[str, Any]:
    """A pod as a Deployment's ReplicaSet creates it: no name yet, only `generateName`."""
    obj = pod(rich_spec())
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "orders-7c9f8d-"
    obj["metadata"]["labels"] = {"pod-template-hash": "7c9f8d"}
    return obj


SHAPES = {
    "pod": pod,
    "pod-rich": lambda: pod(rich_spec()),
    "replicaset-pod": replicaset_pod,
    "deployment": lambda: deployment(rich_spec()),
    "statefulset": statefulset,
    "cronjob": cronjob,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_the_patch_gives_what_inject_gives(webhook: Webhook, shape: str) -> None:
    obj = SHAPES[shape]()
    result = patched(obj, await webhook.review(obj))
    assert result == inject(obj, SETTINGS, NOW)
    as_model(result)
    # Reviewing the result again changes nothing: no patch at all.
    again = await webhook.review(result)
    assert again == {"uid": "u-42", "allowed": True}


async def test_a_replicaset_pod_is_named_after_its_generate_name(webhook: Webhook) -> None:
    result = patched(replicaset_pod(), await webhook.review(replicaset_pod()))
    proxy = result["spec"]["initContainers"][1]
    assert {"name": "SOFAMESH_APP", "value": "orders-7c9f8d"} in proxy["env"]


async def test_opted_out_other_kinds_and_other_operations_pass_unpatched(
    webhook: Webhook,
) -> None:
    allowed = {"uid": "u-42", "allowed": True}
    assert await webhook.review(pod(None, **{"sofamesh.io/inject": "false"})) == allowed
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "orders"}}
    assert await webhook.review(service) == allowed
    assert await webhook.review(pod(), operation="UPDATE") == allowed


async def test_a_bad_annotation_denies_the_pod_with_the_reason(webhook: Webhook) -> None:
    response = await webhook.review(pod(None, **{"sofamesh.io/exclude-outbound-ports": "x"}))
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "sofamesh.io/exclude-outbound-ports" in response["status"]["message"]
    assert "patch" not in response


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"kind": "Pod"}', "not an AdmissionReview"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"}', "only"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}', "uid"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",'
            b' "request": {"uid": "u", "operation": "CREATE"}}',
            "request.object",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 100"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid":'
            b' "u", "object": {"kind": "Pod", "spec": {"containers": [{"ports": {}}]}}}}',
            "ports must be a list",
        ),
    ],
)
async def test_a_malformed_review_is_a_400_and_the_server_goes_on(
    webhook: Webhook, body: bytes, reason: str
) -> None:
    reply = await webhook.post(body)
    assert reply.status_code == 400
    assert reason in reply.json()["error"]
    assert (await webhook.review(pod()))["allowed"] is True


async def test_routes_methods_and_the_body_limit(webhook: Webhook) -> None:
    async with httpx.AsyncClient(verify=trusting(webhook.ca)) as client:
        assert (await client.get(webhook.url + "/healthz")).status_code == 200
        assert (await client.get(webhook.url + "/inject")).status_code == 405
        assert (await client.get(webhook.url + "/mutate")).status_code == 404
    assert (await webhook.post(b"x" * (256 * 1024 + 1))).status_code == 413


async def test_plaintext_to_the_tls_port_is_closed_and_others_served(webhook: Webhook) -> None:
    assert webhook.injector.bound is not None
    async with await anyio.connect_tcp("127.0.0.1", webhook.injector.bound.port) as stream:
        await stream.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
            while await stream.receive():
                pass
    assert (await webhook.review(pod()))["allowed"] is True


async def test_a_renewed_certificate_is_served_without_a_restart(webhook: Webhook) -> None:
    other = CertificateAuthority.create("cluster.local")
    with pytest.raises(httpx.ConnectError):
        await webhook.post(b"{}", ca=other)
    issue(webhook.certs, other)
    assert (await webhook.post(b"{}", ca=other)).status_code == 400
    with pytest.raises(httpx.ConnectError):
        await webhook.post(b"{}")  # the old CA's certificate is gone


async def test_a_broken_certificate_file_keeps_the_last_good_one(webhook: Webhook) -> None:
    (webhook.certs / "cert.pem").write_text("not a certificate")
    assert (await webhook.post(b"{}")).status_code == 400


async def test_the_injector_command_serves_until_sigterm(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("cluster.local")
    issue(tmp_path, ca)
    argv = [sys.executable, "-m", "sofamesh.cli", "injector", "--listen", "127.0.0.1:0"]
    argv += ["--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem")]
    async with await anyio.open_process(argv) as proc:
        assert proc.stdout is not None
        line = b""
        with anyio.fail_after(30):
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive(1)
        assert line.startswith(b"SOFAMESH INJECTOR READY ")
        port = int(json.loads(line.split(b"READY ", 1)[1])["listen"].rsplit(":", 1)[1])
        async with httpx.AsyncClient(verify=trusting(ca)) as client:
            reply = await client.get(f"https://localhost:{port}/healthz")
        assert reply.status_code == 200
        proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await proc.wait() == 0


async def test_the_injector_command_refuses_a_missing_certificate(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "sofamesh.cli", "injector", "--listen", "127.0.0.1:0"]
    argv += ["--cert", str(tmp_path / "none.pem"), "--key", str(tmp_path / "none.pem")]
    proc = await anyio.run_process(argv, check=False)
    assert proc.returncode == 1
    assert b"sofamesh injector:" in proc.stderr
