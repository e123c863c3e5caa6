"""A request body that has fully arrived is taken at once, and still replays for a retry."""

from __future__ import annotations

import pytest

from sofamesh.protocols.h2.call import NotReplayable, QueueSource, ReplayableBody
from sofamesh.transport.budget import OVERLOAD

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


async def test_kept_chunks_count_in_the_budget_until_no_retry_can_need_them() -> None:
    """What is kept for a retry counts against the buffer budget; once the caller saw a
    response the chunks already sent go (the rest of a replay is still sent, nothing new
    is kept), and the call's end gives back the rest."""
    before = OVERLOAD.held
    source = QueueSource()
    body = ReplayableBody(source, replay_limit=100)
    await source.send(b"ab")
    await source.send(b"cd")
    first = body.reader()
    assert [await first.receive(), await first.receive()] == [b"ab", b"cd"]
    assert OVERLOAD.held - before == 4
    retry = body.reader()
    assert await retry.receive() == b"ab"
    body.forget()  # the retry's response began
    assert OVERLOAD.held - before == 2  # "ab" went; "cd" is still to be sent
    await source.send(b"ef")
    source.end()
    assert [await retry.receive(), await retry.receive()] == [b"cd", b"ef"]
    assert await retry.receive() is None
    assert OVERLOAD.held - before == 2  # "ef" was not kept
    body.close()
    assert OVERLOAD.held == before
    with pytest.raises(NotReplayable):
        body.reader()


async def test_a_body_past_the_replay_limit_gives_its_kept_bytes_back() -> None:
    before = OVERLOAD.held
    body = ReplayableBody(await _ended_source(b"ab", b"cd"), replay_limit=3)
    assert body.reader().take_ended() == [b"ab", b"cd"]
    assert OVERLOAD.held == before
