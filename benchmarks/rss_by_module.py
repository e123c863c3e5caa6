"""Where a process's resident memory goes, by the package whose import paid for it.

    .venv/bin/python benchmarks/rss_by_module.py PORT[,PORT...] SETTLE -m MODULE ARGS...

Runs `MODULE` in this process (as `python -m MODULE ARGS` would) with an import
hook that reads `VmRSS` around each module's loading and execution. Once every
port accepts connections and `SETTLE` seconds more have passed, it prints to
stderr, in MB, the RSS each package added by its own imports (a module's own
cost is its total minus that of the modules it imported), the interpreter's
start, and what the running process added beyond imports (loop, listeners,
config and runtime objects, threads), then exits. `idle_rss.py --breakdown`
runs it over the sidecar with every protocol (waiting on the admin API's port only: a
connection to a listener would load its protocol). With `RSS_BY_MODULE_JSON=PATH` it also
writes every module's own cost there, `{module: [heap MB, RSS MB]}`. Modules this helper
imports itself before its hook (importlib's, pathlib, tempfile) are not in the ledger.

The Python heap column is exact (tracemalloc); the RSS column grows in whole
pages and arenas, so it is noisy per module, and it holds tracemalloc's own
records (about a third more than the heap it traces): take the process's total
from `idle_rss.py` itself. Shared libraries (OpenSSL under `_hashlib` and
`_ssl`, uvloop) show in the RSS column only.
"""

# ruff: noqa: E402  (tracemalloc starts before the other imports, to see theirs)
from __future__ import annotations

import tracemalloc  # first, so that it sees every allocation after the interpreter's start


def _rss_at_start() -> float:
    with open("/proc/self/status") as f:
        return int(next(ln for ln in f if ln.startswith("VmRSS:")).split()[1]) / 1024


START = _rss_at_start()
tracemalloc.start()

import importlib.abc
import importlib.machinery
import os
import runpy
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from types import ModuleType
from typing import Any


def heap_mb() -> float:
    return tracemalloc.get_traced_memory()[0] / 2**20


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Ledger:
    """Each module's own cost: its load's total minus its nested imports' totals.

    Two measures: the Python heap tracemalloc traces (exact, per allocation) and
    RSS (what the goal counts, but grown in whole arenas and pages, so noisy per
    module; shared libraries show only here).
    """

    def __init__(self) -> None:
        self.own: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self._stack: list[list[float]] = [[0.0, 0.0]]  # per open load: children's totals

    def measure(self, name: str, step: Any, *args: Any) -> Any:
        self._stack.append([0.0, 0.0])
        before = (heap_mb(), rss_mb())
        try:
            return step(*args)
        finally:
            total = (heap_mb() - before[0], rss_mb() - before[1])
            children = self._stack.pop()
            for i in (0, 1):
                self.own[name][i] += total[i] - children[i]
                self._stack[-1][i] += total[i]


class Measured(importlib.abc.Loader):
    def __init__(self, inner: Any, ledger: Ledger) -> None:
        self.inner, self.ledger = inner, ledger

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        # extension modules are loaded (dlopen) here
        return self.ledger.measure(spec.name, self.inner.create_module, spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        self.ledger.measure(module.__name__, self.inner.exec_module, module)

    def __getattr__(self, name: str) -> Any:  # get_data, is_package, ... for importers that ask
        return getattr(self.inner, name)


class Finder(importlib.abc.MetaPathFinder):
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = Measured(spec.loader, self.ledger)
                return spec
        return None


def group(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "sofamesh" and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0]


def report(ledger: Ledger, start: float, ports: list[int], settle: float) -> None:
    for port in ports:  # netutil.wait_port, without name resolution (it would load idna)
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
    time.sleep(settle)
    tracemalloc.stop()  # its own bookkeeping (about as large as what it traced) goes
    total = rss_mb()
    by_group: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for name, (py, rs) in ledger.own.items():
        by_group[group(name)][0] += py
        by_group[group(name)][1] += rs
    imported = [sum(v[i] for v in by_group.values()) for i in (0, 1)]
    rows = sorted(by_group.items(), key=lambda i: -i[1][0])
    lines = [f"| interpreter at start | | {start:.1f} |"]
    lines += [f"| {g} | {py:.2f} | {rs:.2f} |" for g, (py, rs) in rows if max(py, rs) >= 0.05]
    small = [v for _, v in rows if max(v) < 0.05]
    lines.append(
        f"| {len(small)} others | {sum(v[0] for v in small):.2f} | {sum(v[1] for v in small):.2f} |"
    )
    lines.append(f"| imports, all | {imported[0]:.1f} | {imported[1]:.1f} |")
    lines.append(
        f"| running (loop, listeners, objects, threads) | | {total - start - imported[1]:.1f} |"
    )
    lines.append(f"| **total RSS** | | **{total:.1f}** |")
    head = "| what | Python heap MB | RSS MB |\n|---|---|---|\n"
    print(head + "\n".join(lines), file=sys.stderr, flush=True)
    dump = os.environ.get("RSS_BY_MODULE_JSON")
    if dump:  # every module's own cost, for `idle_rss.py --modules`
        import json  # here: the sidecar's own import of json is the one measured

        with open(dump, "w") as f:
            json.dump({name: own for name, own in ledger.own.items()}, f)
    os._exit(0)


def main() -> None:
    start = START
    ports = [int(p) for p in sys.argv[1].split(",")]
    settle = float(sys.argv[2])
    assert sys.argv[3] == "-m", "usage: PORTS SETTLE -m MODULE ARGS..."
    module = sys.argv[4]
    ledger = Ledger()
    sys.meta_path.insert(0, Finder(ledger))
    threading.Thread(target=report, args=(ledger, start, ports, settle), daemon=True).start()
    sys.argv = [module, *sys.argv[5:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
