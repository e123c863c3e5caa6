"""Active health probes reach strict mTLS endpoints over mTLS, as calls do (HTTP and Bolt)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from tests.security.meshes import ORDERS, app_server, identities, sidecar, tls_of
from tests.security.pki import DOMAIN

from sofamesh.endpoint import Endpoint
from sofamesh.security.ca import CertificateAuthority
from sofamesh.security.identity import IdentitySource
from sofamesh.transport.tls_listener import MeshTls
from sofamesh.upstream.health import HealthCheckConfig, probe_of

pytestmark = pytest.mark.anyio
BOLT_SERVICE = "com.example.Bolt:1.0"


async def test_http_and_bolt_probes_use_mtls_where_it_is_published(tmp_path: Path) -> None:
    ids = identities(CertificateAuthority.create(DOMAIN), tmp_path, "orders", "shop")
    listen = {"listen": "127.0.0.1:0"}
    provider = {
        "app": "orders",
        "registry": f"file://{tmp_path}/reg?poll=0.05",
        "tls": tls_of(ids["orders"], "strict"),
    }
    async with app_server() as app:
        upstream = f"127.0.0.1:{app}"
        provider["inbound"] = [
            # catch_all: the probe names the address as its host, not a service
            {"protocol": "http", **listen, "upstream": upstream, "catch_all": True},
            {"protocol": "bolt", **listen, "upstream": upstream, "services": [BOLT_SERVICE]},
        ]
        async with sidecar(provider) as prov:
            assert prov.runtime.clusters is not None and prov.runtime.clusters.probe_connect
            meta = {"mtls": "strict", "spiffe": f"spiffe://{DOMAIN}/ws/prod/app/orders"}
            mtls = MeshTls("strict", IdentitySource(ids["shop"]))
            for kind, name, service in (
                ("http", "inbound[0]", ORDERS),
                ("bolt", "inbound[1]", BOLT_SERVICE),
            ):
                address = prov.bound[name]
                ep = Endpoint(service, address.host, address.port, kind, meta=meta)
                config = HealthCheckConfig(kind=kind, timeout=5.0)
                assert await probe_of(config, mtls.probe_connect)(ep), kind
                # A plaintext probe is refused by the strict listener (what probes did before).
                refused = prov.runtime.stats.counters.get("tls.plaintext_refused", 0)
                assert not await _plain(config, ep), kind
                assert prov.runtime.stats.counters["tls.plaintext_refused"] == refused + 1
            assert prov.runtime.stats.counters["tls.handshakes"] >= 2


async def _plain(config: HealthCheckConfig, ep: Endpoint) -> bool:
    try:
        return await probe_of(config)(ep)
    except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
        return False  # what the checker counts as a failed probe
