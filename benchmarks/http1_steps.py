"""The steps of one proxied HTTP/1.1 request that do no I/O, each counted on its own.

Run by `http1_instructions.py` under callgrind, with the sidecar's tree first on the path:
each step runs `N` times between a zeroing of callgrind's counters and a dump named after
it (client requests through `LIB`, a two-function C library the driver builds), so every
dump holds exactly one step's instructions. The messages are the benchmark's: wrk's request
and nginx's answer, with the deadline and caller the outbound chain sets.

    valgrind --tool=callgrind python http1_steps.py LIB N
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable

from sofamesh.codecs.http1 import Http1ClientCodec, Http1ServerCodec, writer
from sofamesh.protocols.http.mapping import (
    invocation_to_request,
    request_to_invocation,
    response_to_result,
    result_to_response,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 15:33:42 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 20\r\nConnection: keep-alive\r\n\r\n"
    b"hello from upstream\n"
)


def steps() -> list[tuple[str, Callable[[], object]]]:
    """(name, step) in the order a proxied request takes them; each leaves state as it found it."""
    server, client = Http1ServerCodec(), Http1ClientCodec()

    def parse_request() -> object:
        server.receive_data(REQUEST)
        request = server.next_request()
        server._pending.clear()  # answered, as far as the next round is concerned
        return request

    def parse_response() -> object:
        client._outstanding, client._method = True, b"GET"  # a request was just sent
        return client.receive_data(RESPONSE)

    request = parse_request()
    inv = request_to_invocation(request)  # type: ignore[arg-type]
    inv.caller, inv.deadline = "bench", 100.0
    upstream = invocation_to_request(inv, 90.0)
    response = parse_response()
    result = response_to_result(response)  # type: ignore[arg-type]
    answer = result_to_response(result, "bench")
    return [
        ("nothing (the loop itself)", lambda: None),
        ("parse the request", parse_request),
        ("request -> invocation", lambda: request_to_invocation(request)),  # type: ignore[arg-type]
        ("invocation -> request", lambda: invocation_to_request(inv, 90.0)),
        ("encode the request", lambda: writer.encode_request(upstream, host=b"127.0.0.1:80")),
        ("parse the response", parse_response),
        ("response -> result", lambda: response_to_result(response)),  # type: ignore[arg-type]
        ("result -> response", lambda: result_to_response(result, "bench")),
        ("encode the response", lambda: writer.encode_response(answer, head=False, close=False)),
    ]


def main() -> None:
    lib, n = ctypes.CDLL(sys.argv[1]), int(sys.argv[2])
    zero, dump = lib.zero, lib.dump  # looked up before anything is counted
    gc.disable()  # the sidecar's collector runs rarely (it raises the threshold): not counted here
    dump(b"warm-up")
    for name, step in steps():
        label = name.encode()
        for _ in range(100):
            step()
        zero()
        for _ in range(n):
            step()
        dump(label)


if __name__ == "__main__":
    main()
