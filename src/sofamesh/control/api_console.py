"""Routes the console needs beyond the rest of the API: live samples, per-data-plane
decisions, a dry run of a rules document (problems, YAML, diff; nothing stored), and
logging out (the caller's own token revoked at once, not left to expire).

Ordinary routes of the one table: the CLI and any other client may use them too,
with the same roles.
"""

from __future__ import annotations

import difflib
import time
from typing import TYPE_CHECKING, Any

import yaml

from sofamesh.control.api import ApiError, Call, Route
from sofamesh.control.auth import token_hash
from sofamesh.control.rules import Refused, validate
from sofamesh.governance.source import parse_yaml

if TYPE_CHECKING:
    from sofamesh.control.app import ControlPlane


# libyaml's emitter when PyYAML has it: a document of hundreds of rules dumps ten times faster.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def as_yaml(document: Any) -> str:
    text: str = yaml.dump(document or {}, Dumper=_DUMPER, sort_keys=True, default_flow_style=False)
    return "" if text == "{}\n" else text


class ConsoleApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def routes(self) -> list[Route]:
        ws = "/api/v1/workspaces/{ws}"
        return [
            Route("POST", "/api/v1/logout", "user", self.logout, "Revoke the caller's own token"),
            Route(
                "GET",
                f"{ws}/services/{{name}}/samples",
                "viewer",
                self.service_samples,
                "A service's golden metrics over the last 15 minutes",
            ),
            Route(
                "GET",
                f"{ws}/rules/decisions/dataplanes",
                "viewer",
                self.decisions_per_dataplane,
                "Every rule's decisions per data plane",
            ),
            Route(
                "POST",
                f"{ws}/rules/preview",
                "viewer",
                self.preview_rules,
                "Check a document: problems, YAML, diff against the latest (stores nothing)",
                "RulesApply",  # the same body; `message` and `shadow` are ignored
            ),
        ]

    async def logout(self, call: Call) -> Any:
        bearer = (call.request.header(b"authorization") or b"").decode("latin-1")
        key = f"tokens/{token_hash(bearer.partition(' ')[2].strip())}"
        record = await self.cp.records.get_json(key)
        if record is None:  # the dispatcher found it a moment ago: another replica's cache
            raise ApiError(404, "no such token")
        record["revoked"] = True
        await self.cp.records.put_json(key, record)
        self.cp.dispatcher.forget()
        await self.cp.records.audit(call.actor, record["workspace"], "token.revoke", record["id"])
        return {"revoked": record["id"]}

    async def service_samples(self, call: Call) -> Any:
        ring = self.cp.sessions.samples
        series = await ring.read(call.workspace, call.params["name"], time.time())
        return {"service": call.params["name"], "bucket": ring.bucket, "samples": series}

    async def decisions_per_dataplane(self, call: Call) -> Any:
        rows = []
        for dp in await self.cp.sessions.planes.list(call.workspace):
            for row in dp.get("decisions") or []:
                if isinstance(row, dict):
                    rows.append({**row, "dataplane": dp["id"], "app": dp.get("app")})
        return sorted(rows, key=lambda r: (str(r.get("kind")), str(r.get("name")), r["dataplane"]))

    async def preview_rules(self, call: Call) -> Any:
        document = call.json().get("document")
        if isinstance(document, str):
            try:
                document = await parse_yaml(document)
            except yaml.YAMLError as e:
                raise ApiError(400, f"malformed YAML: {e}") from None
        problems: list[str] = []
        try:
            validate(document)
        except Refused as e:
            problems = e.problems
        latest = await self.cp.rules.latest(call.workspace)
        after = as_yaml(document) if isinstance(document, dict) else ""
        same = latest is not None and latest["document"] == document  # the YAML page's load
        before = after if same else as_yaml(latest["document"]) if latest else ""
        base = latest["version"] if latest else "(none)"
        diff = difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=base,
            tofile="draft",
        )
        return {
            "valid": not problems,
            "problems": problems,
            "document": document,
            "yaml": after,
            "base": latest["version"] if latest else None,
            "diff": "".join(diff),
        }
