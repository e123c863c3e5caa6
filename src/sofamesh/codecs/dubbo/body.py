"""Hessian 2 bodies of Dubbo requests and responses (the layouts are in `wire`).

`RequestBody` and `ResponseBody` are what a Dubbo caller and provider exchange; a proxy
needs neither (it reads `names.peek_head` and forwards the bytes). A response whose
status is not OK carries only a message string: `error_message` reads it.
"""

from __future__ import annotations

from typing import Any

import attrs

from sofamesh.codecs import hessian2
from sofamesh.codecs.dubbo import descriptors
from sofamesh.codecs.dubbo.errors import BodyError, LocalProtocolError
from sofamesh.codecs.dubbo.wire import ResponseFlag

DUBBO_VERSION = "2.0.2"  # what Dubbo 2.7 writes first in a request body


@attrs.frozen(kw_only=True)
class RequestBody:
    path: str
    method: str
    version: str = ""
    descriptor: str = ""
    args: tuple[Any, ...] = ()
    attachments: dict[str, Any] = attrs.field(factory=dict)
    dubbo_version: str = DUBBO_VERSION

    def __attrs_post_init__(self) -> None:
        try:
            n = descriptors.count(self.descriptor)
        except ValueError as e:
            raise LocalProtocolError(str(e)) from None
        if n != len(self.args):
            raise LocalProtocolError(
                f"descriptor {self.descriptor!r} names {n} parameters, got {len(self.args)}"
            )


@attrs.frozen(kw_only=True)
class ResponseBody:
    flag: ResponseFlag
    value: Any = None  # the value, or the exception for EXCEPTION flags
    attachments: dict[str, Any] | None = None

    @property
    def is_exception(self) -> bool:
        return self.flag.base is ResponseFlag.EXCEPTION


def encode_request(body: RequestBody) -> bytes:
    head = (body.dubbo_version, body.path, body.version, body.method, body.descriptor)
    try:
        return hessian2.dumps_all((*head, *body.args, body.attachments))
    except hessian2.Hessian2EncodeError as e:
        raise LocalProtocolError(f"cannot encode the request: {e}") from None


def decode_request(
    data: bytes, limits: hessian2.Hessian2Limits = hessian2.DEFAULT_LIMITS
) -> RequestBody:
    """Raises `BodyError` if `data` is not a Hessian 2 request body."""
    try:
        values = hessian2.loads_all(data, limits=limits)
        head = [v if isinstance(v, str) else "" for v in values[:5]]
        if len(values) < 5 or not all(isinstance(v, str | None) for v in values[:5]):
            raise BodyError("a request body starts with five strings")
        n = descriptors.count(head[4])
        args, rest = values[5 : 5 + n], values[5 + n :]
        if len(args) != n or len(rest) > 1 or (rest and not isinstance(rest[0], dict)):
            raise BodyError(f"the body does not match its descriptor {head[4]!r}")
    except (hessian2.Hessian2DecodeError, ValueError) as e:
        raise BodyError(f"not a Dubbo request body: {e}") from None
    return RequestBody(
        dubbo_version=head[0], path=head[1], version=head[2], method=head[3],
        descriptor=head[4], args=tuple(args), attachments=dict(rest[0]) if rest else {},
    )  # fmt: skip


def encode_response(
    value: Any = None, *, exception: bool = False, attachments: dict[str, Any] | None = None
) -> bytes:
    """An OK response's body: the value (None gives the NULL flag) or the exception."""
    if exception:
        flag = ResponseFlag.EXCEPTION
    else:
        flag = ResponseFlag.NULL if value is None else ResponseFlag.VALUE
    values: list[Any] = [int(flag) + (3 if attachments is not None else 0)]
    if flag is not ResponseFlag.NULL:
        values.append(value)
    if attachments is not None:
        values.append(attachments)
    try:
        return hessian2.dumps_all(values)
    except hessian2.Hessian2EncodeError as e:
        raise LocalProtocolError(f"cannot encode the response: {e}") from None


def decode_response(
    data: bytes, limits: hessian2.Hessian2Limits = hessian2.DEFAULT_LIMITS
) -> ResponseBody:
    """An OK response's body. Raises `BodyError`."""
    try:
        values = hessian2.loads_all(data, limits=limits)
        flag = ResponseFlag(values[0]) if values and isinstance(values[0], int) else None
    except (hessian2.Hessian2DecodeError, ValueError) as e:
        raise BodyError(f"not a Dubbo response body: {e}") from None
    if flag is None:
        raise BodyError("a response body starts with its response flag")
    rest = values[1:]
    want = (0 if flag.base is ResponseFlag.NULL else 1) + flag.has_attachments
    if len(rest) != want or (flag.has_attachments and not isinstance(rest[-1], dict)):
        raise BodyError(f"a {flag.name} response with {len(rest)} values after the flag")
    value = rest[0] if flag.base is not ResponseFlag.NULL else None
    return ResponseBody(
        flag=flag, value=value, attachments=rest[-1] if flag.has_attachments else None
    )


def encode_error(message: str) -> bytes:
    """The body of a response whose status is not OK: its message."""
    return hessian2.dumps(message)


def error_message(data: bytes) -> str:
    """The message of a non-OK response (the raw text if it is not a Hessian string)."""
    try:
        text = hessian2.loads(data)
    except hessian2.Hessian2DecodeError:
        return data.decode("utf-8", "replace")
    return text if isinstance(text, str) else repr(text)


def exception_message(exc: Any) -> str:
    """What a Dubbo client prints for an exception value."""
    if isinstance(exc, hessian2.JavaException):
        return str(exc)
    if isinstance(exc, hessian2.JavaObject):
        msg = exc.get("detailMessage") or exc.get("message")
        return f"{exc.class_name}: {msg}" if msg else exc.class_name
    return str(exc)
