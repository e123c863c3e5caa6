"""Each data plane's mTLS in the inventory: its mode, its identity and when its certificate ends.

A report carries `tls: {mode, issuer, spiffe_id, not_after, renew_after}`
(times in epoch seconds); the inventory adds `cert_state`:

- `OK`: the certificate is before its renewal time;
- `RENEW_OVERDUE`: past 2/3 of its life, when the data plane should have had
  a new one (a renewal is failing: the control plane unreachable from there,
  a refused CSR, a file-based renewer that stopped);
- `EXPIRED`: past `not_after`, its peers refuse it.

A data plane without mTLS shows `tls: {"mode": "disable"}` and no state.
"""

from __future__ import annotations

from typing import Any

MODES = ("disable", "permissive", "strict")


def check_tls(value: Any) -> list[str]:
    """Problems with a report's `tls` (absent is fine: an older data plane)."""
    if value is None:
        return []
    if not isinstance(value, dict) or value.get("mode") not in MODES:
        return [f"tls: expected a mapping with mode one of {list(MODES)}"]
    problems = []
    for key in ("not_after", "renew_after"):
        if not isinstance(value.get(key), int | float | None):
            problems.append(f"tls.{key}: expected epoch seconds")
    for key in ("spiffe_id", "issuer"):
        if not isinstance(value.get(key), str | None):
            problems.append(f"tls.{key}: expected a string")
    return problems


def tls_row(value: Any, now: float) -> dict[str, Any]:
    """What the inventory shows of a data plane's reported `tls`."""
    if not isinstance(value, dict):
        return {"mode": None}
    row = {k: value.get(k) for k in ("mode", "issuer", "spiffe_id", "not_after", "renew_after")}
    not_after, renew_after = value.get("not_after"), value.get("renew_after")
    if isinstance(not_after, int | float):
        if now >= not_after:
            row["cert_state"] = "EXPIRED"
        elif isinstance(renew_after, int | float) and now >= renew_after:
            row["cert_state"] = "RENEW_OVERDUE"
        else:
            row["cert_state"] = "OK"
    return row
