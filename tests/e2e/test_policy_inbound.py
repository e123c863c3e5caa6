"""An inbound listener serves only what its sidecar publishes, in every protocol.

A real sidecar process with inbound HTTP/1.1, HTTP/2, gRPC and Bolt listeners in front of
a plain app: a caller that dials a listener directly and names a service the sidecar does
not publish gets a mesh error (`no_endpoint`), never the app; the refusals are one counter
and a log line. A listener marked `catch_all` forwards them on purpose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sofamesh.codecs.bolt import FrameDecoder, ResponseFrame, encode, request
from sofamesh.codecs.bolt.sofarpc import SofaRequest, encode_request
from sofamesh.demo.procs import Procs

pytestmark = pytest.mark.anyio

ORDERS = "com.example.Orders"
NOTHING = "com.example.Nothing"
REFUSED = "refused inbound {protocol} call to 'com.example.Nothing'"


def sidecar_config(tmp: Path, app_port: int, *more: dict[str, Any]) -> dict[str, Any]:
    upstream = f"127.0.0.1:{app_port}"

    def inbound(protocol: str, **more: Any) -> dict[str, Any]:
        return {"protocol": protocol, "listen": "127.0.0.1:0", "upstream": upstream, **more}

    return {
        "app": "orders",
        "registry": f"file://{tmp}/reg?poll=0.05",
        "admin": "127.0.0.1:0",
        "inbound": [
            inbound("http", services=[ORDERS]),
            inbound("h2", services=[f"{ORDERS}.H2"]),
            inbound("grpc", services=[f"{ORDERS}.Grpc"]),
            inbound("bolt", services=[f"{ORDERS}.Bolt:1.0"]),
            *(inbound(**m) for m in more),
        ],
        # Inbound auth lets only "shop" in: the refused calls must not reach the app anyway.
        "rules": {"auth": {"inbound": {"rules": [{"service": ORDERS, "allow": ["shop"]}]}}},
    }


async def bolt_call(port: int, service: str) -> ResponseFrame:
    body = encode_request(SofaRequest("hello", [], service, None, {}), [])
    decoder = FrameDecoder()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(encode(request(1, body, headers={"service": service})))
        with anyio.fail_after(10):
            while (frame := decoder.next_frame()) is None:
                decoder.receive_data(await stream.receive())
    assert isinstance(frame, ResponseFrame)
    return frame


def log_of(tmp: Path) -> str:
    return (tmp / "sidecar-orders.log").read_text()


async def test_unknown_services_are_refused_on_every_protocol(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("orders-1")
        bound = await procs.sidecar("orders", sidecar_config(tmp_path, app["port"]))
        http, h2 = bound["inbound[0]"], bound["inbound[1]"]
        grpc, bolt = bound["inbound[2]"], bound["inbound[3]"]
        nothing = {"x-sofamesh-service": NOTHING}
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://{http}/secret", headers=nothing)
            assert r.status_code == 503 and r.headers["x-sofamesh-error"] == "no_endpoint"
            assert "instance" not in r.text  # the app never saw it
            assert REFUSED.format(protocol="http") in log_of(tmp_path)
        async with httpx.AsyncClient(http1=False, http2=True) as c:
            r = await c.get(f"http://{h2}/secret", headers=nothing)
            assert r.status_code == 503 and r.headers["x-sofamesh-error"] == "no_endpoint"
            grpc_call = {"content-type": "application/grpc", "te": "trailers"}
            r = await c.post(f"http://{grpc}/{NOTHING}/Call", headers=grpc_call, content=bytes(5))
            assert r.headers["grpc-status"] == "14"  # UNAVAILABLE, the gRPC face of no_endpoint
        frame = await bolt_call(int(bolt.rsplit(":", 1)[1]), f"{NOTHING}:1.0")
        assert ("x-sofamesh-error", "no_endpoint") in frame.headers()
        async with httpx.AsyncClient() as c:
            stats = (await c.get(f"http://{bound['admin']}/stats")).json()
        assert stats["counters"]["inbound.unknown_service"] == 4  # http, h2, grpc, bolt
        assert not [s for s in stats["services"] if NOTHING in s["service"]]
        text = log_of(tmp_path)
        # one line for the 1st, 2nd and 4th refusal: a loop of names cannot flood the log
        assert text.count("refused inbound") == 3, text


async def test_a_catch_all_listener_forwards_unknown_services_on_purpose(
    tmp_path: Path, anyio_backend: str
) -> None:
    async with Procs(tmp_path, anyio_backend) as procs:
        app = await procs.plain_app("orders-1")
        catch_all = {"protocol": "http", "catch_all": True}
        bound = await procs.sidecar("orders", sidecar_config(tmp_path, app["port"], catch_all))
        async with httpx.AsyncClient() as c:
            r = await c.get(
                f"http://{bound['inbound[4]']}/any", headers={"x-sofamesh-service": NOTHING}
            )
            assert r.status_code == 200 and r.json()["path"] == "/any"
            stats = (await c.get(f"http://{bound['admin']}/stats")).json()
        assert "inbound.unknown_service" not in stats["counters"]


async def test_catch_all_is_validated(tmp_path: Path) -> None:
    from sofamesh.config import ConfigError, load_config

    cfg = {
        "app": "orders",
        "inbound": [{"protocol": "http", "listen": "127.0.0.1:0", "catch_all": True}],
        "outbound": [{"protocol": "http", "listen": "127.0.0.1:0", "catch_all": True}],
    }
    with pytest.raises(ConfigError) as e:
        load_config(cfg, env={})
    assert e.value.problems == [
        "inbound[0].upstream: required when catch_all is set",
        "outbound[0].catch_all: only inbound listeners forward unknown services",
    ]
