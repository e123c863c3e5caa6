"""One provider app in every shape and kind, behind one consumer test body."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

from sofamesh.testing import MeshFactory, ProviderFactory, assert_reached, wait_endpoints

pytestmark = pytest.mark.anyio

CALC = "com.example.Calculator:1.0"
ORDERS = "com.example.Orders"
ECHO = "sofamesh.test.Echo"


@pytest.mark.parametrize("shape", ["sdk", "sdk-process", "sidecar"])
async def test_a_bolt_object_in_every_shape(
    sofamesh_mesh: MeshFactory, sofamesh_provider: ProviderFactory, shape: str
) -> None:
    target = "tests.testing.apps:Calculator"  # a class: instantiated where it runs
    async with (
        sofamesh_provider(shape, target, [CALC], kind="bolt", app="calc") as provider,
        sofamesh_mesh("shop") as mesh,
    ):
        await wait_endpoints(mesh, CALC, 1)
        calc = mesh.bolt_consumer("com.example.Calculator", "1.0", methods={"add": ["int", "int"]})
        assert await calc.add(2, 40) == 42
        served_by = await calc.call("pid")
        assert (served_by == os.getpid()) == (shape == "sdk")
        await assert_reached(mesh, CALC, 2)
        if shape == "sidecar":
            assert provider.sidecar is not None
            await assert_reached(provider.sidecar, CALC, 2, direction="inbound")


async def test_only_process_shapes_can_be_killed_or_refuse_misplaced_rules(
    sofamesh_provider: ProviderFactory,
) -> None:
    async with sofamesh_provider("sdk", "tests.testing.apps:orders", [ORDERS]) as provider:
        with pytest.raises(RuntimeError, match="sdk-process"):
            provider.kill()
    with pytest.raises(ValueError, match="rules for an `sdk-process`"):
        async with sofamesh_provider(
            "sdk-process", "tests.testing.apps:orders", [ORDERS], rules={}
        ):
            pass
    with pytest.raises(ValueError, match="unknown provider shape"):
        async with sofamesh_provider("docker", "tests.testing.apps:orders", [ORDERS]):
            pass


@pytest.fixture(scope="session")
def echo_stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    """Generated once; their directory joins sys.path, which provider processes inherit."""
    from tests.protocols.grpc.grpc_support import generate

    return generate(tmp_path_factory.mktemp("testing_grpc_stubs"))


@pytest.mark.parametrize("shape", ["sdk", "sidecar"])
async def test_a_grpc_servicer_in_both_shapes(
    sofamesh_mesh: MeshFactory,
    sofamesh_provider: ProviderFactory,
    echo_stubs: dict[str, ModuleType],
    shape: str,
) -> None:
    target = "tests.testing.grpc_app:Echo"
    async with (
        sofamesh_provider(shape, target, [ECHO], kind="grpc", app="echo"),
        sofamesh_mesh("shop") as mesh,
    ):
        await wait_endpoints(mesh, ECHO, 1)
        stub = echo_stubs["echo_grpc"].EchoStub(mesh.grpc_channel())
        reply = await stub.Unary(echo_stubs["echo_pb2"].Msg(text="hi"), timeout=5)
        pid, text = reply.text.split(":")
        assert text == "hi" and (int(pid) == os.getpid()) == (shape == "sdk")
        await assert_reached(mesh, ECHO, 1)
