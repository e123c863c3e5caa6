"""Consul's health checks of a service, sans-IO: TTL checks lapse, HTTP checks are probed.

Consul names a service's checks `service:<id>` (one check) or `service:<id>:<n>`
(several, from 1) unless the registration gives a `CheckID`. A TTL check starts
`critical` (Consul's default) and turns critical again `ttl` after the last
pass; an HTTP check is what its last probe said (2xx passing, 429 warning,
anything else critical). An instance takes mesh traffic while none of its checks
is critical, as Consul's DNS and `?passing` readers treat `warning` as alive.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from sofamesh.sidecar.registry_apis import fields

STATUSES = ("passing", "warning", "critical")
MAX_CHECKS = 16  # per service: each HTTP check is a probe task the sidecar runs
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: Any) -> float:
    """A Go duration as Consul takes it (`10s`, `500ms`, `1m`), in seconds."""
    m = _DURATION.match(str(text).strip())
    if m is None or len(m.group(1)) > 12:
        raise ValueError(f"expected a duration like 10s, got {str(text)[:40]!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


@attrs.define
class Check:
    check_id: str
    service_id: str
    name: str
    status: str = "critical"
    output: str = ""
    ttl: float | None = None  # seconds; a TTL check
    http: str | None = None  # URL; an HTTP check the sidecar probes
    interval: float = 10.0
    expires: float = float("inf")  # when a TTL check turns critical
    deregister_after: float | None = None  # DeregisterCriticalServiceAfter
    critical_since: float | None = None

    def set(self, status: str, output: str, now: float) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        self.status, self.output = status, output
        if self.ttl is not None:
            self.expires = now + self.ttl
        if status == "critical":
            self.critical_since = self.critical_since if self.critical_since else now
        else:
            self.critical_since = None

    def lapse(self, now: float) -> bool:
        """Turn critical if the TTL ran out; True if it changed."""
        if self.ttl is None or self.expires > now or self.status == "critical":
            return False
        self.status, self.output = "critical", "TTL expired"
        self.critical_since = now
        return True

    def doc(self, node: str, service: str) -> dict[str, Any]:
        return {
            "Node": node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": "",
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": service,
            "ServiceTags": [],
            "Type": "ttl" if self.ttl is not None else "http" if self.http else "",
        }


def _field(d: dict[str, Any], name: str) -> Any:
    """Consul reads JSON keys in any case (`TTL`, `ttl`, `Ttl`)."""
    lower = name.lower()
    return next((v for k, v in d.items() if k.lower() == lower), None)


def checks_of(service_id: str, body: dict[str, Any], now: float) -> list[Check]:
    """The checks a service registration declares (`Check`, `Checks`)."""
    raw = [_field(body, "check")] if _field(body, "check") else []
    more = _field(body, "checks") or []
    if not isinstance(more, list):
        raise ValueError("Checks must be a list")
    raw += more
    if len(raw) > MAX_CHECKS:
        raise ValueError(f"at most {MAX_CHECKS} checks per service, got {len(raw)}")
    made = []
    for n, c in enumerate(raw, start=1):
        if not isinstance(c, dict):
            raise ValueError("a check must be an object")
        default = f"service:{service_id}" if len(raw) == 1 else f"service:{service_id}:{n}"
        check = Check(
            check_id=fields.text(_field(c, "checkid") or _field(c, "id"), "CheckID") or default,
            service_id=service_id,
            name=fields.text(_field(c, "name"), "Name") or f"Service '{service_id}' check",
        )
        if _field(c, "ttl"):
            check.ttl = duration(_field(c, "ttl"))
        elif _field(c, "http"):
            check.http = fields.text(_field(c, "http"), "HTTP")
            check.interval = duration(_field(c, "interval") or "10s")
        else:
            raise ValueError("only TTL and HTTP checks are served here")
        if _field(c, "deregistercriticalserviceafter"):
            check.deregister_after = duration(_field(c, "deregistercriticalserviceafter"))
        check.set(fields.text(_field(c, "status"), "Status") or "critical", "", now)
        made.append(check)
    return made


def http_status(code: int) -> str:
    """What an HTTP check's answer means (Consul: 2xx passing, 429 warning)."""
    if 200 <= code < 300:
        return "passing"
    return "warning" if code == 429 else "critical"
