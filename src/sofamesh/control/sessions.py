"""Data-plane sessions: reports in, rules and operator requests out (a long-poll), sync state.

A data plane (sidecar or SDK app) keeps one session with three calls:

- **report** (every `report_interval`): who it is (app, mode, version, host, pid,
  pod), what it serves and calls, its health, the rules version in force and the
  last one it rejected, cumulative traffic counters per service, and its rules'
  decisions (shadow counts). Whole state every time, never deltas, so a lost
  report costs nothing and any control-plane replica can serve the next one.
- **watch** (a long-poll): the data plane names the version it holds of each
  pushed resource (`rules=v7&desired=3`); the answer comes as soon as one is newer,
  or empty after `watch_timeout`. Resources are named kinds with versions, so the
  channel carries anything (an xDS translation, deltas) without changing shape.
- **ack**: the outcome of applying a pushed version (its error, when refused).

Sync state, as `istioctl proxy-status`: SYNCED (runs the latest version), STALE
(has not acked it yet), REJECTED (refused it, with the error it reported).
Status: connected, draining (the data plane says so), lost (no report for
`lost_after`, with the last-seen time).

A data plane that sends garbage gets 400 and one that reports faster than
`max_reports_per_second` gets 429; after 20 such strikes it is cut off (429) for
a minute. Each session is judged alone, so others never notice.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from sofamesh.control.api import ApiError
from sofamesh.control.catalog import rates
from sofamesh.control.config import ControlConfig
from sofamesh.control.heads import Heads
from sofamesh.control.identities import check_tls, tls_row
from sofamesh.control.planes import Planes
from sofamesh.control.records import Records
from sofamesh.control.rules import Refused, RulesBook, pushed, validate, version_name
from sofamesh.control.samples import Samples

if TYPE_CHECKING:
    from sofamesh.control.sample_store import StoredSamples

log = logging.getLogger("sofamesh.control.sessions")

HEALTH = ("serving", "draining", "failed")
MODES = ("sdk", "sidecar")
ACTIONS: dict[str, dict[str, Any]] = {
    "fail": {"health": "failed"},
    "ok": {"health": "serving"},
    "drain": {"drain": True},
}
_STRIKES_TO_CUT = 20
_CUT_FOR = 60.0
_IDENTITY = ("app", "mode", "version", "host", "pid", "started_at", "injected_at")
_LISTS = ("listeners", "provides", "calls", "traffic", "decisions", "clusters")


def check_report(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a report, type-checked; ValueError names every problem."""
    problems = []
    for key in ("id", "app"):
        if not isinstance(body.get(key), str) or not body[key]:
            problems.append(f"{key}: required, a non-empty string")
    if body.get("mode", "sidecar") not in MODES:
        problems.append(f"mode: expected one of {list(MODES)}")
    if body.get("health", "serving") not in HEALTH:
        problems.append(f"health: expected one of {list(HEALTH)}")
    for key in _LISTS:
        if not isinstance(body.get(key, []), list):
            problems.append(f"{key}: expected a list")
    if not isinstance(body.get("pod", {}), dict):
        problems.append("pod: expected a mapping")
    problems += check_tls(body.get("tls"))
    if problems:
        raise ValueError("bad report: " + "; ".join(problems))
    return body


def sync_state(record: dict[str, Any], latest: str | None) -> tuple[str, str | None]:
    """SYNCED, STALE or REJECTED (with the data plane's error), against the latest version."""
    error = record.get("rules_error")
    if error and error.get("version") == latest:
        return "REJECTED", str(error.get("error"))
    if latest is None or record.get("rules_version") == latest:
        return "SYNCED", None
    return "STALE", None


class Sessions:
    def __init__(
        self,
        config: ControlConfig,
        records: Records,
        rules: RulesBook,
        samples: StoredSamples | Samples | None = None,
    ) -> None:
        self.config = config
        self.records = records
        self.rules = rules
        self.heads = Heads(records)
        self._lock = anyio.Lock()  # one read-modify-write of a data-plane record at a time
        self.planes = Planes(records, forget_after=config.forget_after)
        self._last: dict[str, float] = {}  # session -> last report time (flood guard)
        self._strikes: dict[str, tuple[int, float]] = {}  # session -> (strikes, cut until)
        self._pushed: dict[tuple[str, int], dict[str, Any]] = {}  # checked documents
        self.samples = samples or Samples()  # per service, for the console's charts

    async def run(self) -> None:
        """The background work of sessions: follow other replicas' heads, save records."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.heads.follow_forever)
            tg.start_soon(self.planes.flush_forever)
            tg.start_soon(self.samples.run)

    # -- wakeups --------------------------------------------------------------------------

    def changed(self, workspace: str) -> None:
        """Wake the watches of `workspace` (a new rules version, an operator request)."""
        self.heads.changed(workspace)

    # -- report and ack -------------------------------------------------------------------

    def _guard(self, session: str, now: float) -> None:
        strikes, cut_until = self._strikes.get(session, (0, 0.0))
        if cut_until > now:
            raise ApiError(429, "cut off for flooding; retry later", headers={"retry-after": "60"})
        last = self._last.get(session)
        self._last[session] = now
        if last is not None and now - last < 1.0 / self.config.max_reports_per_second:
            strikes += 1
            cut = now + _CUT_FOR if strikes >= _STRIKES_TO_CUT else 0.0
            self._strikes[session] = (0 if cut else strikes, cut)
            raise ApiError(429, "reports too frequent", headers={"retry-after": "1"})

    async def report(self, workspace: str, body: dict[str, Any]) -> dict[str, Any]:
        body = check_report(body)
        now = time.time()
        self._guard(f"{workspace}/{body['id']}", time.monotonic())
        async with self._lock:
            key = f"dataplanes/{workspace}/{body['id']}"
            record = await self.planes.get(key) or {"connected_at": now}
            if record.get("traffic") is not None:
                record["traffic_prev"] = record["traffic"]
                record["traffic_prev_time"] = record["last_seen"]
            record.update({k: body.get(k) for k in _IDENTITY})
            record.update({k: body.get(k, []) for k in _LISTS})
            record.update(
                id=body["id"],
                workspace=workspace,
                health=body.get("health", "serving"),
                pod=body.get("pod", {}),
                rules_version=body.get("rules_version"),
                rules_error=body.get("rules_error"),
                tls=body.get("tls"),
                last_seen=now,
            )
            self.planes.put(key, record)
            self.samples.add(workspace, record, now)
        head = (await self.heads.get(workspace)).rules
        return {
            "report_interval": self.config.report_interval,
            "rules_version": version_name(head) if head else None,
        }

    async def ack(self, workspace: str, dp_id: str, body: dict[str, Any]) -> dict[str, Any]:
        version, problem = body.get("version"), body.get("error")
        if not isinstance(version, str) or not (problem is None or isinstance(problem, str)):
            raise ValueError('send {"version": "vN", "error": null or "why"}')
        async with self._lock:
            key = f"dataplanes/{workspace}/{dp_id}"
            record = await self.planes.get(key)
            if record is None:
                raise ApiError(404, f"no data plane {dp_id!r}: report first")
            if problem is None:
                record["rules_version"], record["rules_error"] = version, None
            else:
                record["rules_error"] = {"version": version, "error": problem}
            record["last_seen"] = time.time()
            self.planes.put(key, record)
        return {"acked": version}

    # -- watch ----------------------------------------------------------------------------

    async def watch(self, workspace: str, dp_id: str, query: dict[str, str]) -> dict[str, Any]:
        """What is newer than the versions named in `query`, as soon as there is something."""
        wait = min(float(query.get("wait", self.config.watch_timeout)), self.config.watch_timeout)
        deadline = anyio.current_time() + max(wait, 0.0)
        held_rules, held_desired = query.get("rules", ""), int(query.get("desired", 0))
        looked_desired = held_desired  # the operator-request counter already looked at
        while True:
            event = self.heads.event(workspace)
            head = await self.heads.get(workspace)
            found: dict[str, Any] = {}
            if head.rules and held_rules != version_name(head.rules):
                document = await self._document(workspace, head.rules)
                if document is not None:
                    found["rules"] = {"version": version_name(head.rules), "document": document}
            if head.desired > looked_desired:
                looked_desired = head.desired
                desired = await self.records.get_json(f"desired/{workspace}/{dp_id}")
                if desired and desired["seq"] > held_desired:
                    found["desired"] = desired
            left = deadline - anyio.current_time()
            if found or left <= 0 or self.heads.closed:
                return found
            with anyio.move_on_after(left):
                await event.wait()

    async def _document(self, workspace: str, number: int) -> dict[str, Any] | None:
        """The version to push, checked once more with the data planes' parser."""
        cached = self._pushed.get((workspace, number))
        if cached is not None:
            return cached
        entry = await self.rules.get(workspace, number)
        if entry is None:
            return None
        try:
            document = validate(pushed(entry))  # never push what a data plane would refuse
        except Refused as e:
            log.error(
                "rules %s of %s in the store are invalid; not pushed: %s", number, workspace, e
            )
            return None
        self._pushed[(workspace, number)] = document
        return document

    # -- the operator's side --------------------------------------------------------------

    async def act(self, workspace: str, dp_id: str, action: str) -> dict[str, Any]:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {sorted(ACTIONS)}, got {action!r}")
        if await self.planes.get(f"dataplanes/{workspace}/{dp_id}") is None:
            raise ApiError(404, f"no data plane {dp_id!r}")
        # Requests are numbered per workspace, so one counter tells every watch of the
        # workspace whether there is anything to look at.
        counter = await self.records.get_json(f"desiredhead/{workspace}") or {"seq": 0}
        seq = counter["seq"] + 1
        key = f"desired/{workspace}/{dp_id}"
        desired = await self.records.get_json(key) or {"health": "serving"}
        desired = {**desired, **ACTIONS[action], "seq": seq, "time": time.time()}
        await self.records.put_json(key, desired)
        await self.records.put_json(f"desiredhead/{workspace}", {"seq": seq})
        self.changed(workspace)
        return desired

    async def inventory(self, workspace: str) -> list[dict[str, Any]]:
        head = await self.rules.head(workspace)
        latest = version_name(head) if head else None
        now = time.time()
        rows = await self.planes.list(workspace)
        return [self._row(r, latest, now) for r in rows]

    def _row(self, r: dict[str, Any], latest: str | None, now: float) -> dict[str, Any]:
        lost = now - r["last_seen"] > self.config.lost_after
        status = "lost" if lost else ("draining" if r["health"] == "draining" else "connected")
        sync, error = sync_state(r, latest)
        pod = r.get("pod") or {}
        return {
            "id": r["id"],
            "app": r["app"],
            "mode": r.get("mode"),
            "status": status,
            "health": r["health"],
            "version": r.get("version"),
            "host": r.get("host"),
            "pid": r.get("pid"),
            "started_at": r.get("started_at"),
            "injected_at": r.get("injected_at") or None,
            "pod": pod.get("name") or None,
            "pod_namespace": pod.get("namespace") or None,
            "pod_node": pod.get("node") or None,
            "pod_phase": pod.get("phase") or None,
            "listeners": r.get("listeners", []),
            "provides": r.get("provides", []),
            "calls": r.get("calls", []),
            "clusters": r.get("clusters", []),
            "rates": [
                {"direction": d, "service": svc, **numbers}
                for (d, svc), numbers in sorted(rates(r).items())
            ],
            "rules_version": r.get("rules_version"),
            "latest_rules_version": latest,
            "sync": sync,
            "sync_error": error,
            "last_seen": r["last_seen"],
            "connected_at": r.get("connected_at"),
            "tls": tls_row(r.get("tls"), now),
        }

    async def decisions(self, workspace: str) -> list[dict[str, Any]]:
        """Every rule's decisions (admitted, rejected, shadowed ...) summed over the data planes."""
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        for r in await self.planes.list(workspace):
            for row in r.get("decisions", []):
                if not isinstance(row, dict):
                    continue
                key = (str(row.get("kind", "")), str(row.get("name", "")))
                into = totals.setdefault(key, {"kind": key[0], "name": key[1], "dataplanes": 0})
                into["dataplanes"] += 1
                for k, v in row.items():
                    if isinstance(v, int | float) and not isinstance(v, bool):
                        into[k] = into.get(k, 0) + v
        return sorted(totals.values(), key=lambda t: (t["kind"], t["name"]))
