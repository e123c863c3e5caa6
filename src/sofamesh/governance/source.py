"""Rules pushed live: the `Governance` holder and the sources that feed it.

`Governance` holds the rules in force (`current`, a `GovernanceState`) and
swaps in a new generation with one assignment (`apply`). `load` validates
plain data first: an invalid document is rejected whole, the error is kept in
`last_error` (for the admin API) and logged, and the last good rules stay in
force. `version`, `origin` and `loaded_at` say what is in force.

A `RulesSource` yields whole documents, never deltas (as registries yield
whole snapshots): `FileRulesSource` polls a file's metadata and content hash,
`InlineRulesSource` yields the sidecar config's inline rules once. An etcd or
ZooKeeper source fits the same shape -- a watch on one key or node yielding
its value on each change. `watch_rules(governance, source)` runs one source
as a background task for the life of an ``async with`` block, and returns
only once the first document has been loaded. If that one cannot be used, it
raises `ConfigError` (fail closed), unless `Governance.last_good` keeps the last
document accepted before (a sidecar's restart), which is then put in force.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio
import anyio.abc
import anyio.to_thread
import attrs

from sofamesh.clock import Clock, MonotonicClock
from sofamesh.config.structure import ConfigError
from sofamesh.governance.filters.metrics import prometheus_lines
from sofamesh.governance.options import Options

if TYPE_CHECKING:
    from sofamesh.governance.filters.degrade import Fallback
    from sofamesh.governance.filters.state import GovernanceState
    from sofamesh.governance.rules import RulesDocument

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


# -- sources ----------------------------------------------------------------------------------


@attrs.frozen
class RulesSnapshot:
    """One whole document from a source, or why the source could not produce one."""

    origin: str  # "file:/etc/sofamesh/rules.yaml", "inline", "etcd:/sofamesh/rules", ...
    data: Any = None
    error: str | None = None


class RulesSource(Protocol):
    def watch(self) -> AbstractAsyncContextManager[AsyncIterator[RulesSnapshot]]:
        """Yield the current document, then each change, until cancelled."""
        ...


class InlineRulesSource:
    """Rules written inline in the mesh config: one document, changed only by a restart."""

    def __init__(self, data: Any, origin: str = "inline") -> None:
        self._snapshot = RulesSnapshot(origin, data)

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[AsyncIterator[RulesSnapshot]]:
        yield self._once()

    async def _once(self) -> AsyncIterator[RulesSnapshot]:
        yield self._snapshot


class FileRulesSource:
    """A YAML or JSON file, polled every `poll_interval` seconds and yielded when its content
    changes. Write it atomically (write elsewhere, then rename) so that a poll never reads half
    a document -- though half a document would only be rejected, never applied."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        poll_interval: float = 0.5,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.path = anyio.Path(path)
        self.origin = f"file:{path}"
        self._interval = poll_interval
        self._sleep = sleep

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[AsyncIterator[RulesSnapshot]]:
        polls = self._poll()
        try:
            yield polls
        finally:
            await polls.aclose()

    async def _poll(self) -> AsyncGenerator[RulesSnapshot, None]:
        # The whole file is read on every poll: comparing content (not mtime, whose
        # granularity can hide a quick second write) never misses a change. Only a change
        # is parsed, and off the loop: a large document takes seconds to parse.
        seen: tuple[bool, str] | None = None  # (read, its text) or (not read, why)
        while True:
            try:
                text = await self.path.read_text()
            except (OSError, UnicodeDecodeError) as e:
                problem = f"cannot read: {getattr(e, 'strerror', None) or e}"
                if (False, problem) != seen:
                    seen = (False, problem)
                    yield RulesSnapshot(self.origin, error=problem)
            else:
                if (True, text) != seen:
                    seen = (True, text)
                    yield await parse_document(self.origin, text)
            await self._sleep(self._interval)


async def parse_document(origin: str, text: str) -> RulesSnapshot:
    """A YAML (or JSON) document as plain data, or why it is not one."""
    import yaml  # loaded with the first rules document, not at start

    try:
        return RulesSnapshot(origin, await parse_yaml(text))
    except yaml.YAMLError as e:
        return RulesSnapshot(origin, error=f"not valid YAML/JSON: {e}")


async def parse_yaml(text: str) -> Any:
    """YAML text as plain data, parsed in a worker thread so that the loop keeps serving
    meanwhile (2 MiB of YAML takes seconds); raises `yaml.YAMLError`."""
    return await anyio.to_thread.run_sync(_load_yaml, text)


def _load_yaml(text: str) -> Any:
    import yaml

    # libyaml's safe loader where PyYAML was built with it (about four times faster).
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class LastGoodRules:
    """The last document a source offered that was accepted, kept in a file (JSON).

    A process that restarts while its source offers an invalid document runs on this
    one rather than on no rules at all. Written atomically: a crash mid-write leaves
    the previous document.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def save(self, data: Any) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, default=str))
            os.replace(tmp, self.path)
        except (OSError, TypeError, ValueError) as e:
            log.warning("cannot keep the last good rules at %s: %s", self.path, e)

    def load(self) -> Any:
        """The document kept, or None if there is none (or it cannot be read)."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("cannot read the last good rules at %s: %s", self.path, e)
            return None


async def follow(
    source: RulesSource,
    governance: Governance,
    *,
    task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Feed every document `source` yields to `governance`; started after the first one.

    Started with the problems of the first document if it could not be used and no
    last good document stands in for it (and then returns): a process must not serve
    without the rules it was given (fail closed).
    """
    started = False
    async with source.watch() as snapshots:
        async for snap in snapshots:
            ok = await _offer(governance, snap)
            if not started:
                started = True
                if not ok and not await _start_on_last_good(governance):
                    task_status.started(governance.last_problems)
                    return
                task_status.started([])
    if not started:
        task_status.started([])


async def _offer(governance: Governance, snap: RulesSnapshot) -> bool:
    if snap.error is not None:
        governance.reject(snap.origin, [snap.error])
        return False
    ok = governance.load(snap.data, snap.origin)
    if ok and governance.last_good is not None:
        await anyio.to_thread.run_sync(governance.last_good.save, snap.data)
    return ok


async def _start_on_last_good(governance: Governance) -> bool:
    store = governance.last_good
    data = None if store is None else await anyio.to_thread.run_sync(store.load)
    if store is None or data is None:
        return False
    problems = governance.last_problems
    if not governance.load(data, f"last-good:{store.path}"):
        governance.last_problems = problems
        return False
    log.error(
        "the rules offered at start are invalid; running on the LAST GOOD rules (%s, kept "
        "at %s) until a valid document arrives:\n%s",
        governance.version,
        store.path,
        "\n".join(f"  - {p}" for p in problems),
    )
    return True


@asynccontextmanager
async def watch_rules(governance: Governance, source: RulesSource) -> AsyncIterator[Governance]:
    """Keep `governance` in step with `source` while the block runs.

    Raises `ConfigError` listing the problems if the first document cannot be used.
    """
    async with anyio.create_task_group() as tg:
        problems = await tg.start(follow, source, governance)
        if not problems:
            try:
                yield governance
            finally:
                tg.cancel_scope.cancel()
    if problems:
        raise ConfigError(problems)


class RegistryRulesSource:
    """The rules document stored in the registry (etcd key, ZooKeeper node) as `name`.

    The registry's `watch_document` yields the text now and after each change;
    a document that does not exist means no rules.
    """

    def __init__(self, registry: Any, name: str) -> None:
        self._registry = registry
        self._name = name
        self.origin = f"registry:{name}"

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[AsyncIterator[RulesSnapshot]]:
        async with self._registry.watch_document(self._name) as texts:
            snapshots = self._parse(texts)
            try:
                yield snapshots
            finally:
                await snapshots.aclose()

    async def _parse(self, texts: AsyncIterator[str | None]) -> AsyncGenerator[RulesSnapshot, None]:
        async for text in texts:
            if text is None:
                yield RulesSnapshot(self.origin, {})
            else:
                yield await parse_document(self.origin, text)


def rules_source(
    *, inline: Any = None, path: str | os.PathLike[str] | None = None, poll_interval: float = 0.5
) -> RulesSource | None:
    """The source a mesh config names: a watched file, inline rules, or none."""
    if path is not None:
        return FileRulesSource(path, poll_interval)
    if inline is not None:
        return InlineRulesSource(inline)
    return None
