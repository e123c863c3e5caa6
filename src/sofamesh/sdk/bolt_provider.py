"""SOFARPC over Bolt for Python apps, the provider's side: serve a Python object's methods.

Provider::

    async with mesh.serve_bolt(Echo(), "com.example.EchoService", version="1.0"):
        ...                                    # published as com.example.EchoService:1.0

`ServiceTerminal` decodes each SofaRequest at the end of the inbound chain, calls
the method (sync or async) with `current_call` set to the call it serves, and
encodes its result or its exception. The consumer's side is `sdk/bolt.py`, which
re-exports these names.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs

from sofamesh.chain import Handler
from sofamesh.codecs.bolt import Codec, RequestFrame, ResponseStatus, reply
from sofamesh.codecs.bolt.java_types import coerce
from sofamesh.codecs.bolt.sofarpc import (
    SofaCodecError,
    SofaRequest,
    decode_request,
    encode_response,
    server_exception,
    sofa_classes,
)
from sofamesh.codecs.hessian2 import ClassRegistry, Hessian2Error
from sofamesh.config import Address
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.protocols import Server

if TYPE_CHECKING:
    from sofamesh.sdk.mesh import Mesh, Provider

log = logging.getLogger("sofamesh.sdk")
_OK, _SUCCESS = Status.OK, ResponseStatus.SUCCESS  # read per call, once here


def unique_name(interface: str, version: str = "1.0", unique_id: str = "") -> str:
    """SOFARPC's service unique name, `interface:version[:uniqueId]`."""
    return f"{interface}:{version}:{unique_id}" if unique_id else f"{interface}:{version}"


@attrs.frozen
class BoltCall:
    """The call a provider method is serving: `current_call.get()` inside the method."""

    service: str
    method: str
    signatures: tuple[str, ...]  # the Java types the caller declared
    caller: str
    trace_id: str
    deadline: float | None  # on the mesh clock (`mesh.runtime.clock`); None: no timeout
    headers: Headers
    props: dict[str, Any]


current_call: contextvars.ContextVar[BoltCall] = contextvars.ContextVar("sofamesh_bolt_call")


class ServiceTerminal:
    """A Python provider's inbound terminal: decode the SofaRequest, call the method (sync
    or async; sync ones run on the event loop), encode its result or its exception."""

    def __init__(
        self, obj: object, service: str, registry: ClassRegistry, returns: Mapping[str, str]
    ) -> None:
        self._methods: dict[str, Callable[..., Any]] = {
            name: getattr(obj, name)
            for name in dir(obj)
            if not name.startswith("_") and callable(getattr(obj, name))
        }
        self._service = service
        self._registry = registry
        self._returns = returns

    async def __call__(self, inv: Invocation) -> Result:
        frame: RequestFrame = inv.payload
        if frame.codec != Codec.HESSIAN2:
            why = f"codec {frame.codec}: this provider reads Hessian 2 bodies only"
            return Result(Status.BAD_REQUEST, ResponseStatus.SERVER_DESERIAL_EXCEPTION, detail=why)
        try:
            req, args = decode_request(frame.body, self._registry)
        except SofaCodecError as exc:
            code = ResponseStatus.SERVER_DESERIAL_EXCEPTION
            return Result(Status.BAD_REQUEST, code, detail=f"{self._service}: {exc}")
        mismatch = _mismatch(inv, req)
        if mismatch:  # the rules judged inv's names: run nothing else
            log.warning("%s: request refused: %s", self._service, mismatch)
            return Result.failure(Status.BAD_REQUEST, f"request refused: {mismatch}")
        fn = self._methods.get(req.methodName or "")
        if fn is None:
            return _raised(frame, f"Can not find method: {self._service}#{req.methodName}()")
        token = current_call.set(_call_of(inv, req))
        try:
            value = fn(*args)
            if inspect.isawaitable(value):
                value = await value
            sig = self._returns.get(req.methodName or "")
            body = encode_response(coerce(value, sig) if sig else value, self._registry)
        except (Hessian2Error, TypeError) as exc:
            log.warning("%s#%s: cannot send the result: %s", self._service, req.methodName, exc)
            return _raised(frame, f"cannot serialize the result: {exc}")
        except Exception as exc:
            log.info("%s#%s raised %r", self._service, req.methodName, exc)
            return _raised(frame, f"{type(exc).__name__}: {exc}")
        finally:
            current_call.reset(token)
        # Positional (status, code, headers, payload), members through module names: a class
        # called with keywords packs them into a dict, and `Enum.X` is a slow path on 3.11.
        return Result(_OK, _SUCCESS, None, reply(frame, body=body))


def _mismatch(inv: Invocation, req: SofaRequest) -> str:
    """Why the body names another call than the invocation the chain judged, or ""."""
    if inv.method and req.methodName != inv.method:
        return f"the invocation names method {inv.method}, the body {req.methodName}"
    target = req.targetServiceUniqueName
    if inv.service and target and target != inv.service:
        return f"the invocation names service {inv.service}, the body {target}"
    return ""


def _call_of(inv: Invocation, req: SofaRequest) -> BoltCall:
    props = req.requestProps or {}
    trace = props.get("rpc_trace_context")
    trace_id = trace.get("sofaTraceId", "") if isinstance(trace, dict) else ""
    return BoltCall(
        service=inv.service,
        method=req.methodName or inv.method,
        signatures=tuple(req.methodArgSigs or ()),
        caller=inv.caller,
        trace_id=str(trace_id or ""),
        deadline=inv.deadline,
        headers=inv.headers,
        props=props,
    )


def _raised(frame: RequestFrame, message: str) -> Result:
    """The provider's own error, as sofa-rpc-node sends it: SERVER_EXCEPTION and an
    RpcServerException whose message SOFARPC clients show."""
    code = ResponseStatus.SERVER_EXCEPTION
    body = server_exception(message)
    return Result(Status.APP_ERROR, code, payload=reply(frame, status=code, body=body))


@asynccontextmanager
async def serve_bolt(
    mesh: Mesh,
    obj: object,
    interface: str,
    *,
    version: str = "1.0",
    unique_id: str = "",
    registry: ClassRegistry | None = None,
    returns: Mapping[str, str] | None = None,
    listen: str = "127.0.0.1:0",
    advertise: str | None = None,
) -> AsyncIterator[Provider]:
    """Serve `obj`'s public methods as `interface:version`, published while the block runs."""
    service = unique_name(interface, version, unique_id)
    rt = mesh.runtime
    terminal = ServiceTerminal(obj, service, sofa_classes(registry), returns or {})
    chain = rt.inbound_chain(terminal)

    def route(name: str) -> Handler | None:
        return chain if name == service else None

    def server_for(_address: Address) -> Server:
        return rt.protocols["bolt"].inbound_server(route, mesh.inbound_limits)

    async with mesh.provide(
        server_for, (service,), "bolt", listen=listen, advertise=advertise
    ) as provider:
        yield provider
