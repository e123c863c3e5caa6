"""Routes for data planes (report, watch, ack) and for operators (inventory, catalog, actions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sofamesh.control.api import ApiError, Call, Route

if TYPE_CHECKING:
    from sofamesh.control.app import ControlPlane


class DataPlaneApi:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.sessions = cp.sessions

    def routes(self) -> list[Route]:
        ws = "/api/v1/workspaces/{ws}"
        dp = f"{ws}/dataplanes/{{id}}"
        return [
            Route("POST", f"{ws}/dataplanes", "dataplane", self.report, "Report in", "Report"),
            Route("GET", f"{dp}/watch", "dataplane", self.watch, "Long-poll for newer resources"),
            Route("POST", f"{dp}/ack", "dataplane", self.ack, "Ack or nack a version", "Ack"),
            Route("GET", f"{ws}/sidecars", "viewer", self.inventory, "Every data plane"),
            Route("GET", f"{ws}/sidecars/{{id}}", "viewer", self.one, "One data plane"),
            Route(
                "POST",
                f"{ws}/sidecars/{{id}}/actions",
                "editor",
                self.act,
                "fail|ok|drain",
                "Action",
            ),
            Route("GET", f"{ws}/services", "viewer", self.services, "The service catalog"),
        ]

    async def report(self, call: Call) -> Any:
        return await self.sessions.report(call.workspace, call.json())

    async def watch(self, call: Call) -> Any:
        return await self.sessions.watch(call.workspace, call.params["id"], call.query)

    async def ack(self, call: Call) -> Any:
        return await self.sessions.ack(call.workspace, call.params["id"], call.json())

    async def inventory(self, call: Call) -> Any:
        return await self.sessions.inventory(call.workspace)

    async def one(self, call: Call) -> Any:
        for row in await self.sessions.inventory(call.workspace):
            if row["id"] == call.params["id"]:
                return row
        raise ApiError(404, f"no data plane {call.params['id']!r}")

    async def act(self, call: Call) -> Any:
        action = call.json().get("action")
        desired = await self.sessions.act(call.workspace, call.params["id"], str(action))
        await self.cp.records.audit(
            call.actor, call.workspace, f"dataplane.{action}", call.params["id"]
        )
        return desired

    async def services(self, call: Call) -> Any:
        return await self.cp.catalog.services(call.workspace)
