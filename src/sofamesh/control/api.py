"""The JSON HTTP API's plumbing: routes with the role they need, one dispatch for all.

Every route is declared once, as a `Route` (method, path template, the least
role it needs, handler, summary); the dispatcher, the OpenAPI document
(`openapi.py`) and the authorization tests all read the same table. For each
request the dispatcher: matches the route (404 / 405), finds the caller from
`Authorization: Bearer TOKEN` (401), checks the role in the workspace the path
names (404 for a workspace the caller has no role in, 403 for too small a role),
checks that the workspace exists (404), then runs the handler. Errors are JSON:
`{"error": "...", "problems": [...]}`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import attrs
from cachetools import TTLCache

from sofamesh.codecs.http1 import HttpRequest, HttpResponse
from sofamesh.control.auth import Denied, Need, Principal, check
from sofamesh.control.records import Conflict, Records
from sofamesh.control.rules import Refused
from sofamesh.control.store import StoreUnavailable
from sofamesh.protocols.http.server import ConnInfo

log = logging.getLogger("sofamesh.control.api")

JSON_TYPE = (b"content-type", b"application/json")
CACHE_TTL = 2.0  # seconds a token's identity and a workspace's existence are remembered


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        problems: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []
        self.headers = headers or {}


@attrs.frozen
class Reply:
    status: int
    body: Any
    headers: tuple[tuple[bytes, bytes], ...] = ()


@attrs.define
class Call:
    """One request as a handler sees it."""

    request: HttpRequest
    principal: Principal | None
    params: dict[str, str]
    query: dict[str, str]
    peer: str

    @property
    def workspace(self) -> str:
        return self.params["ws"]

    @property
    def actor(self) -> str:
        return self.principal.name if self.principal else "-"

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; 400 with the reason if it is not one."""
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError as e:
            raise ApiError(400, f"malformed JSON: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, f"expected a JSON object, got {type(data).__name__}")
        return data


Handler = Callable[[Call], Awaitable[Any]]


@attrs.frozen
class Route:
    method: str
    path: str  # "/api/v1/workspaces/{ws}/rules"
    need: Need
    handler: Handler
    summary: str
    body: str | None = None  # the name of the request body's schema, for OpenAPI

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    def match(self, parts: list[str]) -> dict[str, str] | None:
        mine = self.parts
        if len(mine) != len(parts):
            return None
        params = {}
        for want, got in zip(mine, parts, strict=True):
            if want.startswith("{"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def respond(status: int, body: Any, headers: tuple[tuple[bytes, bytes], ...] = ()) -> HttpResponse:
    data = json.dumps(body, default=str).encode() + b"\n"
    return HttpResponse(status=status, headers=[JSON_TYPE, *headers], body=data)


def error(status: int, message: str, problems: list[str] | None = None) -> HttpResponse:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    return respond(status, body)


def failure(e: Exception) -> HttpResponse:
    """The answer to a request that failed with `e` (one of the errors handlers raise)."""
    if isinstance(e, Denied):
        return error(e.status, e.message)
    if isinstance(e, ApiError):
        headers = tuple((k.encode(), v.encode()) for k, v in e.headers.items())
        body: dict[str, Any] = {"error": e.message}
        if e.problems:
            body["problems"] = e.problems
        return respond(e.status, body, headers)
    if isinstance(e, Refused):
        return error(400, "document refused: nothing stored, nothing pushed", e.problems)
    if isinstance(e, Conflict):
        return error(409, str(e))
    if isinstance(e, StoreUnavailable):
        return error(503, f"the store is unavailable, try again: {e}")
    return error(400, str(e))


class Dispatcher:
    """The HTTP/1.1 server's handler: route, authenticate, authorize, run."""

    def __init__(self, routes: list[Route], records: Records) -> None:
        self.routes = routes
        self.records = records
        # Who a token is, and which workspaces exist, for a moment: a data plane's reports
        # and watches would otherwise read both from the store on every request. A revoked
        # token stops working here at once (`forget`), on other replicas within `CACHE_TTL`.
        self._principals: TTLCache[str, Principal] = TTLCache(maxsize=20_000, ttl=CACHE_TTL)
        self._workspaces: TTLCache[str, bool] = TTLCache(maxsize=10_000, ttl=CACHE_TTL)

    def forget(self) -> None:
        """Drop every cached identity (a token was revoked, a role changed)."""
        self._principals.clear()

    async def __call__(self, req: HttpRequest, conn: ConnInfo | None = None) -> HttpResponse:
        path, _, qs = req.target.partition("?")
        parts = path.strip("/").split("/")
        found = [(r, p) for r in self.routes if (p := r.match(parts)) is not None]
        if not found:
            return error(404, f"no such path: {path}")
        for route, params in found:
            if route.method == req.method:
                query = {k: v[-1] for k, v in parse_qs(qs).items()}
                return await self._run(route, req, params, query, conn)
        allowed = sorted({r.method for r, _ in found})
        return error(405, f"use {' or '.join(allowed)} for {path}")

    async def _run(
        self,
        route: Route,
        req: HttpRequest,
        params: dict[str, str],
        query: dict[str, str],
        conn: ConnInfo | None,
    ) -> HttpResponse:
        try:
            principal = await self._principal(req)
            check(principal, route.need, params.get("ws"))
            if "ws" in params and not await self._exists(params["ws"]):
                raise ApiError(404, f"no workspace {params['ws']!r}")
            call = Call(req, principal, params, query, conn.peer if conn else "")
            result = await route.handler(call)
        except (Denied, ApiError, Refused, Conflict, StoreUnavailable, ValueError) as e:
            return failure(e)
        if isinstance(result, Reply):
            return respond(result.status, result.body, result.headers)
        return respond(200, result)

    async def _exists(self, workspace: str) -> bool:
        if workspace in self._workspaces:
            return True
        found = await self.records.workspace(workspace) is not None
        if found:
            self._workspaces[workspace] = True
        return found

    async def _principal(self, req: HttpRequest) -> Principal | None:
        auth = req.header(b"authorization")
        if auth is None:
            return None
        scheme, _, token = auth.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Denied(401, "send Authorization: Bearer TOKEN")
        token = token.strip()
        principal = self._principals.get(token)
        if principal is None:
            principal = await self.records.principal(token)
            if principal is None:
                raise Denied(401, "unknown, expired or revoked token")
            self._principals[token] = principal
        return principal


# Public whatever the policy: a health check, and the login that hands out tokens (itself
# authenticated by a password, and slowed down on failures).
ALWAYS_PUBLIC = ("/ready", "/api/v1/login")


def token_everywhere(routes: list[Route], required: bool) -> list[Route]:
    """`routes`, each public one but `ALWAYS_PUBLIC` needing a token when `required` (the API
    reachable beyond loopback): nothing else answers a caller who brings none."""
    if not required:
        return routes
    return [
        attrs.evolve(r, need="user") if r.need == "public" and r.path not in ALWAYS_PUBLIC else r
        for r in routes
    ]
