"""A grpclib Echo servicer, importable once the test's generated stubs are on the path."""

from __future__ import annotations

import os
from typing import Any

import echo_grpc  # type: ignore[import-not-found]
import echo_pb2  # type: ignore[import-not-found]
from grpclib.const import Status
from grpclib.exceptions import GRPCError


class Echo(echo_grpc.EchoBase):  # type: ignore[misc]
    """Unary answers `<pid>:<text>`; the streaming methods are not needed here."""

    async def Unary(self, stream: Any) -> None:
        req = await stream.recv_message()
        await stream.send_message(echo_pb2.Msg(text=f"{os.getpid()}:{req.text}"))

    async def ServerStream(self, stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def ClientStream(self, stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)

    async def Bidi(self, stream: Any) -> None:
        raise GRPCError(Status.UNIMPLEMENTED)
