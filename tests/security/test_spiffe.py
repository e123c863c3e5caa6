"""SPIFFE IDs: the mesh's workload shape, and what the standard forbids."""

from __future__ import annotations

import pytest

from sofamesh.security.spiffe import SpiffeId


def test_a_workload_id_round_trips() -> None:
    uri = "spiffe://example.org/ws/prod/app/web"
    sid = SpiffeId.parse(uri)
    assert (sid.trust_domain, sid.workspace, sid.app) == ("example.org", "prod", "web")
    assert str(sid) == uri


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("https://example.org/ws/prod/app/web", "no spiffe:// scheme"),
        ("spiffe://example.org", "of a trust domain"),
        ("spiffe://Example.org/ws/prod/app/web", "trust domain must be lowercase"),
        ("spiffe://example.org:443/ws/prod/app/web", "no query, fragment, user or port"),
        ("spiffe://example.org/ws/prod/app/web?x=1", "no query"),
        ("spiffe://example.org/ns/prod/sa/web", "not a mesh workload ID"),
        ("spiffe://example.org/ws/prod/app/web/extra", "not a mesh workload ID"),
        ("spiffe://example.org/ws/../app/web", "not '.' or '..'"),
        ("spiffe://example.org/ws//app/web", "workspace must be"),
    ],
)
def test_malformed_ids_are_refused_saying_why(uri: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("?", r"\?")):
        SpiffeId.parse(uri)
