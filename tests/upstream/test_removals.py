"""The removal guard on a fake clock: shares, owners' withdrawals, holds ending or cancelled."""

from __future__ import annotations

import pytest

from sofamesh.clock import FakeClock
from sofamesh.endpoint import Endpoint
from sofamesh.upstream.removals import RemovalConfig, RemovalGuard

LEASE = 10.0
A, B, C, D = (Endpoint("svc", "10.0.0.1", port) for port in (1, 2, 3, 4))


def keys(guard: RemovalGuard) -> set[str]:
    return {e.key for e in guard.in_force()}


def guard_with(*eps: Endpoint, share: float = 1.0) -> RemovalGuard:
    guard = RemovalGuard(RemovalConfig(hold_removal_share=share))
    guard.offer(eps, frozenset(), LEASE, 0.0)
    return guard


def test_a_snapshot_that_removes_everything_is_held_for_one_lease() -> None:
    clock = FakeClock(0.0)
    guard = guard_with(A, B)
    change = guard.offer([], frozenset(), LEASE, clock.now())
    assert set(change.held) == {A, B} and not change.removed
    assert keys(guard) == {A.key, B.key} and guard.next_release == LEASE
    clock.advance(LEASE - 0.001)
    assert guard.release(clock.now()) == () and keys(guard) == {A.key, B.key}
    clock.advance(0.001)
    assert {h.endpoint for h in guard.release(clock.now())} == {A, B}
    assert guard.in_force() == [] and guard.next_release is None
    stats = guard.statistics()
    assert (stats.holding, stats.holds, stats.released) == (0, 1, 2)


def test_by_default_a_partial_removal_takes_effect_at_once() -> None:
    guard = guard_with(A, B, C, D)
    change = guard.offer([D], frozenset(), LEASE, 0.0)
    assert set(change.removed) == {A, B, C} and not change.held
    assert keys(guard) == {D.key}


@pytest.mark.parametrize(
    ("share", "left", "held"),
    [
        (0.5, [C, D], True),  # removes 2 of 4: exactly the share, so held ("at least")
        (0.5, [B, C, D], False),  # 1 of 4: below the share
        (0.75, [C, D], False),
        (0.25, [B, C, D], True),
    ],
)
def test_the_share_is_at_least_a_fraction_of_the_endpoints_in_force(
    share: float, left: list[Endpoint], held: bool
) -> None:
    guard = guard_with(A, B, C, D, share=share)
    change = guard.offer(left, frozenset(), LEASE, 0.0)
    assert bool(change.held) is held and bool(change.removed) is not held
    assert len(guard.in_force()) == (4 if held else len(left))


def test_a_replacement_is_not_a_removal_of_everything() -> None:
    guard = guard_with(A)
    change = guard.offer([B], frozenset(), LEASE, 0.0)  # A restarted on a new port
    assert change.removed == (A,) and keys(guard) == {B.key}


def test_an_owners_withdrawal_takes_effect_at_once_even_when_it_empties_the_cluster() -> None:
    guard = guard_with(A, B)
    change = guard.offer([], frozenset({A.key, B.key}), LEASE, 0.0)
    assert set(change.withdrawn) == {A, B} and not change.held
    assert guard.in_force() == [] and guard.next_release is None


def test_withdrawals_are_left_out_of_the_share() -> None:
    # A is unpublished by its owner and B vanishes in the same snapshot: B was all that
    # would remain, so B is held while A goes.
    guard = guard_with(A, B)
    change = guard.offer([], frozenset({A.key}), LEASE, 0.0)
    assert change.withdrawn == (A,) and change.held == (B,)
    assert keys(guard) == {B.key}


def test_a_withdrawal_during_a_hold_ends_it_at_once() -> None:
    guard = guard_with(A, B)
    guard.offer([], frozenset(), LEASE, 0.0)
    change = guard.offer([], frozenset({A.key}), LEASE, 1.0)
    assert change.withdrawn == (A,) and keys(guard) == {B.key}


def test_a_republication_during_the_hold_cancels_it() -> None:
    clock = FakeClock(0.0)
    guard = guard_with(A, B)
    guard.offer([], frozenset(), LEASE, clock.now())
    clock.advance(LEASE / 3)
    moved = Endpoint("svc", "10.0.0.1", 1, weight=50)  # same key, new metadata: listing wins
    change = guard.offer([moved, B], frozenset(), LEASE, clock.now())
    assert set(change.restored) == {A, B} and guard.next_release is None
    assert [e.weight for e in guard.in_force() if e.key == A.key] == [50]
    clock.advance(LEASE)
    assert guard.release(clock.now()) == () and keys(guard) == {A.key, B.key}
    assert guard.statistics().restored == 2


def test_a_hold_never_restarts_while_the_registry_flaps() -> None:
    clock = FakeClock(0.0)
    guard = guard_with(A, B, share=0.5)
    guard.offer([B], frozenset(), LEASE, clock.now())  # A held until 10
    clock.advance(6.0)
    guard.offer([], frozenset(), LEASE, clock.now())  # B held until 16; A keeps 10
    assert {k: h.until for k, h in guard.held.items()} == {A.key: 10.0, B.key: 16.0}
    clock.advance(4.0)
    assert [h.endpoint for h in guard.release(clock.now())] == [A]
    assert keys(guard) == {B.key}


def test_removals_while_holding_count_with_the_held_ones() -> None:
    # share 0.5: losing A alone (1 of 4) goes at once; a later removal is judged together
    # with what is already held.
    guard = guard_with(A, B, C, D, share=0.5)
    guard.offer([B, C, D], frozenset(), LEASE, 0.0)  # 1 of 4: goes at once
    assert keys(guard) == {B.key, C.key, D.key}
    change = guard.offer([D], frozenset(), LEASE, 1.0)  # 2 of 3: held
    assert set(change.held) == {B, C}
    change = guard.offer([], frozenset(), LEASE, 2.0)  # D joins the held: 3 of 3
    assert change.held == (D,) and keys(guard) == {B.key, C.key, D.key}


def test_the_usual_snapshot_changes_nothing() -> None:
    guard = guard_with(A, B)
    change = guard.offer([A, B, C], frozenset(), LEASE, 0.0)
    assert change == type(change)() and keys(guard) == {A.key, B.key, C.key}


@pytest.mark.parametrize("share", [0.0, -0.1, 1.01, float("nan")])
def test_the_share_is_validated(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        RemovalConfig(hold_removal_share=share)
