"""Instructions per call of each piece of the sidecar's Bolt path, counted by callgrind.

    .venv/bin/python benchmarks/bolt_pieces.py [--calls 20000] [--src /work/base/src]
    .venv/bin/python benchmarks/bolt_pieces.py --quick   # 1,000 calls of one piece: a smoke run
    .venv/bin/python benchmarks/bolt_pieces.py --only pick  # the pieces named so

`bolt_instructions.py` counts the whole proxied call; this says which part of it a change
touched. Each piece runs `--calls` times in a process of its own under `valgrind
--tool=callgrind` on `bolt.py`'s request (echo of a 1 KB String as Java SOFARPC frames it)
and a 1 KB response to it; the same process running an empty loop is subtracted, which
leaves the piece's own instructions per call (start-up and imports cancel out). `--src`
counts another checkout's pieces (those it has: a piece it lacks is reported as such).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from netutil import src_env

HERE = Path(__file__).resolve().parent

PIECES = {
    "invocation_of (a request to an Invocation)": "lambda: invocation_of(req)",
    "HeaderPicker.pick (the names routing needs)": "lambda: _PICKER.pick(req.header)",
    "check_header_map (a walk of the request's map)": "lambda: check_header_map(req.header)",
    "invocation_to_frame": "lambda: invocation_to_frame(inv, 0.0)",
    "the request forwarded (invocation_to_frame, encode)": "forward_by_frame",
    "the request forwarded (outbound_request, encode_request_as)": "forward",
    "response_to_result": "lambda: response_to_result(resp)",
    "result_to_response": "lambda: result_to_response(res, req)",
    "encode (a response, under another id)": "lambda: encode(resp, request_id=5)",
    "a response decoded (receive_data, next_frame)": "decode",
}
QUICK = ("HeaderPicker.pick (the names routing needs)",)

_SETUP = """
import sys
sys.path.insert(0, {here!r})
from bolt import request_template
from sofamesh.codecs.bolt import FrameDecoder, encode, reply
from sofamesh.codecs.bolt.headers import check_header_map
from sofamesh.codecs.bolt.sofarpc import encode_response
from sofamesh.protocols.bolt.mapping import (
    _PICKER, invocation_of, invocation_to_frame, response_to_result, result_to_response,
)
first = FrameDecoder()
first.receive_data(request_template())
req = first.next_frame()
resp = reply(req, body=encode_response("x" * 1024))
raw = encode(resp)
inv = invocation_of(req)
inv.caller, inv.deadline = "bench", 1e9
res = response_to_result(resp)
decoder = FrameDecoder()

def forward_by_frame():
    encode(invocation_to_frame(inv, 1e9 - 10.0), request_id=5)

try:  # the one-pass forward, where this checkout has it
    from sofamesh.codecs.bolt import encode_request_as
    from sofamesh.protocols.bolt.mapping import outbound_request

    def forward():
        frame, header, timeout = outbound_request(inv, 1e9 - 10.0)
        encode_request_as(frame, 5, header, timeout)
except ImportError:
    pass

def decode():
    decoder.receive_data(raw)
    decoder.next_frame()
    decoder.next_frame()

piece = {piece}
for _ in range({calls}):
    piece()
"""


def count(piece: str, calls: int, src: str | None, tmp: Path) -> int | None:
    """callgrind's total for `calls` runs of `piece` (None if this checkout cannot run it)."""
    script = tmp / "piece.py"
    script.write_text(_SETUP.format(here=str(HERE), piece=piece, calls=calls))
    out = tmp / "callgrind.out"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
            str(script)]  # fmt: skip
    proc = subprocess.run(argv, env=src_env(src), capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    for line in proc.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split()[-1])
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--src", help="count another checkout's pieces (its src/)")
    ap.add_argument("--quick", action="store_true", help="1,000 calls of one piece")
    ap.add_argument("--only", help="count the pieces whose name contains this")
    args = ap.parse_args()
    names = [name for name in PIECES if args.only is None or args.only in name]
    if args.quick:
        args.calls, names = 1000, list(QUICK)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        empty = count("lambda: None", args.calls, args.src, tmp)
        assert empty is not None, "the empty loop did not run"
        print(f"{args.calls:,} calls of each piece, an empty loop's count subtracted")
        print("\n| piece | instructions per call |\n|---|---|")
        for name in names:
            total = count(PIECES[name], args.calls, args.src, tmp)
            figure = (
                "not in this checkout" if total is None else f"{(total - empty) // args.calls:,}"
            )
            print(f"| {name} | {figure} |")


if __name__ == "__main__":
    main()
