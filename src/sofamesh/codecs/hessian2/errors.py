"""The two ways a Hessian 2 conversion fails.

As in h11, the error says whose fault it is: `Hessian2DecodeError` means the
bytes are bad (truncated, malformed, hostile or over a limit), while
`Hessian2EncodeError` means the Python value has no Hessian form. Both are
`ValueError`s, like `json.JSONDecodeError`, so callers that already catch
`ValueError` around a parser keep working.
"""

from __future__ import annotations


class Hessian2Error(ValueError):
    """Base class of every error raised by `sofamesh.codecs.hessian2`."""


class Hessian2DecodeError(Hessian2Error):
    """The input is not a valid Hessian 2.0 stream, or breaks a configured limit.

    `offset` is the byte position in the input where the problem was found.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.msg = message
        self.offset = offset

    def __reduce__(self) -> tuple[type[Hessian2DecodeError], tuple[str, int]]:
        return (type(self), (self.msg, self.offset))


class Hessian2EncodeError(Hessian2Error):
    """The value cannot be written as Hessian 2.0 (unknown type, out of range, too deep)."""
