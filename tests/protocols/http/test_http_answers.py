"""How the HTTP listeners render an answer the mesh makes itself (body bytes as the payload)."""

from __future__ import annotations

from sofamesh.model import Headers, Result, Status
from sofamesh.protocols.http.mapping import result_to_response


def test_code_zero_takes_the_status_usual_code_and_text_plain() -> None:
    answer = Result(Status.RATE_LIMITED, 0, Headers([("retry-after", "1")]), b"slow down\n")
    resp = result_to_response(answer, "orders")
    assert (resp.status, resp.body) == (429, b"slow down\n")
    assert resp.headers == [
        (b"retry-after", b"1"),
        (b"content-type", b"text/plain; charset=utf-8"),
    ]


def test_a_configured_code_and_content_type_are_kept() -> None:
    headers = Headers([("content-type", "application/json")])
    resp = result_to_response(Result(Status.OK, 202, headers, b"{}"), "orders")
    assert (resp.status, resp.body, resp.headers) == (
        202,
        b"{}",
        [(b"content-type", b"application/json")],
    )


def test_a_mesh_failure_without_a_body_is_the_error_response() -> None:
    resp = result_to_response(Result.failure(Status.NO_ENDPOINT, "orders: no endpoint"), "orders")
    assert resp.status == 503 and resp.body == b"orders: no endpoint\n"
    assert (b"x-sofamesh-error", b"no_endpoint") in resp.headers
