"""Registering Python classes as Java classes, and the wrappers for Java's number types."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import attrs
import pytest

from sofamesh.codecs import hessian2
from sofamesh.codecs.hessian2 import (
    Byte,
    Char,
    ClassRegistry,
    Decoder,
    Encoder,
    Float,
    Hessian2EncodeError,
    Int,
    JavaObject,
    Long,
    Short,
    TypedList,
)

# A SOFARPC echo("hello") request and its response, as sofa-rpc-node (hessian.js, the
# Hessian 4.0 dialect) put them on the wire; see ../shared/peers/bolt/frames.txt.
SOFA_REQUEST = bytes.fromhex(
    "43302c636f6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175"
    "657374950a6d6574686f644e616d650d6d6574686f6441726753696773177461726765745365727669636555"
    "6e697175654e616d650d7461726765744170704e616d650c7265717565737450726f707360046563686f7111"
    "5b6a6176612e6c616e672e537472696e67106a6176612e6c616e672e537472696e671b636f6d2e6578616d70"
    "6c652e4563686f536572766963653a312e304e4807736572766963651b636f6d2e6578616d706c652e456368"
    "6f536572766963653a312e305a0568656c6c6f"
)
SOFA_RESPONSE = bytes.fromhex(
    "43302e636f6d2e616c697061792e736f66612e7270632e636f72652e726573706f6e73652e536f6661526573"
    "706f6e7365940769734572726f72086572726f724d73670b617070526573706f6e73650d726573706f6e7365"
    "50726f707360464e0568656c6c6f4e"
)

registry = ClassRegistry()


@registry.java_class("com.alipay.sofa.rpc.core.request.SofaRequest")
@attrs.define
class SofaRequest:
    methodName: str | None = None
    methodArgSigs: TypedList | None = None
    targetServiceUniqueName: str | None = None
    targetAppName: str | None = None
    requestProps: dict[str, Any] | None = None


@registry.java_class("com.alipay.sofa.rpc.core.response.SofaResponse")
@dataclasses.dataclass(frozen=True)
class SofaResponse:
    isError: bool = False
    errorMsg: str | None = None
    appResponse: Any = None
    responseProps: dict[str, str] | None = None


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"


registry.register("com.example.Color", Color)


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


registry.register("com.example.Point", Point, fields=["x", "y"])


def test_sofarpc_request_body_reads_into_registered_classes() -> None:
    dec = Decoder(SOFA_REQUEST, registry=registry)
    request = dec.read()
    assert request == SofaRequest(
        "echo", TypedList("[java.lang.String", ["java.lang.String"]),
        "com.example.EchoService:1.0", None, {"service": "com.example.EchoService:1.0"},
    )  # fmt: skip
    args = [dec.read() for _ in request.methodArgSigs]
    assert args == ["hello"] and dec.at_end
    enc = Encoder(registry=registry)
    assert enc.encode(request) + enc.encode("hello") == SOFA_REQUEST


def test_sofarpc_response_reads_into_a_frozen_dataclass() -> None:
    response = hessian2.loads(SOFA_RESPONSE, registry=registry)
    assert response == SofaResponse(False, None, "hello", None)
    assert hessian2.dumps(response, registry=registry) == SOFA_RESPONSE
    # without the registry the same bytes are a generic object, and still re-encode identically
    generic = hessian2.loads(SOFA_RESPONSE)
    assert generic == JavaObject(
        "com.alipay.sofa.rpc.core.response.SofaResponse",
        {"isError": False, "errorMsg": None, "appResponse": "hello", "responseProps": None},
    )
    assert hessian2.dumps(generic) == SOFA_RESPONSE


def test_enums_and_plain_classes() -> None:
    data = hessian2.dumps([Color.RED, Point(1, 2), Color.RED], registry=registry)
    red, point, red_again = hessian2.loads(data, registry=registry)
    assert red is Color.RED and red_again is Color.RED
    assert (type(point), point.x, point.y) == (Point, 1, 2)
    unregistered = hessian2.loads(data)
    assert unregistered[0] == hessian2.JavaEnum("com.example.Color", "RED")


def test_missing_fields_get_defaults_and_unknown_ones_are_ignored() -> None:
    data = hessian2.dumps(JavaObject("com.alipay.sofa.rpc.core.response.SofaResponse",
                                     {"appResponse": 5, "extra": "ignored"}))  # fmt: skip
    assert hessian2.loads(data, registry=registry) == SofaResponse(appResponse=5)


def test_objects_may_contain_themselves() -> None:
    request = SofaRequest("loop")
    request.requestProps = {"self": request}
    back = hessian2.loads(hessian2.dumps(request, registry=registry), registry=registry)
    assert back.requestProps["self"] is back


def test_registration_conflicts_and_mistakes_are_refused() -> None:
    reg = ClassRegistry()
    reg.register("a.P", Point, fields=["x"])
    reg.register("a.P", Point, fields=["x"])  # the same again is fine
    with pytest.raises(ValueError, match="conflicts"):
        reg.register("a.Q", Point, fields=["x"])
    with pytest.raises(TypeError, match="pass fields="):
        reg.register("a.R", object)
    with pytest.raises(ValueError, match="distinct"):
        reg.register("a.S", Point, fields=["x", "x"])
    copy = reg.copy()
    copy.register("a.C", Color)
    assert "a.C" in copy and "a.C" not in reg and len(reg) == 1
    with pytest.raises(Hessian2EncodeError, match="enum Color is not registered"):
        hessian2.dumps(Color.RED)
    with pytest.raises(Hessian2EncodeError, match="cannot encode Point"):
        hessian2.dumps(Point(1, 2))


def test_number_wrappers_check_their_java_range() -> None:
    assert repr(Long(5)) == "Long(5)" and Long(5) + 1 == 6
    for wrapper, bits in ((Int, 32), (Long, 64), (Short, 16), (Byte, 8)):
        low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        assert wrapper(low) == low and wrapper(high) == high
        with pytest.raises(OverflowError):
            wrapper(high + 1)
    assert Float(0.1) == 0.10000000149011612 and Float(1e39) == float("inf")
    assert Float(-1e39) == float("-inf")
    with pytest.raises(ValueError, match="one UTF-16 unit"):
        Char("\U0001f600")
    with pytest.raises(ValueError, match="non-empty"):
        TypedList("", [])
