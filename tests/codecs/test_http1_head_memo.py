"""A connection's last relayed head, remembered: a byte-identical head reuses what was read
of it (`ResponseCheck.last`), and nothing it decides differs from reading it afresh.

The differential tests run each generated sequence of messages (with repeats, as a client
or an upstream sends them) through one connection's check, where repeated heads take the
remembered way, and each message through a check of its own, where every head is read in
full: both must relay or decline alike and give the same message.
"""

from __future__ import annotations

from typing import Any

from http1_llhttp import needs_llhttp
from hypothesis import given, settings
from hypothesis import strategies as st
from test_http1_relayed import NGINX, responses
from test_http1_relayed_request import requests

from sofamesh.codecs.http1 import Http1Limits
from sofamesh.codecs.http1.relayed import MEMO_BYTES, ResponseCheck, split_response
from sofamesh.codecs.http1.relayed_request import RequestCheck, split_request

pytestmark = needs_llhttp

LIMITS = Http1Limits(max_body_size=64)
GET = b"GET /a HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\n\r\n"


def request_view(got: Any) -> object:
    if got is None:
        return None
    req, close, used = got
    seen = (req.method, req.target, req.body, req.kept, req.picked, req._head, req._line_end)
    return seen, close, used, list(req.headers)


def response_view(got: Any) -> object:
    if got is None:
        return None
    resp, close, used = got
    seen = (resp.status, resp.reason, resp.body, resp._kept, resp._head, resp._line_end)
    return seen, close, used, list(resp.headers)


def variants(message: bytes) -> list[bytes]:
    """`message` and two of it whose heads differ only at their end."""
    more = [message.replace(b"\r\n\r\n", b"\r\nX-V: %d\r\n\r\n" % k, 1) for k in (1, 2)]
    return [message, *more]


def sequences(messages: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    """Up to twelve messages drawn from a pool of three and their variants: heads repeat,
    differ late, and interleave."""
    return st.lists(messages, min_size=1, max_size=3).flatmap(
        lambda pool: st.lists(
            st.sampled_from([v for m in pool for v in variants(m)]), min_size=1, max_size=12
        )
    )


@settings(max_examples=300, deadline=None)
@given(sequences(requests()))
def test_a_remembered_request_head_reads_as_a_fresh_one(messages: list[bytes]) -> None:
    check = RequestCheck()
    for data in messages:
        remembered = split_request(data, LIMITS, check)
        fresh = split_request(data, LIMITS, RequestCheck())
        assert request_view(remembered) == request_view(fresh)
        if remembered is not None and remembered[1]:
            check = RequestCheck()  # it closes: the next message comes on another connection


@settings(max_examples=300, deadline=None)
@given(sequences(responses()))
def test_a_remembered_response_head_reads_as_a_fresh_one(messages: list[bytes]) -> None:
    check = ResponseCheck()
    for data in messages:
        remembered = split_response(data, LIMITS, check)
        fresh = split_response(data, LIMITS, ResponseCheck())
        assert response_view(remembered) == response_view(fresh)
        if remembered is not None and remembered[1]:
            check = ResponseCheck()  # it closes: the next message comes on another connection


class Counted(RequestCheck):
    """A check that counts the messages llhttp reads."""

    __slots__ = ("read",)

    def __init__(self) -> None:
        super().__init__()
        self.read = 0

    def passes(self, buf: bytes) -> bool:
        self.read += 1
        return super().passes(buf)


def test_a_repeated_head_is_not_read_again_and_a_new_one_takes_its_place() -> None:
    check = Counted()
    other = GET.replace(b"/a", b"/b")
    reads = []
    for data in (GET, GET, other, other, GET, GET):
        got = split_request(data, LIMITS, check)
        assert got is not None and got[0]._head == data
        reads.append(check.read)
    assert reads == [1, 1, 2, 2, 3, 3]  # read on a miss only
    assert check.last is not None and check.last[0] == GET


def test_a_head_over_the_memo_size_is_relayed_but_not_remembered() -> None:
    check = Counted()
    long = GET.replace(b"Accept: */*", b"Accept: " + b"x" * MEMO_BYTES)
    for data in (GET, long, long, GET):
        assert split_request(data, LIMITS, check) is not None
    assert check.read == 3  # the long head read twice, the short one remembered throughout
    assert check.last is not None and check.last[0] == GET


def test_a_remembered_head_still_waits_for_its_body_and_leaves_what_follows() -> None:
    post = b"POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\n"
    check = RequestCheck()
    assert split_request(post + b"hello", LIMITS, check) is not None
    assert split_request(post + b"hel", LIMITS, check) is None  # the body still arriving
    got = split_request(post + b"hello" + GET, LIMITS, check)
    assert got is not None and got[0].body == b"hello" and got[2] == len(post) + 5


def test_a_remembered_response_head_must_frame_its_body_exactly() -> None:
    check = ResponseCheck()
    assert split_response(NGINX, LIMITS, check) is not None
    assert check.last is not None
    assert split_response(NGINX[:-1], LIMITS, check) is None  # cut short
    assert split_response(NGINX + b"x", LIMITS, check) is None  # bytes nobody asked for
    assert response_view(split_response(NGINX, LIMITS, check)) == response_view(
        split_response(NGINX, LIMITS, ResponseCheck())
    )


def test_a_head_that_closes_is_not_remembered_and_forgets_the_one_before() -> None:
    closing = GET.replace(b"Accept: */*", b"Connection: close")
    check = RequestCheck()
    assert split_request(GET, LIMITS, check) is not None
    got = split_request(closing, LIMITS, check)
    assert got is not None and got[1]  # relayed, and it closes
    assert check.last is None
    # The same bytes again on this check are read afresh, so llhttp's parser, which takes
    # nothing after a message that closes, refuses them as it did before heads were kept.
    assert split_request(closing, LIMITS, check) is None
