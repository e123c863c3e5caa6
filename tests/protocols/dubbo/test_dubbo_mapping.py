"""Reading a request's routing keys: what the proxy remembers never changes the answer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sofamesh.codecs import dubbo, hessian2
from sofamesh.protocols.dubbo.mapping import request_to_invocation, service_key

names = st.sampled_from(["", "com.example.Demo", "1.0", "g", "p\u00e9", "\U0001f600", "a" * 40])
values = st.one_of(names, st.integers(0, 9))
attachment_maps = st.dictionaries(
    st.sampled_from(["group", "version", "timeout", "x-sofamesh-caller", "remote.application"]),
    values,
    max_size=4,
)
longs = st.integers(-(2**63), 2**63 - 1)
args = st.lists(st.one_of(longs, names, st.none(), st.lists(longs, max_size=2)), max_size=3)


def _request(path: str, version: str, method: str, arguments: list[object],
             attachments: dict[str, object]) -> dubbo.RequestFrame:  # fmt: skip
    body = dubbo.RequestBody(
        path=path, version=version, method=method or "m",
        descriptor="Ljava/lang/Object;" * len(arguments), args=tuple(arguments),
        attachments=attachments,
    )  # fmt: skip
    return dubbo.RequestFrame(1, dubbo.encode_request(body))


def _expected(frame: dubbo.RequestFrame) -> tuple[str, str, list[tuple[str, str]], str]:
    body = dubbo.decode_request(frame.body)
    strings = [(k.lower(), v) for k, v in body.attachments.items() if isinstance(v, str)]
    found = dict(strings)
    caller = found.get("x-sofamesh-caller") or found.get("remote.application") or ""
    service = service_key(body.path, body.version, found.get("group") or "")
    return service, body.method, strings, caller


@given(st.lists(st.tuples(names, names, names, args, attachment_maps), min_size=1, max_size=4))
def test_remembered_heads_and_attachments_read_as_the_decoder_reads(
    requests: list[tuple[str, str, str, list[object], dict[str, object]]],
) -> None:
    frames = [_request(*r) for r in requests]
    for frame in frames + frames[::-1]:  # the second pass finds them remembered
        inv = request_to_invocation(frame)
        service, method, headers, caller = _expected(frame)
        assert (inv.service, inv.method, inv.caller) == (service, method, caller)
        assert inv.headers.items() == headers
        kept = inv.payload.frame.body[inv.payload.attachments_at :]
        mesh_free = {k: v for k, v in dubbo.decode_request(frame.body).attachments.items()
                     if not k.lower().startswith("x-sofamesh-")}  # fmt: skip
        assert (hessian2.loads(kept) if kept else {}) == mesh_free


def test_one_request_does_not_lend_its_attachments_to_another() -> None:
    one = _request("com.example.Demo", "1.0", "m", ["x" * 100], {"group": "a"})
    two = _request("com.example.Demo", "1.0", "m", ["x" * 100], {"group": "b"})
    for _ in range(2):
        assert request_to_invocation(one).service == "a/com.example.Demo:1.0"
        assert request_to_invocation(two).service == "b/com.example.Demo:1.0"
