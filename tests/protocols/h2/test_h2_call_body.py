"""A request body that has fully arrived is taken at once, and still replays for a retry."""

from __future__ import annotations

import pytest

from sofamesh.protocols.h2.call import NotReplayable, QueueSource, ReplayableBody

pytestmark = pytest.mark.anyio


async def _ended_source(*chunks: bytes) -> QueueSource:
    source = QueueSource()
    for chunk in chunks:
        await source.send(chunk)
    source.end()
    return source


async def test_an_ended_body_is_taken_whole_and_replayed() -> None:
    body = ReplayableBody(await _ended_source(b"ab", b"cd"), replay_limit=100)
    first = body.reader()
    assert first.ended
    assert first.take_ended() == [b"ab", b"cd"]
    assert await first.receive() is None
    again = body.reader()
    assert again.take_ended() == [b"ab", b"cd"]
    assert await body.reader().receive() == b"ab"


async def test_chunks_read_before_the_end_come_first() -> None:
    source = QueueSource()
    body = ReplayableBody(source, replay_limit=100)
    await source.send(b"ab")
    first = body.reader()
    assert await first.receive() == b"ab"
    await source.send(b"cd")
    source.end()
    assert first.take_ended() == [b"cd"]
    assert body.reader().take_ended() == [b"ab", b"cd"]


async def test_a_taken_body_over_the_replay_limit_cannot_be_retried() -> None:
    body = ReplayableBody(await _ended_source(b"ab", b"cd"), replay_limit=3)
    assert body.reader().take_ended() == [b"ab", b"cd"]
    assert body.overflowed
    with pytest.raises(NotReplayable):
        body.reader()
