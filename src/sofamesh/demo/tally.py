"""Count the demo's calls and print a live, readable summary."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

import anyio


class Tally:
    def __init__(self) -> None:
        self.phase: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.total: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self._reached = anyio.Event()

    def record(self, caller: str, service: str, status: int, instance: str) -> None:
        key = "ok" if status == 200 else f"error {status or instance}"
        for bucket in (self.phase, self.total):
            bucket[(caller, service)][key] += 1
            if status == 200:
                bucket[(caller, service)]["@" + instance] += 1
        if status == 200 and self.phase[(caller, service)]["ok"] == 1:  # a pair reached
            self._reached.set()
            self._reached = anyio.Event()

    async def wait_reached(self, pairs: int) -> None:
        """Until `pairs` (caller, service) pairs have had a successful call in this phase."""
        while self.pairs_reached() < pairs:
            await self._reached.wait()

    def phase_errors(self) -> int:
        return sum(n for c in self.phase.values() for k, n in c.items() if k.startswith("error"))

    def phase_instances(self, service: str) -> set[str]:
        return {
            k[1:]
            for (_, s), c in self.phase.items()
            if s == service
            for k in c
            if k.startswith("@")
        }

    def instances(self, service: str) -> set[str]:
        return self.phase_instances(service)

    def pairs_reached(self) -> int:
        """How many (caller, service) pairs had a successful call in this phase."""
        return sum(1 for c in self.phase.values() if c["ok"])

    async def show_until(
        self, title: str, seconds: float, done: Callable[[], Awaitable[bool]], limit: float
    ) -> bool:
        """Print the phase's calls each second for at least `seconds`, then on until `done()`
        holds or `limit` seconds have passed (a loaded machine is slow, not wrong); whether
        `done()` held. Seconds are the clock's, however late each print comes."""
        self.phase.clear()
        print(f"--- {title}", flush=True)
        start = anyio.current_time()
        while True:
            await anyio.sleep(1.0)
            elapsed = anyio.current_time() - start
            print(self.render(elapsed), flush=True)
            if elapsed >= seconds and await done():
                return True
            if elapsed >= limit:
                return False

    def render(self, elapsed: float) -> str:
        lines = [f"  t+{elapsed:.0f}s"]
        for (caller, service), c in sorted(self.phase.items()):
            spread = "  ".join(f"{k[1:]}:{n}" for k, n in sorted(c.items()) if k.startswith("@"))
            errors = sum(n for k, n in c.items() if k.startswith("error"))
            lines.append(
                f"    {caller:<24} -> {service:<22} ok {c['ok']:>4}  errors {errors:>3}   {spread}"
            )
        return "\n".join(lines)
