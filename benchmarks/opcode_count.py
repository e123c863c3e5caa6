"""Bytecodes executed per Python function, counted exactly while switched on: a profile that
repeats from run to run, as callgrind's counts do, but by Python function.

    .venv/bin/python benchmarks/opcode_count.py MODULE [ARGS...]   # runs `python -m MODULE`

SIGUSR1 starts counting, SIGUSR2 stops it and writes the counts to `$OPCODES_OUT` (JSON rows:
file, first line, function, bytecodes, calls; a coroutine's every resumption counts as a
call). Counting traces every bytecode (`sys.settrace` with `f_trace_opcodes`), so the
process runs some 20-50x slower, on the main thread only; the counts do not depend on the
clock. `grpc_instructions.py --opcodes` runs the sidecar under it and prints `report`'s
table: the functions that execute the most bytecodes per proxied call.

A bytecode is not a fixed cost (a call or a dict look-up does far more work in C than a
local load), so the table ranks where Python code runs, not instructions: callgrind's
count stays the measure, this says which functions to read.
"""

from __future__ import annotations

import collections
import json
import os
import runpy
import signal
import sys
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

_ops: collections.Counter[CodeType] = collections.Counter()
_calls: collections.Counter[CodeType] = collections.Counter()


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "opcode":
        _ops[frame.f_code] += 1
    return _local


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "call":  # also each resumption of a generator or coroutine
        frame.f_trace_opcodes = True
        _calls[frame.f_code] += 1
        return _local
    return None


def _start(*_: object) -> None:
    _ops.clear()
    _calls.clear()
    sys.settrace(_global)


def _stop(*_: object) -> None:
    sys.settrace(None)
    rows = [
        ["/".join(Path(code.co_filename).parts[-2:]), code.co_firstlineno, code.co_name, n,
         _calls[code]]
        for code, n in _ops.items()
    ]  # fmt: skip
    Path(os.environ["OPCODES_OUT"]).write_text(json.dumps(rows))


def report(path: Path, per: int, n: int, what: str = "call") -> None:
    """The `n` functions with the most bytecodes, per `what` (`per` of them counted)."""
    rows = json.loads(path.read_text())
    total = sum(r[3] for r in rows)
    print(f"\n{total / per:,.0f} bytecodes per {what} in Python functions")
    print(f"\n| bytecodes per {what} | runs per {what} | function |\n|---|---|---|")
    for file, line, func, ops, calls in sorted(rows, key=lambda r: -r[3])[:n]:
        print(f"| {ops / per:,.1f} | {calls / per:.2f} | {file}:{line} {func} |")


def main() -> None:
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
