"""A peer's JSON within explicit limits: size, nesting, and one error for all three."""

from __future__ import annotations

import pytest

from sofamesh.codecs import jsondoc


def test_a_document_within_the_limits_is_read() -> None:
    assert jsondoc.loads(b'{"a": [1, {"b": null}]}', max_bytes=100, max_depth=3) == {
        "a": [1, {"b": None}]
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": [1, {"b": []}]}', "deeper than 3"),
        (b"[" * 200_000 + b"]" * 200_000, "deeper than 3"),  # past the parser's own recursion
        (b"x" * 101, "above the limit of 100"),
        (b"{1: 2}", "not JSON"),
        (b"\xff\xfe{", "not JSON"),
        (b"1" * 5000, "not JSON"),  # past Python's digits limit for int()
    ],
)
def test_a_document_past_a_limit_is_one_clear_error(body: bytes, reason: str) -> None:
    with pytest.raises(jsondoc.JsonDocError, match=reason):
        jsondoc.loads(body, max_bytes=len(body) if len(body) != 101 else 100, max_depth=3)
