"""Versioned rules documents per workspace: apply (validated), history, diff, rollback.

A version is the document as the operator wrote it (the format data planes read,
see docs/configuration.md "Rules document"), with its number, author, time and
message. `apply` runs the data plane's own parser (`parse_rules`) first: a
document it refuses is refused whole, with every problem and its path, and
nothing is stored or pushed. What data planes receive is `pushed(version)`: the
document with `version: vN`, so a data plane's `/config_dump` names the version
it runs and its ack can be matched.

Versions are allocated with the store's `create` (the first writer of
`rules/WS/00000007` wins; a loser tries the next number), so two control planes
sharing a store never hand out one number twice. `rulehead/WS` names the latest
version, read by every long-poll without listing the history.
"""

from __future__ import annotations

import copy
import difflib
import time
from typing import Any

import attrs
import yaml

from sofamesh.config.structure import ConfigError
from sofamesh.control.records import Records
from sofamesh.governance.rules import parse_rules

# Sections whose rules carry an `enforcement` block (shadow mode, enforced fractions).
ENFORCING = ("breakers", "rate_limits", "hot_params", "resource_limits", "fallbacks")


class Refused(Exception):
    """A document the data planes' parser would refuse; `problems` has every one, with paths."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def validate(document: Any) -> dict[str, Any]:
    """The document as plain data if the data planes would accept it, else `Refused`."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise Refused([f"(top level): expected a mapping, got {type(document).__name__}"])
    try:
        parse_rules(document)
    except ConfigError as e:
        raise Refused(list(e.problems)) from None
    return document


def in_shadow(document: dict[str, Any]) -> dict[str, Any]:
    """The document with every enforcing rule in shadow mode (counted, never enforced)."""
    doc = copy.deepcopy(document)
    for section in ENFORCING:
        for rule in doc.get(section) or ():
            if isinstance(rule, dict):
                rule.setdefault("enforcement", {})["shadow"] = True
    auth = doc.get("auth")
    for side in ("inbound", "outbound"):  # each direction's policy has its own enforcement
        policy = auth.get(side) if isinstance(auth, dict) else None
        if isinstance(policy, dict):
            policy.setdefault("enforcement", {})["shadow"] = True
    return doc


def version_name(number: int) -> str:
    return f"v{number}"


def parse_version(text: object) -> int:
    """`7` or `v7` -> 7."""
    raw = str(text).removeprefix("v")
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"a version is a positive number like 7 or v7, got {text!r}")
    return int(raw)


@attrs.define
class RulesBook:
    records: Records

    async def head(self, workspace: str) -> int:
        """The latest version number of `workspace` (0: none yet)."""
        head = await self.records.get_json(f"rulehead/{workspace}")
        return int(head["version"]) if head else 0

    async def get(self, workspace: str, number: int) -> dict[str, Any] | None:
        return await self.records.get_json(f"rules/{workspace}/{number:08d}")  # type: ignore[no-any-return]

    async def latest(self, workspace: str) -> dict[str, Any] | None:
        number = await self.head(workspace)
        return await self.get(workspace, number) if number else None

    async def history(self, workspace: str) -> list[dict[str, Any]]:
        return [
            {k: v[k] for k in ("version", "author", "time", "message", "shadow", "rollback_of")}
            for v in await self.records.list_json(f"rules/{workspace}/")
        ]

    async def apply(
        self,
        workspace: str,
        document: Any,
        *,
        author: str,
        message: str = "",
        shadow: bool = False,
        rollback_of: str | None = None,
    ) -> dict[str, Any]:
        """Validate, then store as the next version; returns the stored version."""
        doc = validate(document)
        doc = {k: v for k, v in doc.items() if k != "version"}  # the control plane numbers them
        if shadow:
            doc = in_shadow(doc)
        number = await self.head(workspace) + 1
        while True:
            entry = {
                "version": version_name(number),
                "number": number,
                "author": author,
                "time": time.time(),
                "message": message,
                "shadow": shadow,
                "rollback_of": rollback_of,
                "document": doc,
            }
            if await self.records.create_json(f"rules/{workspace}/{number:08d}", entry):
                break
            number += 1
        await self._advance_head(workspace, number)
        return entry

    async def _advance_head(self, workspace: str, number: int) -> None:
        if await self.head(workspace) < number:
            await self.records.put_json(f"rulehead/{workspace}", {"version": number})

    async def rollback(
        self, workspace: str, number: int, *, author: str, message: str = ""
    ) -> dict[str, Any] | None:
        """A new version whose document equals version `number`'s; None if there is none."""
        old = await self.get(workspace, number)
        if old is None:
            return None
        return await self.apply(
            workspace,
            old["document"],
            author=author,
            message=message or f"rollback to {old['version']}",
            rollback_of=old["version"],
        )

    async def diff(self, workspace: str, a: int, b: int) -> str | None:
        """A unified diff of two versions' documents as YAML; None if either is missing."""
        old, new = await self.get(workspace, a), await self.get(workspace, b)
        if old is None or new is None:
            return None
        return "".join(
            difflib.unified_diff(
                _yaml(old["document"]),
                _yaml(new["document"]),
                fromfile=old["version"],
                tofile=new["version"],
            )
        )


def _yaml(document: Any) -> list[str]:
    text: str = yaml.safe_dump(document, sort_keys=True, default_flow_style=False)
    return text.splitlines(keepends=True)


def pushed(entry: dict[str, Any]) -> dict[str, Any]:
    """What data planes receive for a stored version: its document, named by its version."""
    return {**entry["document"], "version": entry["version"]}
