"""SOFARPC over Bolt for Python apps: call `interface:version` services, serve Python objects.

Consumer::

    echo = mesh.bolt_consumer("com.example.EchoService", "1.0",
                              methods={"add": ["int", "int"]})   # Java types, once
    await echo.add(2, 40)                      # sync-style: the result, or an exception
    await echo.call("echo", "hi", types=["java.lang.String"])
    await echo.oneway("log", "started")        # no response
    fut = echo.future("add", 1, 2); ...; await fut.result()

Calls go through the mesh's outbound chain (discovery, balancing, governance), or to the
local sidecar's Bolt listener in sidecar mode. The provider's side, `serve_bolt` and
`current_call`, is in `sdk/bolt_provider.py` (re-exported here); a provider is
published with protocol `bolt`. Types: docs/protocols/bolt.md.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from sofamesh.codecs.bolt import ResponseStatus, request
from sofamesh.codecs.bolt.java_types import coerce, signature_of
from sofamesh.codecs.bolt.sofarpc import (
    SofaCodecError,
    SofaRequest,
    decode_response,
    encode_request,
    error_of,
    sofa_classes,
)
from sofamesh.codecs.hessian2 import ClassRegistry, JavaException
from sofamesh.model import Headers, Invocation, Result, Status
from sofamesh.protocols.bolt.mapping import result_to_response
from sofamesh.sdk.bolt_provider import BoltCall as BoltCall
from sofamesh.sdk.bolt_provider import ServiceTerminal as ServiceTerminal
from sofamesh.sdk.bolt_provider import current_call as current_call
from sofamesh.sdk.bolt_provider import serve_bolt as serve_bolt
from sofamesh.sdk.bolt_provider import unique_name as unique_name

if TYPE_CHECKING:
    from sofamesh.sdk.mesh import Mesh

__all__ = [
    "BoltCall",
    "BoltCallError",
    "BoltConsumer",
    "BoltFuture",
    "RemoteError",
    "current_call",
    "serve_bolt",
    "unique_name",
]

_SUCCESS = ResponseStatus.SUCCESS  # read per call, once here


class BoltCallError(Exception):
    """A Bolt call failed: `status` is the neutral outcome, `code` the Bolt response status."""

    def __init__(self, where: str, status: Status, code: int, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.status = status
        self.code = code
        self.message = message


class RemoteError(BoltCallError):
    """The provider reported an error: its server exception's message, and the exception
    (`exception`, a `JavaException`) when the body carried one."""

    def __init__(
        self, where: str, code: int, message: str, exception: JavaException | None = None
    ) -> None:
        super().__init__(where, Status.APP_ERROR, code, message)
        self.exception = exception


_trace_seq = itertools.count(1000)


def new_trace_id() -> str:
    """A SOFATracer-shaped trace id: IPv4 hex, epoch ms, a 4-digit sequence, the pid."""
    seq = 1000 + next(_trace_seq) % 9000
    return f"7f000001{int(time.time() * 1000)}{seq}{os.getpid()}"


class BoltConsumer:
    """Calls one SOFARPC interface through the mesh. Methods are also attributes
    (`await echo.add(1, 2)`), except the names this class uses: `call` them."""

    def __init__(
        self,
        mesh: Mesh,
        interface: str,
        version: str = "1.0",
        *,
        unique_id: str = "",
        methods: Mapping[str, Sequence[str]] | None = None,
        registry: ClassRegistry | None = None,
        timeout: float | None = None,
        target_app: str = "",
    ) -> None:
        self.mesh = mesh
        self.service = unique_name(interface, version, unique_id)
        self.methods = {name: tuple(sigs) for name, sigs in (methods or {}).items()}
        self.timeout = timeout
        self.target_app = target_app
        self._user_classes = registry
        self._registry = sofa_classes(registry)

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
        """Call `method` and return its result; raise `RemoteError` if the provider failed,
        `BoltCallError` if the mesh did (no endpoint, timeout, ...)."""
        inv = self._invocation(method, args, types, timeout, oneway=False)
        return self._outcome(inv, await self._send(inv))

    async def oneway(self, method: str, *args: Any, types: Sequence[str] | None = None) -> None:
        """Send `method` without waiting for (or getting) a response."""
        inv = self._invocation(method, args, types, None, oneway=True)
        result = await self._send(inv)
        if not result.ok:
            self._outcome(inv, result)  # raises: the call could not be sent

    def future(
        self, method: str, *args: Any, types: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> BoltFuture:  # fmt: skip
        """Start the call now and return at once; `await fut.result()` later."""
        fut = BoltFuture()
        call = functools.partial(self.call, method, *args, types=types, timeout=timeout)
        self.mesh.start_soon(fut._run, call)
        return fut

    # -- building and reading calls ------------------------------------------------------

    def _invocation(
        self,
        method: str,
        args: Sequence[Any],
        types: Sequence[str] | None,
        timeout: float | None,
        *,
        oneway: bool,
    ) -> Invocation:
        sigs = self._signatures(method, args, types)
        values = [coerce(a, s) for a, s in zip(args, sigs, strict=True)]
        app = self.mesh.config.app
        parent = current_call.get(None)
        trace = {
            "sofaTraceId": parent.trace_id if parent and parent.trace_id else new_trace_id(),
            "sofaRpcId": "0",
            "sofaCallerApp": app,
        }
        req = SofaRequest(method, list(sigs), self.service, self.target_app or None, {
            "rpc_trace_context": trace,
        })  # fmt: skip
        headers = [
            ("service", self.service), ("sofa_head_target_service", self.service),
            ("sofa_head_method_name", method),
            *((f"rpc_trace_context.{k}", v) for k, v in trace.items()),
        ]  # fmt: skip
        if self.target_app:
            headers.append(("sofa_head_target_app", self.target_app))
        body = encode_request(req, values, self._registry)
        frame = request(0, body, headers=headers, oneway=oneway)
        # protocol, service, method, headers, caller, deadline, peer, payload (positional:
        # a class called with keywords builds a dict for them)
        inv = Invocation("bolt", self.service, method, Headers(headers), app, None, "", frame)
        budget = timeout if timeout is not None else self.timeout
        if budget is not None:
            inv.deadline = self.mesh.runtime.clock.now() + budget
        return inv

    def _signatures(
        self, method: str, args: Sequence[Any], types: Sequence[str] | None
    ) -> tuple[str, ...]:
        declared = tuple(types) if types is not None else self.methods.get(method)
        if declared is None:
            return tuple(signature_of(a, self._user_classes) for a in args)
        if len(declared) != len(args):
            raise TypeError(
                f"{self.service}#{method} takes {len(declared)} arguments "
                f"({', '.join(declared)}), got {len(args)}"
            )
        return declared

    async def _send(self, inv: Invocation) -> Result:
        # SDK mode: the full outbound chain; sidecar mode: the local sidecar's Bolt listener.
        return await self.mesh.invoke(inv)

    def _outcome(self, inv: Invocation, result: Result) -> Any:
        where = f"{self.service}#{inv.method}"
        frame = result_to_response(result, inv.payload)
        if frame.status == _SUCCESS:
            try:
                response = decode_response(frame.body, self._registry)
            except SofaCodecError as bad:
                raise RemoteError(where, frame.status, f"unreadable response: {bad}") from None
            if response.isError:
                raise RemoteError(where, frame.status, response.errorMsg or "error")
            value = response.appResponse
            if isinstance(value, JavaException):
                raise RemoteError(where, frame.status, str(value), value)
            return value
        message, value = error_of(frame.body, self._registry)
        exc = value if isinstance(value, JavaException) else None
        if result.status is Status.APP_ERROR:
            raise RemoteError(where, frame.status, message, exc)
        raise BoltCallError(where, result.status, frame.status, message)


class BoltFuture:
    """The pending result of `BoltConsumer.future(...)` (SOFARPC's future invoke type)."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    async def _run(self, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            self._value = await call()
        except Exception as exc:
            self._error = exc
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    async def result(self) -> Any:
        """The call's result once it arrives (or its exception, raised)."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value

    def __await__(self) -> Any:
        return self.result().__await__()
