"""Per-source limits: a source at its share gets its own longest-idle unused connection closed."""

from __future__ import annotations

from dataclasses import dataclass, field

from sofamesh.transport.admission import Admission


@dataclass(eq=False)
class Info:
    peer: str


@dataclass(eq=False)
class Conn:
    peer: str
    rank: float | None  # when its idle wait began; None while busy
    served: int = 0  # requests it carried
    closed: bool = False
    info: Info = field(init=False)

    def __post_init__(self) -> None:
        self.info = Info(self.peer)

    def idle_rank(self) -> float | None:
        return None if self.closed else self.rank

    def evict(self) -> str:
        self.closed = True
        return self.peer


def test_a_source_at_its_share_replaces_its_longest_idle_connection() -> None:
    adm = Admission("http1", max_connections=20, max_per_source=2)
    other = Conn("10.0.0.9:5000", rank=1.0)  # idle longer, but another client's
    older, newer = Conn("10.0.0.1:1000", rank=5.0), Conn("10.0.0.1:1001", rank=7.0)
    conns = {other, older, newer}
    assert adm.enter("10.0.0.1") and adm.enter("10.0.0.1") and adm.enter("10.0.0.9")
    assert adm.enter("10.0.0.1", conns)  # over its share: its own longest idle one goes
    assert older.closed and not newer.closed and not other.closed
    assert adm.evicted == 1 and adm.refused_per_source == 0


def test_keep_alive_connections_that_carried_requests_are_kept() -> None:
    adm = Admission("http1", max_connections=20, max_per_source=1)
    pooled = Conn("10.0.0.1:1000", rank=1.0, served=3)  # its client may reuse it any moment
    assert adm.enter("10.0.0.1")
    assert not adm.enter("10.0.0.1", {pooled})
    assert not pooled.closed and adm.refused_per_source == 1


def test_a_source_whose_connections_are_all_busy_is_refused() -> None:
    adm = Admission("http1", max_connections=20, max_per_source=2)
    busy = {Conn("10.0.0.1:1000", rank=None), Conn("10.0.0.1:1001", rank=None)}
    idle_elsewhere = Conn("10.0.0.2:1000", rank=0.0)
    assert adm.enter("10.0.0.1") and adm.enter("10.0.0.1")
    assert not adm.enter("10.0.0.1", busy | {idle_elsewhere})
    assert adm.refused_per_source == 1 and not idle_elsewhere.closed


def test_a_connection_already_closing_is_not_chosen_twice() -> None:
    adm = Admission("http1", max_connections=20, max_per_source=1)
    only = Conn("[::1]:1000", rank=1.0)
    assert adm.enter("::1")
    assert adm.enter("::1", {only})  # replaces it
    only.closed = False  # still open (its task has not ended): not a second candidate
    assert not adm.enter("::1", {only})
