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

Arguments are Java-typed (`methodArgSigs`): java_types.py makes Python values travel as
the declared Java types (`coerce`) and guesses a type when none was declared (`signature_of`).

This module is sans-IO: bytes in, values out.
"""

from __future__ import annotations

from typing import Any

import attrs

from sofamesh.codecs.hessian2 import (
    DEFAULT_LIMITS,
    ClassRegistry,
    Decoder,
    Encoder,
    Hessian2Error,
    Hessian2Limits,
    JavaException,
    TypedList,
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
