"""One request path for every rule and every app: normalised before anything reads it.

A rule that matches `/orders/export` must not be passed by `//orders/export`,
`/orders/./export` or `/orders/%65xport`, which an app resolves to the same
resource. So the mesh rewrites the path the way Envoy does with
`normalize_path: true` and `merge_slashes: true`, judges the rewritten path,
and forwards it, so the app sees exactly what the rules judged:

1. percent-escapes: those of unreserved characters (RFC 3986 §2.3: ALPHA,
   DIGIT, `-._~`) are decoded (§6.2.2.2); the rest keep their byte with
   uppercase hex (§6.2.2.1). An escape that is not `%` and two hex digits
   is refused. Escaped slashes (`%2F`, `%5C`) follow
   `path_with_escaped_slashes_action` (Envoy's name): KEEP_UNCHANGED,
   REJECT_REQUEST or UNESCAPE_AND_FORWARD.
2. a backslash becomes a slash (Envoy's normaliser does the same, since
   some servers treat `\\` as a separator);
3. runs of slashes become one (`merge_slashes`);
4. dot segments are removed (RFC 3986 §5.2.4 remove_dot_segments), and
   `..` never climbs above the root.

The query string is kept byte for byte. A fragment (`#`) never belongs in a
request-target (RFC 9112 §3.2) and is refused, as are characters outside
visible ASCII (which an HTTP/2 `:path` could carry).
"""

from __future__ import annotations

import re
from typing import Final

KEEP_UNCHANGED: Final = "KEEP_UNCHANGED"
REJECT_REQUEST: Final = "REJECT_REQUEST"
UNESCAPE_AND_FORWARD: Final = "UNESCAPE_AND_FORWARD"
ESCAPED_SLASH_ACTIONS: Final = (KEEP_UNCHANGED, REJECT_REQUEST, UNESCAPE_AND_FORWARD)

_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
CLEAN: Final = re.compile(
    r"(?=/)(?:/[-\w~!$&'()*+,;=:@][-.\w~!$&'()*+,;=:@]*)*/?(?:\?[^#\x00-\x20\x7f-\uffff]*)?",
    re.ASCII,
)
"""Fully matches an origin-form target that normalising leaves as it is: segments that
neither are empty nor start with a dot, no escape, backslash or fragment. The codecs'
one check (C code, linear) before calling `normalize_target` for the rest."""
_BAD_CHAR: Final = re.compile(r"[^\x21-\x7e]|#")
_ESCAPE: Final = re.compile(r"%(?:([0-9A-Fa-f]{2})|)")
_SLASHES: Final = re.compile(r"/{2,}")
_ABSOLUTE: Final = re.compile(r"(?i:https?)://([^/?#@]+)((?:[/?][^#]*)?)")


class PathError(ValueError):
    """The request-target cannot be normalised; the request is refused (400)."""


def normalize_target(target: str, escaped_slashes: str = REJECT_REQUEST) -> str:
    """An origin-form target (`/path?query`) with its path normalised; the same object if clean.

    Raises `PathError` for a target that is not origin-form or cannot be normalised.
    """
    if not target.startswith("/"):
        raise PathError(f"request-target {target!r} is not origin-form")
    if CLEAN.fullmatch(target) is not None:
        return target
    q = target.find("?")
    end = len(target) if q < 0 else q
    if _BAD_CHAR.search(target) is not None:
        raise PathError("request-target holds a fragment or a character outside visible ASCII")
    return normalize_path(target[:end], escaped_slashes) + target[end:]


def normalize_path(path: str, escaped_slashes: str = REJECT_REQUEST) -> str:
    """The normalised form of an absolute path (no query); raises `PathError`."""
    path = _ESCAPE.sub(lambda m: _unescape(m, escaped_slashes), path)
    path = _SLASHES.sub("/", path.replace("\\", "/"))
    return _remove_dot_segments(path)


def _unescape(match: re.Match[str], escaped_slashes: str) -> str:
    hex_digits = match.group(1)
    if hex_digits is None:
        raise PathError("a '%' in the path is not followed by two hex digits")
    char = chr(int(hex_digits, 16))
    if char in _UNRESERVED:
        return char
    if char in "/\\":
        if escaped_slashes == REJECT_REQUEST:
            raise PathError("the path holds an escaped slash (%2F or %5C)")
        if escaped_slashes == UNESCAPE_AND_FORWARD:
            return "/"
    return "%" + hex_digits.upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 on a path whose slashes are already merged."""
    segments = path.split("/")[1:]
    last = len(segments) - 1
    out: list[str] = []
    for i, segment in enumerate(segments):
        if segment == "." or segment == "..":
            if segment == ".." and out:
                out.pop()
            if i == last:
                out.append("")  # "/a/b/.." is the directory "/a/", with its slash
        else:
            out.append(segment)
    return "/" + "/".join(out)


def split_absolute(target: str) -> tuple[str, str]:
    """(authority, origin-form target) of an absolute-form target (RFC 9112 §3.2.2).

    Raises `PathError` for any other form, or an authority with userinfo.
    """
    match = _ABSOLUTE.fullmatch(target)
    if match is None:
        raise PathError(f"request-target {target!r} is neither origin- nor absolute-form")
    rest = match.group(2)
    if not rest.startswith("/"):
        rest = "/" + rest
    return match.group(1), rest
