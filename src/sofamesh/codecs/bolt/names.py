"""The names a SOFARPC request body gives (method, service), read off its head without decoding it.

A proxy checks that a frame's header map and its body name the same call on every
request, so this runs per Bolt request: it reads only the class definition and the
leading fields of the `SofaRequest` (sofarpc.py has the layout)::

    'C' <class name> <field count> <field name>...    the definition (SofaRequest's)
    'O' <ref> | 0x60+ref                               the instance
    methodName  methodArgSigs  targetServiceUniqueName ...   values, in the definition's order

and stops once both names are read. It understands the forms SOFARPC, sofa-rpc-node and
our encoder write for those fields (ASCII strings, null, a list of strings); anything
else gives None and the caller falls back to the full decoder (`sofarpc.peek_request`),
so the answer is never a guess. Hessian 2.0 grammar: http://hessian.caucho.com/doc/hessian-serialization.html

The reader looks at nothing past the second name, so the bytes up to there decide the
answer: `peek_names` remembers them (a client calls the same few methods over and over,
and their heads repeat byte for byte) and answers a body that starts with known head
bytes from memory: the last head answered first (a prefix compare, without a slice or a
hash: calls in a row are mostly to one method), then every head remembered. Memory is
bounded: `_MAX_HEADS` heads of up to `_MAX_LENGTHS` distinct lengths (each a slice and a
dict look-up per request), forgotten all at once when full.
"""

from __future__ import annotations

from sofamesh.codecs.bolt.codes import SOFA_REQUEST_CLASS

METHOD, SERVICE = b"methodName", b"targetServiceUniqueName"
Names = tuple[str | None, str | None]  # (method, service)


_MAX_HEADS = 1024
_MAX_LENGTHS = 8
_known: dict[bytes, Names] = {}  # head bytes -> the names they give
_lengths: list[int] = []  # the lengths of the heads in `_known`
# The head `peek_names` answered last (b"" until one) and its names: one tuple, stored in
# one assignment, so a thread never reads one head's bytes with another's names.
_last: tuple[bytes, Names] = (b"", (None, None))


class _Unknown(Exception):
    """A form this reader does not handle: the full decoder decides."""


def peek_names(body: bytes) -> Names | None:
    """(methodName, targetServiceUniqueName) of a Hessian 2 `SofaRequest` body, or None."""
    global _last
    last_head, last_names = _last
    if last_head and body.startswith(last_head):
        return last_names
    for n in _lengths:
        head = body[:n]
        names = _known.get(head)
        if names is not None:
            _last = (head, names)
            return names
    reader = _Head(body)
    try:
        names = reader.names()
    except (_Unknown, IndexError):
        return None
    _remember(body[: reader.pos], names)
    return names


def forget() -> None:
    """Forget every head remembered (tests start from nothing)."""
    global _last
    _known.clear()
    _lengths.clear()
    _last = (b"", (None, None))


def _remember(head: bytes, names: Names) -> None:
    if len(_known) >= _MAX_HEADS:
        _known.clear()
        _lengths.clear()
    n = len(head)
    if n not in _lengths:
        if len(_lengths) >= _MAX_LENGTHS:
            return  # many shapes of head: read the rare ones each time
        _lengths.append(n)
    _known[head] = names


class _Head:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def names(self) -> Names:
        if self._byte() != 0x43 or self._string() != SOFA_REQUEST_CLASS:  # 'C'
            raise _Unknown
        fields = [self._string() for _ in range(self._int())]
        tag = self._byte()
        if tag == 0x4F:  # 'O' <int ref>
            self._int()
        elif not 0x60 <= tag <= 0x6F:
            raise _Unknown
        found: dict[bytes, str | None] = {}
        for field in fields:
            if field in (METHOD, SERVICE):
                value = self._value()
                found[field] = None if value is None else value.decode("ascii")
                if len(found) == 2:
                    return found[METHOD], found[SERVICE]
            else:
                self._skip_strings()
        raise _Unknown  # a SofaRequest without one of the fields

    def _byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def _int(self) -> int:
        tag = self._byte()
        if 0x80 <= tag <= 0xBF:
            return tag - 0x90
        if 0xC0 <= tag <= 0xCF:
            return ((tag - 0xC8) << 8) + self._byte()
        raise _Unknown  # larger counts and refs do not occur in a request's head

    def _value(self) -> bytes | None:
        """A string (ASCII) or null."""
        if self.buf[self.pos] == 0x4E:  # 'N'
            self.pos += 1
            return None
        return self._string()

    def _string(self) -> bytes:
        tag = self._byte()
        if tag <= 0x1F:
            size = tag
        elif 0x30 <= tag <= 0x33:
            size = ((tag - 0x30) << 8) + self._byte()
        elif tag == 0x53:  # 'S': a final chunk with a 16-bit length
            size = (self._byte() << 8) + self._byte()
        else:
            raise _Unknown  # chunked ('R') or not a string
        end = self.pos + size
        raw = self.buf[self.pos : end]
        if len(raw) != size or not raw.isascii():  # lengths count UTF-16 units, bytes if ASCII
            raise _Unknown
        self.pos = end
        return raw

    def _skip_strings(self) -> None:
        """A field before the names: null, a string, or a list of strings (methodArgSigs)."""
        tag = self.buf[self.pos]
        if tag == 0x4E or tag <= 0x1F or 0x30 <= tag <= 0x33 or tag == 0x53:
            self._value()
            return
        self.pos += 1
        if 0x70 <= tag <= 0x77:  # typed list of fixed length: <type> values
            self._string()
            count = tag - 0x70
        elif 0x78 <= tag <= 0x7F:  # untyped list of fixed length
            count = tag - 0x78
        elif tag == 0x56:  # 'V' <type> <int length> values
            self._string()
            count = self._int()
        elif tag == 0x58:  # 'X' <int length> values
            count = self._int()
        else:
            raise _Unknown
        for _ in range(count):
            self._string()
