"""Stubs for the gRPC tests, generated once per session into a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from grpc_support import Peers, generate


@pytest.fixture(scope="session")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    p = Peers(generate(tmp_path_factory.mktemp("grpc_stubs")))
    yield p
    p.release.set()


@pytest.fixture
def grpcio_server(peers: Peers) -> Iterator[int]:
    server, port = peers.serve()
    yield port
    peers.release.set()
    server.stop(0).wait()
    peers.release.clear()
