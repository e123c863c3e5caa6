"""CPU per unary gRPC exchange in the HTTP/2 codecs alone: the lean codec against h2.

    PYTHONPATH=src .venv/bin/python benchmarks/h2_codec.py [--requests 20000] [--profile]

A client and a server codec, paired in memory, carry N unary calls (request
headers + one DATA frame; response headers, DATA, trailers; every body
acknowledged), 10 streams in flight per exchange of bytes, as a sidecar's
inbound server codec and outbound client codec each do once per call. The
figure is process CPU time per call for both codecs together (µs), best of 5.
`ref -> lean` has the h2 codec as the client, so the lean server decodes what
h2's HPACK encoder sends (Huffman-coded, indexed, as grpcio and Envoy do).
`--profile` prints cProfile's top entries for each pairing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable

from sofamesh.codecs.h2 import (
    DataReceived,
    H2Codec,
    HeadersReceived,
    ReferenceH2Codec,
    TrailersReceived,
)

Codec = H2Codec | ReferenceH2Codec
REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/helloworld.Greeter/SayHello"),
    (b":authority", b"127.0.0.1:50051"),
    (b"te", b"trailers"),
    (b"content-type", b"application/grpc"),
    (b"user-agent", b"grpc-python/1.66.1 grpc-c/43.0.0 (linux; chttp2)"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
    (b"grpc-timeout", b"9999m"),
]
RESPONSE = [
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
BODY = b"\x00\x00\x00\x00\x07\n\x05world"
PAIRINGS: dict[str, tuple[Callable[..., Codec], Callable[..., Codec]]] = {
    "h2 (reference)": (ReferenceH2Codec, ReferenceH2Codec),
    "lean": (H2Codec, H2Codec),
    "ref -> lean": (ReferenceH2Codec, H2Codec),
}


def connect(
    client_kind: Callable[..., Codec], server_kind: Callable[..., Codec]
) -> tuple[Codec, Codec]:
    c, s = client_kind(client_side=True), server_kind(client_side=False)
    c.initiate()
    s.initiate()
    for _ in range(2):
        s.receive_data(c.data_to_send())
        c.receive_data(s.data_to_send())
    return c, s


def exchange(c: Codec, s: Codec, batch: int) -> None:
    """`batch` unary calls, their frames sharing each write as a busy connection's do."""
    for _ in range(batch):
        sid = c.next_stream_id()
        c.send_headers(sid, REQUEST)
        c.send_data(sid, BODY, end_stream=True)
    for ev in s.receive_data(c.data_to_send()):
        if type(ev) is DataReceived:
            s.ack(ev.stream_id, ev.flow_length)
            s.send_headers(ev.stream_id, RESPONSE)
            s.send_data(ev.stream_id, BODY)
            s.send_headers(ev.stream_id, TRAILERS, end_stream=True)
    for ev in c.receive_data(s.data_to_send()):
        if type(ev) is DataReceived:
            c.ack(ev.stream_id, ev.flow_length)
        else:
            assert type(ev) in (HeadersReceived, TrailersReceived), ev


def run(pairing: str, requests: int) -> float:
    c, s = connect(*PAIRINGS[pairing])
    started = time.process_time()
    for _ in range(requests // 10):
        exchange(c, s, 10)
    return (time.process_time() - started) / requests * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2,000 calls, 1 round")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.rounds = 2_000, 1
    print(f"unary gRPC calls through a client and a server codec, {args.requests:,} calls,")
    print(f"best of {args.rounds}; µs of CPU per call, both codecs together\n")
    print("| codecs (client -> server) | µs per call |")
    print("|---|---|")
    for pairing in PAIRINGS:
        best = min(run(pairing, args.requests) for _ in range(args.rounds))
        print(f"| {pairing} | {best:.1f} |")
    if args.profile:
        for pairing in PAIRINGS:
            print(f"\n{pairing}:")
            prof = cProfile.Profile()
            prof.runcall(run, pairing, args.requests)
            pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
