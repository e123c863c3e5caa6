"""The rules in force: the `Governance` holder of one mesh process (SDK instance or sidecar).

`Governance` holds the rules in force (`current`, a `GovernanceState`) and
swaps in a new generation with one assignment (`apply`). `load` validates
plain data first: an invalid document is rejected whole, the error is kept in
`last_error` (for the admin API) and logged, and the last good rules stay in
force. `version`, `origin` and `loaded_at` say what is in force. Until a
document is applied or read, the empty document's state is `NoRulesYet`,
built on first read. The sources that feed it live in `source.py`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, cast

import anyio

from sofamesh.clock import Clock, MonotonicClock
from sofamesh.config.structure import ConfigError
from sofamesh.governance.filters.metrics import prometheus_lines
from sofamesh.governance.options import Options

if TYPE_CHECKING:
    from sofamesh.governance.filters.degrade import Fallback
    from sofamesh.governance.filters.state import GovernanceState
    from sofamesh.governance.rules import RulesDocument
    from sofamesh.governance.source import LastGoodRules

log = logging.getLogger("sofamesh.governance")


class Governance:
    """The rules in force for one mesh process (SDK instance or sidecar)."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        options: Options | None = None,
        document: RulesDocument | None = None,
    ) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.current: GovernanceState = (
            _state(document, None, options) if document is not None else _unbuilt(self, options)
        )
        self.code_fallbacks: dict[tuple[str, str, str], Fallback] = {}
        self.version = document.version if document is not None else EMPTY_VERSION
        self.origin = "default"
        self.loaded_at: float | None = None  # wall-clock time of the last accepted change
        self.last_error: str | None = (
            None  # why the last change was rejected (None once one is accepted)
        )
        self.attempts = 0  # documents offered (accepted or not)
        self.rejected = 0
        self.last_problems: list[str] = []  # those of the last rejected document
        self.last_good: LastGoodRules | None = None  # where accepted documents are kept
        self._waiters: list[anyio.Event] = []

    def apply(self, document: RulesDocument, origin: str = "api") -> None:
        """Put a validated document in force at once, keeping the state of unchanged rules."""
        self.current = _state(document, self.current)
        self.version = document.version
        self.origin = origin
        self.loaded_at = time.time()
        self.last_error = None
        log.info("governance rules %s from %s in force", document.version, origin)

    def load(self, data: Any, origin: str) -> bool:
        """Validate plain data and apply it; False (and `last_error`) if it is invalid."""
        self.attempts += 1
        try:
            from sofamesh.governance.rules import parse_rules  # the rules model, on first use

            doc = parse_rules(data)
            if doc != self.current.document:
                self.apply(doc, origin)
            else:
                self.origin, self.last_error = origin, None
        except ConfigError as e:
            self.reject(origin, e.problems, counted=False)
            return False
        except Exception as e:  # a bug; a rules push must still never take the process down
            log.exception("applying governance rules from %s failed", origin)
            self.reject(origin, [f"cannot apply: {e!r}"], counted=False)
            return False
        finally:
            self._wake()
        return True

    def reject(self, origin: str, problems: list[str], *, counted: bool = True) -> None:
        """Record a change that cannot be used; the rules in force stay."""
        if counted:
            self.attempts += 1
        self.rejected += 1
        self.last_problems = [f"{origin}: {p}" for p in problems]
        self.last_error = f"{origin}: rules rejected, {self.version} stays in force:\n" + "\n".join(
            f"  - {p}" for p in problems
        )
        log.error("%s", self.last_error)
        if counted:
            self._wake()

    async def wait_attempt(self, attempts: int) -> None:
        """Wait until more than `attempts` documents have been offered (tests, admin reloads)."""
        while self.attempts <= attempts:
            event = anyio.Event()
            self._waiters.append(event)
            await event.wait()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()

    # -- degradation registered in code (SDK) ---------------------------------------------

    def set_fallback(
        self, service: str, fallback: Fallback, *, method: str = "", direction: str = "outbound"
    ) -> None:
        """Answer for `service` (and `method`; "" = every method) when a rule rejects a call."""
        self.code_fallbacks[(direction, service, method)] = fallback

    def remove_fallback(
        self, service: str, *, method: str = "", direction: str = "outbound"
    ) -> None:
        self.code_fallbacks.pop((direction, service, method), None)

    # -- visibility ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What is in force and how the last change went (for /config_dump)."""
        return {
            "version": self.version,
            "origin": self.origin,
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
            "attempts": self.attempts,
            "rejected": self.rejected,
        }

    def snapshot(self) -> dict[str, Any]:
        """`status()` plus every rule's decisions (for /stats JSON)."""
        return {**self.status(), "rules": self.current.snapshot(self.clock.now())}

    def prometheus(self) -> str:
        """The same counters as Prometheus text lines."""
        return "".join(prometheus_lines(self.snapshot()))

    def breaker_states(self) -> dict[str, list[dict[str, Any]]]:
        """Per service, the state of each circuit breaker (for /clusters)."""
        return self.current.breaker_states(self.clock.now())


# -- the empty document's state, built on first read -------------------------------------------

EMPTY_VERSION = "empty"  # `rules.EMPTY.version`


def _state(
    document: RulesDocument, previous: GovernanceState | None, options: Options | None = None
) -> GovernanceState:
    from sofamesh.governance.filters.state import GovernanceState

    return GovernanceState(document, previous, options)


class NoRulesYet:
    """Stands in for the empty document's `GovernanceState` until something reads it.

    The rules model and every kind's filter module (1.7 MB of an idle sidecar) load only then:
    an idle sidecar without rules composes no governance filter (`compose.py`
    checks for this stand-in) and never reads it. Its first attribute read builds
    the real state and puts it in force; a document applied on top of it starts
    from no leaves and its options, as it would from the empty state.
    """

    leaves: dict[str, Any] = {}

    def __init__(self, governance: Governance, options: Options) -> None:
        self.governance = governance
        self.options = options

    def __getattr__(self, name: str) -> Any:
        if name in ("governance", "options"):  # not set yet (a copy in the making)
            raise AttributeError(name)
        from sofamesh.governance.rules import EMPTY

        if self.governance.current is cast(Any, self):
            self.governance.current = _state(EMPTY, None, self.options)
        return getattr(self.governance.current, name)


def _unbuilt(governance: Governance, options: Options | None) -> GovernanceState:
    # Typed as the state it stands in for: every read past `leaves` and `options` is its.
    return cast("GovernanceState", NoRulesYet(governance, options or Options()))
