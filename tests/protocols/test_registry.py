"""The protocol registry: the one list of names, lazy imports, the wiring, the decisions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sofamesh import protocols
from sofamesh.clock import MonotonicClock
from sofamesh.codecs.grpc_heads import read_request
from sofamesh.config.model import MeshConfig, PolicyConfig
from sofamesh.config.structure import ConfigError, structure
from sofamesh.protocols.grpc.support import GrpcSupport, is_grpc
from sofamesh.protocols.h2.support import H2Support


def test_the_names_are_the_registrations() -> None:
    assert protocols.protocol_names() == ("http", "h2", "grpc", "bolt", "dubbo")


@pytest.mark.parametrize(
    "module",
    [
        "sofamesh.protocols",
        "sofamesh.config.model",
        "sofamesh.upstream.health",
        "sofamesh.protocols.grpc.support",
    ],
)
def test_no_import_cycle_whichever_module_comes_first(module: str) -> None:
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)


def test_an_unknown_listener_protocol_is_a_config_error_with_its_path() -> None:
    data = {"app": "a", "inbound": [{"protocol": "thrift", "listen": "127.0.0.1:0"}]}
    with pytest.raises(ConfigError) as err:
        structure(MeshConfig, data)
    assert err.value.problems == [
        "inbound[0].protocol: expected one of ['http', 'h2', 'grpc', 'bolt', 'dubbo'], got 'thrift'"
    ]


def test_grpc_is_wired_onto_h2() -> None:
    built = protocols.make_protocols(PolicyConfig(), MonotonicClock())
    assert list(built) == ["http", "h2", "grpc", "bolt", "dubbo"]
    h2, grpc = built["h2"], built["grpc"]
    assert isinstance(h2, H2Support) and isinstance(grpc, GrpcSupport)
    assert grpc.pool is h2.pool  # one set of HTTP/2 connections per endpoint
    assert {name: s.name for name, s in built.items()} == {n: n for n in built}


def test_the_protocol_decisions() -> None:
    assert protocols.gateway_codes("http") == frozenset({502, 503, 504})
    assert protocols.gateway_codes("h2") == frozenset({502, 503, 504})
    assert protocols.gateway_codes("grpc") == frozenset({14})
    assert protocols.gateway_codes("bolt") == frozenset({0x0004})
    assert protocols.gateway_codes("dubbo") == frozenset({60, 100})
    assert protocols.gateway_codes("thrift") == frozenset()
    assert protocols.callable_protocols() == frozenset({"http", "h2", "grpc", "bolt", "dubbo"})


@pytest.mark.parametrize(
    ("ctype", "grpc"),
    [
        (b"application/grpc", True),
        (b"application/grpc+proto", True),
        (b"application/grpc-web", False),
        (b"application/json", False),
    ],
)
def test_grpc_streams_are_told_by_content_type(ctype: bytes, grpc: bool) -> None:
    assert is_grpc([(b":path", b"/a.B/C"), (b"content-type", ctype)]) is grpc
    assert not is_grpc([(b":path", b"/a.B/C")])


def test_the_last_content_type_tells_a_grpc_stream_as_read_request_does() -> None:
    grpc, json = (b"content-type", b"application/grpc"), (b"content-type", b"application/json")
    for fields in ([grpc, json], [json, grpc], [grpc, (b"te", b"trailers")]):
        head = [(b":path", b"/a.B/C"), *fields]
        assert is_grpc(head) is read_request(head).is_grpc
    assert is_grpc([(b":path", b"/a.B/C"), json, grpc, (b"te", b"trailers")])
    assert not is_grpc([(b":path", b"/a.B/C"), grpc, json])
