"""The etcd registry's services prefix split by service, step by step, as a watch feeds it."""

from __future__ import annotations

from sofamesh.endpoint import Endpoint
from sofamesh.registry.etcd_keys import EtcdKeys, ServiceParts, Touched

KEYS = EtcdKeys("ws")


def key(ep: Endpoint) -> bytes:
    return KEYS.endpoint(ep)


A1, A2, B1 = (
    Endpoint("a", "10.0.0.1", 1),
    Endpoint("a", "10.0.0.2", 1),
    Endpoint("b/x", "10.0.0.3", 1),
)


def test_a_full_read_splits_every_key_and_changes_every_service() -> None:
    parts, touched = ServiceParts(KEYS), Touched()
    state: dict[bytes, Endpoint | str] = {key(A1): A1, key(A2): A2, key(B1): B1}
    touched.everything = True
    assert parts.update(state, touched) is None
    assert parts.by_service == {"a": {key(A1): A1, key(A2): A2}, "b/x": {key(B1): B1}}
    assert not touched.everything and not touched.keys


def test_a_reply_changes_only_the_services_it_touched() -> None:
    parts, touched = ServiceParts(KEYS), Touched()
    state: dict[bytes, Endpoint | str] = {key(A1): A1, key(B1): B1}
    touched.everything = True
    parts.update(state, touched)
    del state[key(A1)]
    state[key(A2)] = A2
    touched.keys = {key(A1), key(A2)}
    assert parts.update(state, touched) == {"a"}
    assert parts.by_service == {"a": {key(A2): A2}, "b/x": {key(B1): B1}}


def test_a_service_whose_last_key_goes_is_dropped_and_a_stray_key_ignored() -> None:
    parts, touched = ServiceParts(KEYS), Touched()
    state: dict[bytes, Endpoint | str] = {key(B1): B1}
    touched.everything = True
    parts.update(state, touched)
    state.clear()
    touched.keys = {key(B1), key(A1), KEYS.services + b"no-slash"}
    assert parts.update(state, touched) == {"b/x", "a"}
    assert parts.by_service == {}


def test_a_full_read_after_replies_forgets_what_went_unseen() -> None:
    parts, touched = ServiceParts(KEYS), Touched()
    touched.everything = True
    parts.update({key(A1): A1, key(B1): B1}, touched)
    touched.everything = True  # compacted: read again, and A1 went meanwhile
    assert parts.update({key(B1): B1}, touched) is None
    assert parts.by_service == {"b/x": {key(B1): B1}}
