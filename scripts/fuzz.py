"""Fuzz every codec: generated inputs in, only the codec's documented error out.

    PYTHONPATH=src .venv/bin/python scripts/fuzz.py [--inputs 1000000] [--codec NAME ...]
    PYTHONPATH=src .venv/bin/python scripts/fuzz.py --quick        # 2,000 inputs per codec
    PYTHONPATH=src .venv/bin/python scripts/fuzz.py --engine atheris --codec bolt --inputs 1000000

Each codec is driven as a peer's bytes drive it: the HTTP/1.1 server codec (whole, which
takes the fast path, and in 7-byte pieces, which takes h11), the HTTP/2 codec with its
connection guard (server side, after the preface) and, input by input, the same as the h2
reference codec (any difference the judge of `sofamesh.codecs.h2.differential` does not
allow is a crash), gRPC message framing and its header
values, Bolt frames with the SOFARPC head peek and body decode, Hessian 2, Dubbo frames
with the head peek and body decode, and DNS queries. A crash is any exception other
than the codec's documented error (and, for HTTP/2, the codec's own "unprocessable
input" wrapper around an exception from the h2 library, counted apart).

Engines: `mutate` (the default, no dependency) stacks 1 to 8 seeded mutations (bit flips,
interesting bytes, inserted, deleted, duplicated and spliced ranges) on a corpus of valid
messages from the project's encoders, plus 1 in 10 inputs of random bytes; the same
`--seed` gives the same inputs. `atheris` (`pip install sofamesh[fuzz]`) runs libFuzzer's
coverage-guided search on one codec for `--inputs` runs; every loaded module is
instrumented, so it runs a few hundred inputs a second where `mutate` runs thousands.
Crashing inputs go to `--crash-dir` as hex. Prints Markdown (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fuzz_apis as apis  # this folder: the script's own, first on sys.path

from sofamesh.codecs import bolt, dns, dubbo, grpc, h2, hessian2, http1
from sofamesh.codecs.bolt import sofarpc
from sofamesh.codecs.h2 import differential


@dataclass
class Target:
    drive: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...]
    seeds: list[bytes]
    mutator: Callable[[random.Random, list[bytes]], bytes] | None = None  # else `mutate`
    crashes: int = 0
    accepted: int = 0  # inputs read without an error: how deep the inputs reach
    wrapped: int = 0
    first: list[str] = field(default_factory=list)


# -- how each codec is driven ------------------------------------------------------------------


def http1_whole(data: bytes) -> None:
    codec = http1.Http1ServerCodec()
    codec.receive_data(data)
    while codec.next_request() is not None:
        pass


def http1_pieces(data: bytes) -> None:
    codec = http1.Http1ServerCodec()
    for i in range(0, len(data), 7):
        codec.receive_data(data[i : i + 7])
        while codec.next_request() is not None:
            pass
    codec.receive_data(b"")
    while codec.next_request() is not None:
        pass


def h2_server(data: bytes) -> None:
    codec = h2.H2Codec(client_side=False)
    codec.initiate()
    codec.receive_data(h2.PREFACE + data)
    codec.data_to_send()


def _h2_server(kind: str) -> h2.H2Codec | h2.ReferenceH2Codec:
    codec = (h2.H2Codec if kind == "lean" else h2.ReferenceH2Codec)(client_side=False)
    codec.initiate()
    return codec


def h2_differential(data: bytes) -> None:
    """The lean codec and the h2 reference take the input alike, as the one judge has it
    (`sofamesh.codecs.h2.differential`, which allows each deliberate difference exactly);
    an `H2Mismatch` counts as a crash."""
    differential.judge(_h2_server, h2.PREFACE + data)


def grpc_framing(data: bytes) -> None:
    grpc.MessageDecoder(max_message=4096).feed(data)
    text = data.decode("latin-1")
    grpc.parse_timeout(text)
    grpc.decode_grpc_message(text)


def bolt_frames(data: bytes) -> None:
    decoder = bolt.FrameDecoder(bolt.BoltLimits(max_body_size=1 << 16))
    decoder.receive_data(data)
    for frame in decoder:
        if isinstance(frame, bolt.RequestFrame) and frame.body:
            sofarpc.peek_request(frame.body)
            sofarpc.decode_request(frame.body)


def hessian(data: bytes) -> None:
    hessian2.loads_all(data)


def dubbo_frames(data: bytes) -> None:
    decoder = dubbo.FrameDecoder(dubbo.DubboLimits(max_body_size=1 << 16))
    decoder.receive_data(data)
    for frame in decoder:
        if isinstance(frame, dubbo.RequestFrame) and frame.body:
            dubbo.peek_head(frame.body)
            dubbo.decode_request(frame.body)


def dns_query(data: bytes) -> None:
    dns.parse_query(data)


# -- seeds: valid messages from the project's encoders -----------------------------------------


def http_seeds() -> list[bytes]:
    return [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"PUT /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: b\r\n\r\n",
    ]


def h2_seeds() -> list[bytes]:
    import hpack
    from hyperframe.frame import (
        ContinuationFrame,
        DataFrame,
        HeadersFrame,
        PingFrame,
        PriorityFrame,
        RstStreamFrame,
        SettingsFrame,
        WindowUpdateFrame,
    )

    # content-length 7: stream 1's DATA has it right, stream 3's (4 octets, padded) wrong
    head = [(":method", "POST"), (":scheme", "http"), (":path", "/s/M"), (":authority", "a"),
            ("content-type", "application/grpc"), ("content-length", "7")]  # fmt: skip
    encoder = hpack.Encoder()  # Huffman-coded, indexed: what grpcio and Envoy send
    block = encoder.encode(head)
    frames = [
        SettingsFrame(0, settings={0x4: 65535, 0x3: 100}),
        HeadersFrame(1, block, flags=["END_HEADERS"]),
        DataFrame(1, grpc.encode_message(b"hi"), flags=["END_STREAM"]),
        WindowUpdateFrame(0, window_increment=1000),
        PingFrame(0, opaque_data=b"12345678"),
        PriorityFrame(3, depends_on=1, stream_weight=16),
        RstStreamFrame(1, error_code=8),
    ]
    again = encoder.encode([*head, ("grpc-timeout", "1S")])  # dynamic-table references
    more = [
        HeadersFrame(3, again[:5], flags=["PRIORITY"], depends_on=1, stream_weight=7),
        ContinuationFrame(3, again[5:], flags=["END_HEADERS"]),
        DataFrame(3, b"body", flags=["PADDED", "END_STREAM"], pad_length=3),
    ]
    return [
        b"".join(f.serialize() for f in frames),
        frames[0].serialize() + frames[1].serialize(),
        b"".join(f.serialize() for f in frames[:2] + more),
    ]


def bolt_seeds() -> list[bytes]:
    req = sofarpc.SofaRequest(
        "echo", ["java.lang.String"], "com.example.Echo:1.0", None, {"k": "v"}
    )
    body = sofarpc.encode_request(req, ["hi"])
    return [
        bolt.encode(bolt.request(7, body, headers={"service": "com.example.Echo:1.0"})),
        bolt.encode(bolt.heartbeat(9)),
        bolt.encode(bolt.reply(bolt.request(7, body), body=sofarpc.encode_response("ok"))),
    ]


def hessian_seeds() -> list[bytes]:
    values: list[object] = [1, -300, 2**40, 1.5, "text", "ü" * 40, b"bin", None, True,
                            [1, "a", [2.0]], {"k": [1, 2], 3: None}, list(range(20))]  # fmt: skip
    req = sofarpc.SofaRequest("m", ["int"], "S", None, {})
    return [hessian2.dumps(v) for v in values] + [sofarpc.encode_request(req, [3])]


def dubbo_seeds() -> list[bytes]:
    body = dubbo.RequestBody(path="com.example.Echo", version="1.0", method="echo",
                             descriptor="Ljava/lang/String;", args=("hi",),
                             attachments={"group": "g"})  # fmt: skip
    raw = dubbo.encode_request(body)
    return [
        dubbo.encode(dubbo.RequestFrame(5, raw, 2, True, False)),
        dubbo.encode(dubbo.heartbeat(6)),
        dubbo.encode(dubbo.ResponseFrame(5, 20, dubbo.encode_response("ok"), 2, False)),
    ]


def dns_seeds() -> list[bytes]:
    q = dns.Question("svc.example.mesh", 1, 1)
    return [dns.build_query(0x1234, q), dns.build_query(7, dns.Question("a.b", 28, 1))]


def api_target(drive: Callable[[bytes], object], seeds: list[bytes]) -> Target:
    def reshape(rng: random.Random, seeds: list[bytes]) -> bytes:
        return apis.reshape(rng, seeds, mutate)

    return Target(drive, (apis.Refused4xx,), seeds, reshape)


def targets() -> dict[str, Target]:
    http_errors = (http1.HttpProtocolError,)
    return {
        "http1 fast path": Target(http1_whole, http_errors, http_seeds()),
        "http1 h11": Target(http1_pieces, http_errors, http_seeds()),
        "h2 + guard": Target(h2_server, (h2.H2ConnectionError,), h2_seeds()),
        "h2 lean = h2": Target(h2_differential, (), h2_seeds()),
        "grpc framing": Target(
            grpc_framing, (grpc.GrpcFramingError,), [grpc.encode_message(b"x") + b"1S"]
        ),
        "bolt + sofarpc": Target(bolt_frames, (bolt.RemoteProtocolError, sofarpc.SofaCodecError),
                                 bolt_seeds()),
        "hessian2": Target(hessian, (hessian2.Hessian2DecodeError,), hessian_seeds()),
        "dubbo": Target(dubbo_frames, (dubbo.RemoteProtocolError,), dubbo_seeds()),
        "dns": Target(dns_query, (dns.DnsError,), dns_seeds()),
        "eureka api": api_target(apis.ApiDriver(apis.eureka), apis.eureka_seeds()),
        "consul api": api_target(apis.ApiDriver(apis.consul), apis.consul_seeds()),
        "nacos api": api_target(apis.ApiDriver(apis.nacos), apis.nacos_seeds()),
        "admission review": api_target(apis.admission, apis.admission_seeds()),
    }  # fmt: skip


# -- the engines -------------------------------------------------------------------------------

INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x20, 0x3A, 0x43, 0x4F, 0x51, 0x5A]


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    if rng.random() < 0.1:
        return rng.randbytes(rng.randrange(64))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 8)):
        op, n = rng.randrange(6), len(data)
        at = rng.randrange(n + 1)
        if op == 0 and n:
            data[min(at, n - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[min(at, n - 1)] = rng.choice(INTERESTING)
        elif op == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:
            del data[at : at + rng.randint(1, 16)]
        elif op == 4:
            data[at:at] = data[at : at + rng.randint(1, 32)] * rng.randint(1, 4)
        else:
            other = rng.choice(seeds)
            data[at:] = other[rng.randrange(len(other) + 1) :]
    return bytes(data)


def check(name: str, t: Target, data: bytes, crash_dir: Path | None) -> None:
    try:
        t.drive(data)
        t.accepted += 1
    except t.allowed as exc:
        if "unprocessable input" in str(exc):  # h2 raised something of its own
            t.wrapped += 1
            note(name, t, exc, data, crash_dir)
    except Exception as exc:  # a crash: what the fuzzer is for
        t.crashes += 1
        note(name, t, exc, data, crash_dir)


def note(name: str, t: Target, exc: BaseException, data: bytes, crash_dir: Path | None) -> None:
    if len(t.first) < 3:
        t.first.append(f"{type(exc).__name__}: {str(exc)[:120]} <- {data[:60].hex()}")
    if crash_dir is not None:
        crash_dir.mkdir(parents=True, exist_ok=True)
        (crash_dir / f"{name.split()[0]}-{t.crashes + t.wrapped}.hex").write_text(data.hex())


def run_mutate(name: str, t: Target, n: int, seed: int, crash_dir: Path | None) -> float:
    rng = random.Random(f"{seed}:{name}")
    started = time.perf_counter()
    for _ in range(n):
        check(name, t, (t.mutator or mutate)(rng, t.seeds), crash_dir)
    return time.perf_counter() - started


def run_atheris(name: str, t: Target, n: int, crash_dir: Path | None) -> None:
    """libFuzzer owns the process and ends it with C's exit(): the row is printed, and the
    process ended, from the `n`-th input."""
    import atheris

    corpus = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-corpus-{name.split()[0]}"
    corpus.mkdir(exist_ok=True)
    for i, s in enumerate(t.seeds):
        (corpus / f"seed-{i}").write_bytes(s)
    started, done = time.perf_counter(), [0]

    def one(data: bytes) -> None:
        check(name, t, data, crash_dir)
        done[0] += 1
        if done[0] == n:
            report(name, t, n, time.perf_counter() - started)
            sys.stdout.flush()
            os._exit(1 if t.crashes else 0)

    atheris.instrument_all()  # coverage of the codecs, imported above
    atheris.Setup([sys.argv[0], f"-runs={n * 2}", "-max_len=4096", str(corpus)], one)
    atheris.Fuzz()


def report(name: str, t: Target, n: int, took: float) -> None:
    print(f"| {name} | {n:,} | {t.accepted:,} | {t.crashes} | {t.wrapped} "
          f"| {took:.0f} | {n / took:,.0f} |", flush=True)  # fmt: skip
    for line in t.first:
        print(f"  - {line}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    all_targets = targets()
    ap.add_argument("--inputs", type=int, default=1_000_000, help="inputs per codec")
    ap.add_argument("--codec", action="append", choices=sorted(all_targets), help="only these")
    ap.add_argument("--engine", choices=["mutate", "atheris"], default="mutate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crash-dir", type=Path, help="write crashing inputs here")
    ap.add_argument("--quick", action="store_true", help="2,000 inputs per codec")
    args = ap.parse_args()
    if args.quick:
        args.inputs = 2_000
    chosen = args.codec or list(all_targets)
    if args.engine == "atheris" and len(chosen) != 1:
        sys.exit("--engine atheris runs one --codec per process (libFuzzer owns the process)")
    load = os.getloadavg()
    print(f"engine {args.engine}, seed {args.seed}, {args.inputs:,} inputs per codec; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")  # fmt: skip
    print("| codec | inputs | accepted | crashes | h2 internal errors | seconds | inputs/s |")
    print("|---|---|---|---|---|---|---|")
    crashes = 0
    for name in chosen:
        t = all_targets[name]
        if args.engine == "atheris":
            run_atheris(name, t, args.inputs, args.crash_dir)  # does not return
        report(name, t, args.inputs, run_mutate(name, t, args.inputs, args.seed, args.crash_dir))
        crashes += t.crashes
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
