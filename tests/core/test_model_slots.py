"""`Invocation` and `Result` as plain classes: keyword and positional construction alike,
defaults per instance, a result's headers made on first read."""

from __future__ import annotations

import pytest

from sofamesh.endpoint import Endpoint
from sofamesh.model import Headers, Invocation, Result, Status


def test_invocation_keywords_and_positions_build_the_same_call() -> None:
    headers = Headers([("X-A", "1")])
    by_name = Invocation(
        protocol="http", service="svc", method="/a", headers=headers, caller="app",
        deadline=5.0, peer="spiffe://x", payload=b"p", idempotent=True,
    )  # fmt: skip
    by_place = Invocation("http", "svc", "/a", headers, "app", 5.0, "spiffe://x", b"p", True)
    assert repr(by_name) == repr(by_place)
    assert by_name.headers is headers and by_name.headers.get("x-a") == "1"
    assert (by_name.endpoint, by_name.attempt, by_name.route) == (None, 0, None)


def test_invocation_defaults_are_per_call() -> None:
    a, b = Invocation("http", "svc", "/"), Invocation("http", "svc", "/")
    a.tried.add("k")
    a.headers.add("x", "1")
    assert b.tried == set() and len(b.headers) == 0
    assert (a.caller, a.deadline, a.peer, a.payload, a.idempotent) == ("", None, "", None, False)


def test_invocation_has_no_attribute_it_does_not_declare() -> None:
    inv = Invocation("http", "svc", "/")
    with pytest.raises(AttributeError):
        inv.nonexistent = 1  # type: ignore[attr-defined]


def test_result_headers_are_made_on_first_read_and_kept() -> None:
    result = Result(Status.OK)
    headers = result.headers
    headers.add("x-a", "1")
    assert result.headers is headers and Result(Status.OK).headers is not headers
    given = Headers([("x-b", "2")])
    assert Result(Status.OK, 200, given).headers is given
    result.headers = given
    assert result.headers is given


def test_result_fields_copy_and_failure() -> None:
    ep = Endpoint("svc", "127.0.0.1", 1)
    result = Result(status=Status.APP_ERROR, code=502, payload=b"x", detail="d", endpoint=ep)
    assert (result.status, result.code, result.payload, result.detail) == (
        Status.APP_ERROR, 502, b"x", "d",
    )  # fmt: skip
    assert not result.ok and Result(Status.OK).ok
    result.headers.add("x-a", "1")
    copy = result.copy()
    copy.headers.add("x-b", "2")
    assert len(result.headers) == 1 and len(copy.headers) == 2
    assert (copy.status, copy.code, copy.payload, copy.endpoint) == (
        Status.APP_ERROR, 502, b"x", ep,
    )  # fmt: skip
    failed = Result.failure(Status.TIMEOUT, "late", ep)
    assert (failed.status, failed.code, failed.detail, failed.endpoint) == (
        Status.TIMEOUT, 0, "late", ep,
    )  # fmt: skip
    assert "detail='late'" in repr(failed) and "headers=Headers([])" in repr(failed)
