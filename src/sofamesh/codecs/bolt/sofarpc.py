"""SOFARPC messages over Hessian 2: what a Bolt frame's body holds when its codec byte is 1.

A request body is one Hessian stream: the `SofaRequest`, then each argument as a further
value (SOFARPC `SofaRpcSerialization.encodeRequest`; frames.txt section 2)::

    C "com.alipay.sofa.rpc.core.request.SofaRequest" [5 fields]   class definition
    O #0  methodName  methodArgSigs  targetServiceUniqueName  targetAppName  requestProps
    arg0  arg1  ...                                               one value per signature

A response body is one `SofaResponse` (isError, errorMsg, appResponse, responseProps).
When the response status is not SUCCESS the body is instead an `RpcServerException`
(`detailMessage`, `stackTrace`, `cause`), which sofa-bolt clients deserialize as the
cause of the failure (sofa-bolt `RpcResponseResolver`, sofa-bolt-node `rpc_res_cmd.js`).

Arguments are Java-typed (`methodArgSigs`): `coerce(value, sig)` makes a Python value
travel as the declared Java type, `signature_of(value)` guesses a type when none was
declared (see docs/protocols/bolt.md, "Python types meet Java signatures").

This module is sans-IO: bytes in, values out.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from sofamesh.codecs.hessian2 import (
    DEFAULT_LIMITS,
    Byte,
    Char,
    ClassRegistry,
    Decoder,
    Double,
    Encoder,
    Float,
    Hessian2Error,
    Hessian2Limits,
    Int,
    JavaEnum,
    JavaException,
    JavaObject,
    Long,
    Short,
    TypedList,
    TypedMap,
)

SOFA_REQUEST = "com.alipay.sofa.rpc.core.request.SofaRequest"
SOFA_RESPONSE = "com.alipay.sofa.rpc.core.response.SofaResponse"
RPC_SERVER_EXCEPTION = "com.alipay.remoting.rpc.exception.RpcServerException"
STACK_TRACE_ARRAY = "[java.lang.StackTraceElement"


@attrs.define
class SofaRequest:
    """`com.alipay.sofa.rpc.core.request.SofaRequest`, fields in sofa-rpc-node's wire order.

    `targetServiceUniqueName` is `interface:version[:uniqueId]`; `methodArgSigs` the Java
    class names of the parameters (`int`, `java.lang.String`, `[I` ...), which Java uses
    to find the overload; `requestProps` carries the trace context (`rpc_trace_context`).
    """

    methodName: str | None = None
    methodArgSigs: list[str] | None = None
    targetServiceUniqueName: str | None = None
    targetAppName: str | None = None
    requestProps: dict[str, Any] | None = None


@attrs.define
class SofaResponse:
    """`com.alipay.sofa.rpc.core.response.SofaResponse`.

    SOFARPC reports a framework error (no such method, ...) as `isError` with `errorMsg`,
    and a business exception as an `appResponse` that is a Throwable.
    """

    isError: bool = False
    errorMsg: str | None = None
    appResponse: Any = None
    responseProps: dict[str, str] | None = None


def sofa_classes(extra: ClassRegistry | None = None) -> ClassRegistry:
    """A registry binding the SOFARPC classes, plus the application's own classes."""
    registry = ClassRegistry()
    registry.register(SOFA_REQUEST, SofaRequest)
    registry.register(SOFA_RESPONSE, SofaResponse)
    return ClassRegistry([*registry.bindings(), *(extra.bindings() if extra else ())])


SOFA_CLASSES = sofa_classes()


class SofaCodecError(ValueError):
    """A body that is not the SOFARPC message it should be."""


# -- requests ------------------------------------------------------------------------------


def encode_request(
    request: SofaRequest, args: list[Any] | tuple[Any, ...], registry: ClassRegistry = SOFA_CLASSES
) -> bytes:
    """The request body: `request`, then every argument, in one Hessian stream.

    Java reads the signatures as `String[]`, which it writes as `[string`;
    sofa-rpc-node writes `[java.lang.String`. Both are read back the same.
    """
    sigs = request.methodArgSigs or []
    if len(sigs) != len(args):
        raise SofaCodecError(f"{len(args)} arguments for {len(sigs)} signatures")
    wire = attrs.evolve(request, methodArgSigs=TypedList("[string", sigs))
    encoder = Encoder(registry=registry)
    return b"".join([encoder.encode(wire), *(encoder.encode(a) for a in args)])


def decode_request(
    body: bytes, registry: ClassRegistry = SOFA_CLASSES, limits: Hessian2Limits = DEFAULT_LIMITS
) -> tuple[SofaRequest, list[Any]]:
    """The `SofaRequest` and its arguments (one per signature); trailing bytes are an error."""
    try:
        decoder = Decoder(body, registry=registry, limits=limits)
        request = decoder.read()
        problem = _malformed(request)
        if problem:
            raise SofaCodecError(problem)
        args = [decoder.read() for _ in request.methodArgSigs or ()]
        if not decoder.at_end:
            raise SofaCodecError(f"trailing bytes after {len(args)} arguments")
    except (Hessian2Error, RecursionError) as exc:
        raise SofaCodecError(f"cannot decode the SOFARPC request: {exc}") from exc
    request.methodArgSigs = list(request.methodArgSigs or ())
    return request, args


def _malformed(request: Any) -> str:
    """What is wrong with a decoded `SofaRequest`, or "" (fields come from the peer)."""
    if not isinstance(request, SofaRequest):
        return f"the body starts with {type(request).__name__}, not a SofaRequest"
    sigs = request.methodArgSigs
    if sigs is not None and not (isinstance(sigs, list) and all(isinstance(s, str) for s in sigs)):
        return "methodArgSigs is not a list of strings"
    for name, kind in _FIELD_KINDS:  # the declared types mean nothing to a peer's bytes
        if not isinstance(getattr(request, name), kind | None):
            return f"{name} is not a {kind.__name__}"
    return ""


_FIELD_KINDS: tuple[tuple[str, type], ...] = (
    ("methodName", str), ("targetServiceUniqueName", str), ("targetAppName", str),
    ("requestProps", dict),
)  # fmt: skip


# The head a proxy may read to learn a request's names: the `SofaRequest` must fit in the
# body's first PEEK_PREFIX bytes (its five fields and a trace context take a few hundred)
# under limits small enough that no input costs more than a few ms to reject. A legal
# body may otherwise hold millions of class definitions before its `SofaRequest`.
PEEK_PREFIX = 16 << 10
PEEK_LIMITS = Hessian2Limits(
    max_size=PEEK_PREFIX, max_depth=8, max_string=4096, max_binary=1024, max_items=256,
    max_objects=64,
)  # fmt: skip


class HeadUnreadable(SofaCodecError):
    """A Hessian 2 body whose `SofaRequest` head cannot be read within the peek's bounds."""


def peek_request(
    body: bytes, limits: Hessian2Limits = PEEK_LIMITS, prefix: int = PEEK_PREFIX
) -> SofaRequest | None:
    """The `SofaRequest` at the start of `body` without its arguments, or None.

    For a proxy that needs the method or service of a peer that did not put them in the
    header map. Only the first `prefix` bytes are read, under `limits`. A body in another
    form (the older Hessian dialect, protobuf) or whose first value is no `SofaRequest`
    gives None: the proxy still forwards it untouched. A Hessian 2 body (one that opens
    with a class definition, as every Hessian 2 `SofaRequest` must) whose head does not
    decode within those bounds raises `HeadUnreadable`.
    """
    try:
        request = Decoder(body[:prefix], registry=SOFA_CLASSES, limits=limits).read()
    except (Hessian2Error, RecursionError) as exc:
        if body[:1] == b"C":
            raise HeadUnreadable(f"the SofaRequest head is unreadable: {exc}") from None
        return None
    return None if _malformed(request) else request


# -- responses -----------------------------------------------------------------------------


def encode_response(
    value: Any,
    registry: ClassRegistry = SOFA_CLASSES,
    *,
    error: str | None = None,
    props: dict[str, str] | None = None,
) -> bytes:
    """A SUCCESS body: `value` as appResponse, or `error` as SOFARPC's errorMsg."""
    response = SofaResponse(error is not None, error, None if error is not None else value, props)
    return Encoder(registry=registry).encode(response)


def decode_response(
    body: bytes, registry: ClassRegistry = SOFA_CLASSES, limits: Hessian2Limits = DEFAULT_LIMITS
) -> SofaResponse:
    """The `SofaResponse` of a SUCCESS frame."""
    try:
        decoder = Decoder(body, registry=registry, limits=limits)
        response = decoder.read()
    except Hessian2Error as exc:
        raise SofaCodecError(f"cannot decode the SOFARPC response: {exc}") from exc
    if not isinstance(response, SofaResponse):
        raise SofaCodecError(f"the body is {type(response).__name__}, not a SofaResponse")
    return response


def server_exception(message: str) -> bytes:
    """An `RpcServerException` body whose `detailMessage` is `message`.

    The form sofa-bolt-node's server writes (detailMessage, stackTrace, cause), with
    an empty stack trace: SOFARPC clients print `RpcServerException: <message>`.
    """
    exc = JavaException(
        RPC_SERVER_EXCEPTION,
        {"detailMessage": message, "stackTrace": TypedList(STACK_TRACE_ARRAY, []), "cause": None},
    )
    return Encoder().encode(exc)


def legacy_server_exception(message: str) -> bytes:
    """`server_exception` in the Hessian 2.0 *draft* that hessian.js 1.x (sofa-bolt-node's
    default dialect) writes and reads: `O` class definitions, `o` instances, `S` strings.

    For callers whose request came in that dialect (its body starts with `O`), so that a
    mesh-made error is readable to them too; the stack trace is left null.
    """
    name = RPC_SERVER_EXCEPTION.encode()
    text = message.encode("utf-16-be", "surrogatepass")[: 0xFFFF * 2].decode(
        "utf-16-be", "surrogatepass"
    )
    units = len(text.encode("utf-16-be", "surrogatepass")) // 2
    fields = b"\x0ddetailMessage\x0astackTrace\x05cause"
    return b"".join((
        b"O\xc8", bytes([len(name)]), name, b"\x93", fields,  # class definition, 3 fields
        b"o\x90",  # an instance of definition 0
        b"S", units.to_bytes(2, "big"), text.encode("utf-8", "surrogatepass"), b"NN",
    ))  # fmt: skip


def error_of(body: bytes, registry: ClassRegistry = SOFA_CLASSES) -> tuple[str, Any]:
    """(message, decoded value) of a failed response's body, whatever it holds.

    An RpcServerException or another Throwable gives its detail message; a bare string
    (some peers) itself; anything else, or an unreadable body, a description.
    """
    if not body:
        return "the server sent no detail (empty body)", None
    try:
        value = Decoder(body, registry=registry).read()
    except (Hessian2Error, RecursionError) as exc:
        return f"unreadable error body ({exc})", None
    if isinstance(value, JavaException):
        return value.message or value.class_name, value
    if isinstance(value, str):
        return value, value
    if isinstance(value, SofaResponse) and value.errorMsg:
        return value.errorMsg, value
    return f"error body of type {type(value).__name__}", value


# -- Java types of arguments ---------------------------------------------------------------
#
# Signatures are Java's `Class.getName()`, as SOFARPC writes them: `int`, `java.lang.Long`,
# `[I` (int[]), `[Ljava.lang.String;` (String[]), `com.example.Person`. Hessian names
# arrays differently (`[int`, `[string`, `[com.example.Person`), hence the two tables.

_PRIMITIVES: dict[str, Callable[[Any], Any]] = {
    "int": Int, "long": Long, "short": Short, "byte": Byte, "float": Float, "double": float,
    "boolean": bool, "char": Char,
}  # fmt: skip
_BOXED = {
    "java.lang.Integer": "int", "java.lang.Long": "long", "java.lang.Short": "short",
    "java.lang.Byte": "byte", "java.lang.Float": "float", "java.lang.Double": "double",
    "java.lang.Boolean": "boolean", "java.lang.Character": "char",
}  # fmt: skip
_ARRAY_CODES = {
    "I": "int", "J": "long", "S": "short", "B": "byte", "F": "float", "D": "double",
    "Z": "boolean", "C": "char",
}  # fmt: skip
_HESSIAN_NAMES = {"java.lang.String": "string", "java.lang.Object": "object"}
_PLAIN_LISTS = frozenset({"java.util.List", "java.util.ArrayList", "java.util.Collection"})
_PLAIN_MAPS = frozenset({"java.util.Map", "java.util.HashMap"})
_TYPED_COLLECTIONS = {"java.util.Set": "java.util.HashSet"}
_ANY = frozenset({"java.lang.Object", "java.io.Serializable"})


def coerce(value: Any, sig: str) -> Any:
    """`value` made to travel as the Java type `sig`; TypeError if it cannot be one.

    Python's `int` becomes `int`/`long`/`short`/`byte` as declared, `float` becomes
    `float`/`double`, lists become typed arrays (`[I` -> `[int`), and a `dict` passed for
    a class becomes an object of that class (like sofa-rpc-node's `{$class, $}`).
    """
    if sig in _BOXED:
        return None if value is None else _scalar(value, _BOXED[sig], sig)
    if sig in _PRIMITIVES:
        if value is None:
            raise TypeError(f"a Java {sig} cannot be null")
        return _scalar(value, sig, sig)
    if value is None or sig in _ANY:
        return value
    if sig == "java.lang.String":
        return _checked(value, str, sig)
    if sig.startswith("["):
        return _array(value, sig)
    if sig in _PLAIN_LISTS:
        return _checked(value, (list, tuple, set, frozenset), sig)
    if sig in _PLAIN_MAPS:
        return _checked(value, dict, sig)
    typed = _TYPED_COLLECTIONS.get(sig, sig)
    if isinstance(value, list | tuple | set | frozenset) and not isinstance(value, TypedList):
        return TypedList(typed, value)  # java.util.LinkedList, HashSet ...
    if type(value) is dict:
        if sig.startswith("java.util.") and sig.endswith("Map"):
            return TypedMap(sig, value)
        return JavaObject(sig, value)
    return value


def _checked(value: Any, kinds: type | tuple[type, ...], sig: str) -> Any:
    if isinstance(value, kinds):
        return value
    raise TypeError(f"cannot pass {type(value).__name__} {value!r:.60} as a Java {sig}")


def _scalar(value: Any, prim: str, sig: str) -> Any:
    if prim == "boolean":
        return _checked(value, bool, sig)
    if isinstance(value, bool):
        raise TypeError(f"cannot pass bool {value!r} as a Java {sig}")
    if prim == "char":
        _checked(value, str, sig)
    elif prim in ("float", "double"):
        _checked(value, (int, float), sig)
    else:
        _checked(value, int, sig)
    try:
        return _PRIMITIVES[prim](value)
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"{value!r:.60} is not a Java {sig}: {exc}") from None


def _array(value: Any, sig: str) -> Any:
    if sig == "[B":  # byte[] is Hessian binary
        return bytes(_checked(value, (bytes, bytearray, memoryview, list, tuple), sig))
    if sig == "[C":  # char[] is written as a string
        return _checked(value, str, sig)
    component = _component(sig[1:])
    items = _checked(value, (list, tuple), sig)
    return TypedList("[" + _hessian_name(sig[1:]), [coerce(v, component) for v in items])


def _component(desc: str) -> str:
    """The Java signature of an array's component: `I` -> int, `Lx.Y;` -> x.Y, `[I` -> [I."""
    if desc in _ARRAY_CODES:
        return _ARRAY_CODES[desc]
    if desc.startswith("L") and desc.endswith(";"):
        return desc[1:-1]
    if desc.startswith("["):
        return desc
    raise TypeError(f"not a Java array signature: [{desc}")


def _hessian_name(desc: str) -> str:
    if desc.startswith("["):
        return "[" + _hessian_name(desc[1:])
    name = _component(desc)
    return _HESSIAN_NAMES.get(name, name)


def _descriptor(hessian_type: str) -> str:
    """A typed list's Java signature: `[int` -> `[I`, `[string` -> `[Ljava.lang.String;`."""
    if not hessian_type.startswith("["):
        return hessian_type
    inner = hessian_type[1:]
    if inner.startswith("["):
        return "[" + _descriptor(inner)
    codes = {name: code for code, name in _ARRAY_CODES.items()}
    if inner in codes:
        return "[" + codes[inner]
    names = {short: full for full, short in _HESSIAN_NAMES.items()}
    return f"[L{names.get(inner, inner)};"


def signature_of(value: Any, registry: ClassRegistry | None = None) -> str:
    """A Java signature for an argument nobody declared a type for.

    Scalars become primitives (`int` when it fits, else `long`; `double`; `boolean`),
    which is what Java interfaces mostly declare; declare the type when it is not.
    """
    kind = type(value)
    simple = _SIGNATURES.get(kind)
    if simple is not None:
        return simple
    if kind is int:
        return "int" if -(1 << 31) <= value < (1 << 31) else "long"
    if isinstance(value, TypedList | TypedMap):
        return _descriptor(value.java_type)
    if isinstance(value, JavaObject | JavaEnum | JavaException):
        return value.class_name
    binding = registry.by_type(kind) if registry is not None else None
    if binding is not None:
        return binding.java_name
    for kinds, sig in _FAMILIES:
        if isinstance(value, kinds):
            return sig
    return "java.lang.Object"


_SIGNATURES: dict[type, str] = {
    bool: "boolean", Int: "int", Long: "long", Short: "short", Byte: "byte", Float: "float",
    float: "double", Double: "double", Char: "char", str: "java.lang.String",
    bytes: "[B", bytearray: "[B", memoryview: "[B", type(None): "java.lang.Object",
}  # fmt: skip
_FAMILIES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    ((list, tuple), "java.util.List"),
    ((set, frozenset), "java.util.Set"),
    (dict, "java.util.Map"),
    (datetime, "java.util.Date"),
    (decimal.Decimal, "java.math.BigDecimal"),
    (str, "java.lang.String"),
    (int, "long"),
    (float, "double"),
)
