"""Count the demo's calls and print a live, readable summary."""

from __future__ import annotations

from collections import Counter, defaultdict

import anyio


class Tally:
    def __init__(self) -> None:
        self.phase: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.total: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)

    def record(self, caller: str, service: str, status: int, instance: str) -> None:
        key = "ok" if status == 200 else f"error {status or instance}"
        for bucket in (self.phase, self.total):
            bucket[(caller, service)][key] += 1
            if status == 200:
                bucket[(caller, service)]["@" + instance] += 1

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

    async def show_for(self, title: str, seconds: float) -> None:
        self.phase.clear()
        print(f"--- {title}", flush=True)
        elapsed = 0.0
        while elapsed < seconds:
            await anyio.sleep(1.0)
            elapsed += 1.0
            print(self.render(elapsed), flush=True)

    def render(self, elapsed: float) -> str:
        lines = [f"  t+{elapsed:.0f}s"]
        for (caller, service), c in sorted(self.phase.items()):
            spread = "  ".join(f"{k[1:]}:{n}" for k, n in sorted(c.items()) if k.startswith("@"))
            errors = sum(n for k, n in c.items() if k.startswith("error"))
            lines.append(
                f"    {caller:<24} -> {service:<22} ok {c['ok']:>4}  errors {errors:>3}   {spread}"
            )
        return "\n".join(lines)
