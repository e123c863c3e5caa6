"""Why a sidecar cannot start or run, as one line for the operator (no traceback)."""

from __future__ import annotations

from collections.abc import Iterator

from sofamesh.config import ConfigError


class SidecarError(RuntimeError):
    """A fatal runtime problem whose message names the cause (a busy port, a token file)."""


def leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, or `error` itself."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def describe(error: BaseException) -> tuple[int, str] | None:
    """(exit status, message) for a failure the operator can fix; None for a bug.

    2 for configuration problems (every one listed), 1 for runtime ones (one line each).
    """
    found = list(leaves(error))
    problems = [p for e in found if isinstance(e, ConfigError) for p in e.problems]
    if problems:
        return 2, str(ConfigError(problems))
    if found and all(isinstance(e, SidecarError | OSError) for e in found):
        return 1, "; ".join(dict.fromkeys(_one_line(e) for e in found))
    return None


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
