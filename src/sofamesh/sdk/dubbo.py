"""Dubbo 2 for Python apps: call Dubbo services, serve Python objects to Dubbo callers.

Consumer::

    demo = mesh.dubbo_consumer("com.example.DemoService", version="1.0.0",
                               methods={"add": ["int", "int"]})   # Java types, optional
    await demo.add(2, 40)                    # the result, or an exception
    await demo.call("sayHello", "world", types=["java.lang.String"], timeout=1.0)

Undeclared argument types are inferred (`codecs.dubbo.descriptors.descriptor_of`: str
-> String, int -> int or long, float -> double, dict -> Map, list -> List; hessian2's
`Int`, `Long`, `Short`... say exactly), and the JVM descriptor is generated from them.

Provider::

    async with mesh.serve_dubbo(Demo(), interface="com.example.DemoService",
                                version="1.0.0"):
        ...                                  # published as com.example.DemoService:1.0.0

Calls go through the mesh's outbound chain, or the local sidecar's Dubbo listener in
sidecar mode; a provider is published with protocol `dubbo`. Bodies are Hessian 2: a
response in another serialization is refused with `DubboCallError`.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs

from sofamesh.chain import Handler
from sofamesh.codecs import dubbo, hessian2
from sofamesh.codecs.bolt.java_types import coerce
from sofamesh.codecs.bolt.sofarpc import STACK_TRACE_ARRAY
from sofamesh.codecs.dubbo import RequestFrame, Serialization, descriptors
from sofamesh.codecs.dubbo import Status as DubboStatus
from sofamesh.config import Address
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.protocols import Server
from sofamesh.protocols.dubbo.mapping import (
    APPLICATION_KEY,
    DubboCall,
    result_to_response,
    service_key,
)

if TYPE_CHECKING:
    from sofamesh.sdk.mesh import Mesh, Provider

__all__ = [
    "DubboCallError",
    "DubboConsumer",
    "DubboRequest",
    "RemoteError",
    "current_dubbo_call",
    "serve_dubbo",
]

log = logging.getLogger("sofamesh.sdk")
_OK, _DUBBO_OK = Status.OK, DubboStatus.OK  # read per call, once here

RUNTIME_EXCEPTION = "java.lang.RuntimeException"


class DubboCallError(Exception):
    """A Dubbo call failed: `status` is the neutral outcome, `code` the Dubbo status."""

    def __init__(self, where: str, status: Status, code: int, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.status = status
        self.code = code
        self.message = message


class RemoteError(DubboCallError):
    """The provider failed: its message, and the exception value when it sent one."""

    def __init__(self, where: str, code: int, message: str, exception: Any = None) -> None:
        super().__init__(where, Status.APP_ERROR, code, message)
        self.exception = exception


def _class_name(descriptor: str) -> str:
    """A descriptor as `Class.getName()` spells it (what `coerce` takes): `[I`, `int`."""
    return descriptor.replace("/", ".") if descriptor.startswith("[") else (
        descriptors.java_name(descriptor)
    )  # fmt: skip


class DubboConsumer:
    """Calls one Dubbo interface through the mesh. Methods are also attributes
    (`await demo.add(1, 2)`), except the names this class uses: `call` them."""

    def __init__(
        self,
        mesh: Mesh,
        interface: str,
        *,
        version: str = "",
        group: str = "",
        methods: Mapping[str, Sequence[str]] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.mesh = mesh
        self.interface, self.version, self.group = interface, version, group
        self.service = service_key(interface, version, group)
        self.methods = {m: tuple(map(descriptors.of_java_name, t)) for m, t in
                        (methods or {}).items()}  # fmt: skip
        self.timeout = timeout

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any) -> Any:
            return await self.call(method, *args)

        call.__name__ = method
        return call

    async def call(
        self, method: str, *args: Any, types: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> Any:  # fmt: skip
        """Call `method`; raise `RemoteError` if the provider failed, `DubboCallError` if
        the mesh did (no endpoint, timeout, ...)."""
        inv = self._invocation(method, args, types, timeout)
        return self._outcome(inv, await self.mesh.invoke(inv))

    def _invocation(
        self, method: str, args: Sequence[Any], types: Sequence[str] | None, timeout: float | None
    ) -> Invocation:
        descs = self._descriptors(method, args, types)
        values = [coerce(a, _class_name(d)) for a, d in zip(args, descs, strict=True)]
        head = [dubbo.DUBBO_VERSION, self.interface, self.version, method, "".join(descs)]
        attachments = {"path": self.interface, "interface": self.interface,
                       "version": self.version, APPLICATION_KEY: self.mesh.config.app}  # fmt: skip
        if self.group:
            attachments["group"] = self.group
        budget = timeout if timeout is not None else self.timeout
        if budget is not None:
            attachments["timeout"] = str(max(1, int(budget * 1000)))
        try:
            head_args = hessian2.dumps_all([*head, *values])
        except hessian2.Hessian2EncodeError as e:
            raise TypeError(f"{self.service}#{method}: cannot encode the arguments: {e}") from e
        frame = RequestFrame(0, head_args + hessian2.dumps(attachments))
        inv = Invocation("dubbo", self.service, method, Headers(attachments.items()),
                         payload=DubboCall(frame, len(head_args)))  # fmt: skip
        if budget is not None:
            inv.deadline = self.mesh.runtime.clock.now() + budget
        return inv

    def _descriptors(
        self, method: str, args: Sequence[Any], types: Sequence[str] | None
    ) -> tuple[str, ...]:
        declared = (
            tuple(map(descriptors.of_java_name, types)) if types is not None
            else self.methods.get(method)
        )  # fmt: skip
        if declared is None:
            return tuple(descriptors.descriptor_of(a) for a in args)
        if len(declared) != len(args):
            raise TypeError(f"{self.service}#{method} takes {len(declared)} arguments, "
                            f"got {len(args)}")  # fmt: skip
        return declared

    def _outcome(self, inv: Invocation, result: Result) -> Any:
        where = f"{self.service}#{inv.method}"
        frame = result_to_response(result, inv.payload.frame)
        if frame.serialization != Serialization.HESSIAN2:
            raise DubboCallError(where, Status.BAD_REQUEST, frame.status,
                                 f"the response is in serialization {frame.serialization}; "
                                 "this SDK reads Hessian 2 only")  # fmt: skip
        if frame.status != _DUBBO_OK:
            message = dubbo.error_message(frame.body)
            if result.status is Status.APP_ERROR:
                raise RemoteError(where, frame.status, message)
            raise DubboCallError(where, result.status, frame.status, message)
        try:
            body = dubbo.decode_response(frame.body)
        except dubbo.BodyError as bad:
            raise RemoteError(where, frame.status, f"unreadable response: {bad}") from None
        if body.is_exception:
            raise RemoteError(where, frame.status, dubbo.exception_message(body.value), body.value)
        return body.value


# -- provider ------------------------------------------------------------------------------


@attrs.frozen
class DubboRequest:
    """The call a provider method is serving: `current_dubbo_call.get()` inside it."""

    service: str
    method: str
    descriptor: str
    caller: str
    deadline: float | None  # on the mesh clock; None: no timeout
    attachments: dict[str, Any]


current_dubbo_call: contextvars.ContextVar[DubboRequest] = contextvars.ContextVar(
    "sofamesh_dubbo_call"
)


class DubboTerminal:
    """A Python provider's inbound terminal: decode the body, call the method (sync or
    async), encode its value, or its exception as a Dubbo provider does."""

    def __init__(self, obj: object, service: str) -> None:
        self.methods: dict[str, Callable[..., Any]] = {
            name: getattr(obj, name)
            for name in dir(obj)
            if not name.startswith("_") and callable(getattr(obj, name))
        }
        self._service = service

    async def __call__(self, inv: Invocation) -> Result:
        frame: RequestFrame = inv.payload.frame
        try:
            call = dubbo.decode_request(frame.body)
        except dubbo.BodyError as exc:
            return Result.failure(Status.BAD_REQUEST, f"{self._service}: {exc}")
        fn = self.methods.get(call.method)
        if fn is None or call.method != inv.method:
            return _raised(frame, f"No such method {call.method} in service {self._service}")
        token = current_dubbo_call.set(DubboRequest(
            inv.service, call.method, call.descriptor, inv.caller, inv.deadline, call.attachments,
        ))  # fmt: skip
        try:
            value = fn(*call.args)
            if inspect.isawaitable(value):
                value = await value
            body = dubbo.encode_response(value)
        except dubbo.LocalProtocolError as exc:
            return _raised(frame, f"cannot serialize the result: {exc}")
        except Exception as exc:
            log.info("%s#%s raised %r", self._service, call.method, exc)
            return _raised(frame, f"{type(exc).__name__}: {exc}")
        finally:
            current_dubbo_call.reset(token)
        # Positional (status, code, headers, payload), members through module names: a class
        # called with keywords packs them into a dict, and `Enum.X` is a slow path on 3.11.
        return Result(_OK, _DUBBO_OK, None, dubbo.reply(frame, _DUBBO_OK, body))


def _raised(frame: RequestFrame, message: str) -> Result:
    """The provider's exception, as a Dubbo provider returns it: OK + EXCEPTION flag."""
    exc = hessian2.JavaException(RUNTIME_EXCEPTION, {
        "detailMessage": message, "stackTrace": hessian2.TypedList(STACK_TRACE_ARRAY, []),
        "cause": None,
    })  # fmt: skip
    body = dubbo.encode_response(exc, exception=True)
    return Result(Status.OK, DubboStatus.OK, payload=dubbo.reply(frame, DubboStatus.OK, body))


@asynccontextmanager
async def serve_dubbo(
    mesh: Mesh,
    obj: object,
    *,
    interface: str,
    version: str = "",
    group: str = "",
    listen: str = "127.0.0.1:0",
    advertise: str | None = None,
) -> AsyncIterator[Provider]:
    """Serve `obj`'s public methods as `group/interface:version`, published meanwhile."""
    service = service_key(interface, version, group)
    rt = mesh.runtime
    terminal = DubboTerminal(obj, service)
    chain = rt.inbound_chain(terminal)

    def route(name: str) -> Handler | None:
        return chain if name == service else None

    def server_for(_address: Address) -> Server:
        return rt.protocols["dubbo"].inbound_server(route, mesh.inbound_limits)

    methods = {"methods": ",".join(sorted(terminal.methods))}  # Dubbo's URL lists them
    async with mesh.provide(
        server_for, (service,), "dubbo", listen=listen, advertise=advertise, meta=methods
    ) as provider:
        yield provider
