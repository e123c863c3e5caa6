"""Routes for the rules document: current, apply, history, one version, diff, rollback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

from sofamesh.control.api import ApiError, Call, Reply, Route
from sofamesh.control.rules import parse_version
from sofamesh.governance.source import parse_yaml

if TYPE_CHECKING:
    from sofamesh.control.app import ControlPlane


class RulesApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.book = cp.rules

    def routes(self) -> list[Route]:
        base = "/api/v1/workspaces/{ws}/rules"
        return [
            Route("GET", base, "viewer", self.current, "The latest rules version"),
            Route("POST", base, "editor", self.apply, "Validate, store and push", "RulesApply"),
            Route("GET", f"{base}/history", "viewer", self.history, "Every version"),
            Route("GET", f"{base}/versions/{{version}}", "viewer", self.version, "One version"),
            Route("GET", f"{base}/diff", "viewer", self.diff, "Diff ?from=A&to=B"),
            Route(
                "POST", f"{base}/rollback", "editor", self.rollback, "Roll back", "RulesRollback"
            ),
            Route("GET", f"{base}/decisions", "viewer", self.decisions, "Rule decisions"),
        ]

    async def current(self, call: Call) -> Any:
        entry = await self.book.latest(call.workspace)
        if entry is None:
            raise ApiError(404, "no rules applied in this workspace yet")
        return entry

    async def apply(self, call: Call) -> Any:
        body = call.json()
        document = body.get("document")
        if isinstance(document, str):  # YAML text, as written in the operator's file
            try:
                document = await parse_yaml(document)
            except yaml.YAMLError as e:
                raise ApiError(400, f"malformed YAML: {e}") from None
        message = body.get("message", "")
        if not isinstance(message, str):
            raise ValueError("message must be a string")
        entry = await self.book.apply(
            call.workspace,
            document,
            author=call.actor,
            message=message,
            shadow=bool(body.get("shadow", False)),
        )
        await self._applied(call, entry, "rules.apply")
        return Reply(201, entry)

    async def _applied(self, call: Call, entry: dict[str, Any], action: str) -> None:
        await self.cp.records.audit(
            call.actor, call.workspace, action, entry["version"], message=entry["message"]
        )
        self.cp.sessions.changed(call.workspace)

    async def history(self, call: Call) -> Any:
        return await self.book.history(call.workspace)

    async def version(self, call: Call) -> Any:
        entry = await self.book.get(call.workspace, parse_version(call.params["version"]))
        if entry is None:
            raise ApiError(404, f"no version {call.params['version']}")
        return entry

    async def diff(self, call: Call) -> Any:
        try:
            a, b = call.query["from"], call.query["to"]
        except KeyError:
            raise ApiError(400, "name two versions: ?from=A&to=B") from None
        text = await self.book.diff(call.workspace, parse_version(a), parse_version(b))
        if text is None:
            raise ApiError(404, f"no version {a} or {b}")
        return {"from": f"v{parse_version(a)}", "to": f"v{parse_version(b)}", "diff": text}

    async def rollback(self, call: Call) -> Any:
        body = call.json()
        number = parse_version(body.get("version"))
        entry = await self.book.rollback(
            call.workspace, number, author=call.actor, message=str(body.get("message", ""))
        )
        if entry is None:
            raise ApiError(404, f"no version v{number}")
        await self._applied(call, entry, "rules.rollback")
        return Reply(201, entry)

    async def decisions(self, call: Call) -> Any:
        return await self.cp.sessions.decisions(call.workspace)
