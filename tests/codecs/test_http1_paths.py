"""The path normaliser (`codecs/http1/paths.py`) against a table of Envoy's behaviour, and its laws.

The table is what Envoy does with `normalize_path: true`, `merge_slashes: true`
and each `path_with_escaped_slashes_action`: RFC 3986 §5.2.4 dot segments,
§6.2.2 escapes (unreserved decoded, the rest uppercase), slashes merged.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sofamesh.codecs.http1.paths import (
    CLEAN,
    KEEP_UNCHANGED,
    REJECT_REQUEST,
    UNESCAPE_AND_FORWARD,
    PathError,
    normalize_path,
    normalize_target,
    split_absolute,
)

TABLE = [
    ("/", "/"),
    ("/orders/export", "/orders/export"),
    ("//orders/export", "/orders/export"),
    ("/orders//export", "/orders/export"),
    ("/orders///export//", "/orders/export/"),
    ("/orders/./export", "/orders/export"),
    ("/orders/x/../export", "/orders/export"),
    ("/orders/%65xport", "/orders/export"),
    ("/a/b/c/./../../g", "/a/g"),  # RFC 3986 §5.2.4's example
    ("/mid/content=5/../6", "/mid/6"),  # ditto
    ("/..", "/"),
    ("/../a", "/a"),
    ("/a/..", "/"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/.", "/"),
    ("/./a", "/a"),
    ("/a/.b/..c/...", "/a/.b/..c/..."),  # dots inside names are names
    ("/.well-known/x", "/.well-known/x"),
    ("/%2e%2e/a", "/a"),
    ("/a/%2E/b", "/a/b"),
    ("/%7Euser", "/~user"),
    ("/%41%5a%61%7a%30%39%2d%5f", "/AZaz09-_"),
    ("/a%20b", "/a%20b"),
    ("/a%3fb", "/a%3Fb"),
    ("/a%25b", "/a%25b"),  # an escaped '%' stays escaped: no double decoding
    ("/a%252e%252e/b", "/a%252e%252e/b"),
    ("/a\\b", "/a/b"),
    ("/a\\..\\b", "/b"),
    ("/caf%C3%A9", "/caf%C3%A9"),
]


@pytest.mark.parametrize(("path", "normalised"), TABLE)
def test_envoy_table(path: str, normalised: str) -> None:
    assert normalize_path(path) == normalised
    assert normalize_target(path + "?x=%2F/../y") == normalised + "?x=%2F/../y"


@pytest.mark.parametrize(
    ("path", "keep", "unescape"),
    [
        ("/a%2Fb", "/a%2Fb", "/a/b"),
        ("/a%2fb", "/a%2Fb", "/a/b"),
        ("/a%5Cb", "/a%5Cb", "/a/b"),
        ("/a%2F%2Fb", "/a%2F%2Fb", "/a/b"),
        ("/a/b%2F..%2Fc", "/a/b%2F..%2Fc", "/a/c"),
    ],
)
def test_escaped_slashes_follow_the_action(path: str, keep: str, unescape: str) -> None:
    assert normalize_path(path, KEEP_UNCHANGED) == keep
    assert normalize_path(path, UNESCAPE_AND_FORWARD) == unescape
    with pytest.raises(PathError):
        normalize_path(path, REJECT_REQUEST)


@pytest.mark.parametrize(
    "target",
    ["/a%", "/a%2", "/a%zz", "/a%g1", "/a#frag", "/a?b#c", "/a b", "/a\x00", "/caf\xe9", "a", "*"],
)
def test_what_cannot_be_normalised_is_refused(target: str) -> None:
    with pytest.raises(PathError):
        normalize_target(target)


def test_a_clean_target_is_returned_as_is() -> None:
    target = "/orders/1?x=y"
    assert normalize_target(target) is target


@pytest.mark.parametrize(
    ("target", "authority", "origin"),
    [
        ("http://svc/orders/export", "svc", "/orders/export"),
        ("HTTPS://svc:8443/a?b", "svc:8443", "/a?b"),
        ("http://svc", "svc", "/"),
        ("http://svc?q", "svc", "/?q"),
    ],
)
def test_absolute_form_becomes_origin_form(target: str, authority: str, origin: str) -> None:
    assert split_absolute(target) == (authority, origin)


@pytest.mark.parametrize(
    "target", ["svc:80", "http://u@svc/", "ftp://svc/", "http:/svc", "http://", "//svc/a"]
)
def test_other_forms_are_refused(target: str) -> None:
    with pytest.raises(PathError):
        split_absolute(target)


# -- laws ---------------------------------------------------------------------------------

SEGMENT = st.one_of(
    st.sampled_from([".", "..", "", "%2e", "%2E%2e", "%2F", "%5c", "%41", "%7e", "%20", "\\"]),
    st.text("abcXYZ019-._~!$&'()*+,;=:@%", max_size=6),
)
PATHS = st.lists(SEGMENT, max_size=8).map(lambda s: "/" + "/".join(s))
ACTIONS = st.sampled_from([KEEP_UNCHANGED, UNESCAPE_AND_FORWARD])
_UNRESERVED_ESCAPE = re.compile(r"%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[DEde]|5[Ff]|7[Ee])")


def normalised_or_none(path: str, action: str) -> str | None:
    try:
        return normalize_path(path, action)
    except PathError:
        return None


@settings(max_examples=500, deadline=None)
@given(PATHS, ACTIONS)
def test_normalising_twice_is_normalising_once(path: str, action: str) -> None:
    once = normalised_or_none(path, action)
    if once is not None:
        assert normalize_path(once, action) == once


@settings(max_examples=500, deadline=None)
@given(PATHS, ACTIONS)
def test_no_dot_segment_no_double_slash_no_unreserved_escape(path: str, action: str) -> None:
    out = normalised_or_none(path, action)
    if out is None:
        return
    segments = out.split("/")[1:]
    assert "." not in segments and ".." not in segments
    assert "//" not in out and "\\" not in out
    assert _UNRESERVED_ESCAPE.search(out) is None
    assert out.startswith("/")


# Segments that never become dot segments, so no segment (and no escape) is dropped.
NAMED = st.lists(
    st.one_of(
        st.sampled_from(["%2F", "%5c", "%41", "%7e", "%20", "%3f", "%25", "%c3%a9", "%2d"]),
        st.text("abcXYZ019-_~!$&'()*+,;=:@", min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=6,
).map(lambda s: "/" + "/".join(s))


@settings(max_examples=300, deadline=None)
@given(NAMED)
def test_only_unreserved_escapes_are_decoded(path: str) -> None:
    out = normalize_path(path, KEEP_UNCHANGED)
    escapes = [e.upper() for e in re.findall(r"%[0-9A-Fa-f]{2}", path)]
    kept = [e for e in escapes if _UNRESERVED_ESCAPE.fullmatch(e) is None]
    assert re.findall(r"%[0-9A-Fa-f]{2}", out) == kept  # uppercase, in order, none decoded


@settings(max_examples=500, deadline=None)
@given(st.one_of(PATHS, PATHS.map(lambda p: p + "?q=%2F/../#"), st.text(max_size=12)))
def test_the_clean_check_only_passes_what_normalising_keeps(target: str) -> None:
    if CLEAN.fullmatch(target) is not None:
        assert normalize_target(target) == target
