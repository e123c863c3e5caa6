"""The inventory flags a data plane whose certificate is past its renewal time or expired."""

from __future__ import annotations

import pytest

from sofamesh.control.identities import check_tls, tls_row

REPORTED = {
    "mode": "strict",
    "issuer": "control",
    "spiffe_id": "spiffe://cluster.local/ws/a/app/web",
    "not_after": 1000.0,
    "renew_after": 700.0,
}


@pytest.mark.parametrize(
    ("now", "state"), [(100.0, "OK"), (700.0, "RENEW_OVERDUE"), (1000.0, "EXPIRED")]
)
def test_cert_state_by_time(now: float, state: str) -> None:
    row = tls_row(REPORTED, now)
    assert row["cert_state"] == state and row["spiffe_id"] == REPORTED["spiffe_id"]


def test_without_mtls_there_is_no_state() -> None:
    assert tls_row({"mode": "disable"}, 0.0) == {
        "mode": "disable",
        "issuer": None,
        "spiffe_id": None,
        "not_after": None,
        "renew_after": None,
    }
    assert tls_row(None, 0.0) == {"mode": None}


def test_bad_reports_name_the_problem() -> None:
    assert check_tls(None) == [] and check_tls(REPORTED) == []
    assert check_tls({"mode": "on"}) == [
        "tls: expected a mapping with mode one of ['disable', 'permissive', 'strict']"
    ]
    assert check_tls({**REPORTED, "not_after": "soon"}) == ["tls.not_after: expected epoch seconds"]
