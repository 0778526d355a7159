"""The usage book and the per-key share, in process: what they count, and that a slot is always given back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from common.errors import NoCapacityError, RateLimitedError
from common.protocol import Event, Failed, Finished, Started, TextDelta, Usage
from sidecar.key_share import KeyShare
from sidecar.usage import UsageBook


async def _events(*items: Event, error: Exception | None = None) -> AsyncIterator[Event]:
    for item in items:
        yield item
    if error is not None:
        raise error


async def _drain(stream: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in stream]


def test_finished_turns_add_their_usage_and_failures_count_apart() -> None:
    book = UsageBook()
    usage = Usage(input_tokens=10, cached_input_tokens=4, output_tokens=7, reasoning_tokens=2)
    turn = (Started(model="qwen"), TextDelta(text="hi"), Finished(usage=usage))
    asyncio.run(_drain(book.metered("alice", _events(*turn))))
    asyncio.run(_drain(book.metered("alice", _events(*turn))))
    asyncio.run(
        _drain(book.metered("alice", _events(Started(model="qwen"), Failed(code="upstream_error", message="x"))))
    )
    with pytest.raises(NoCapacityError):
        asyncio.run(_drain(book.metered("bob", _events(error=NoCapacityError("none")))))
    doc = book.snapshot()
    alice = doc.keys["alice"]
    assert alice.turns == 2 and alice.failed_turns == 1
    assert (alice.input_tokens, alice.cached_input_tokens, alice.output_tokens) == (20, 8, 14)
    assert alice.models["qwen"].reasoning_tokens == 4
    assert doc.keys["bob"].models["unknown"].failed_turns == 1
    assert doc.models["qwen"].turns == 2 and doc.total.failed_turns == 2


async def test_a_key_at_its_cap_is_refused_and_others_are_not() -> None:
    share = KeyShare(2)
    async with share.slot("a"), share.slot("a"):
        with pytest.raises(RateLimitedError) as err:
            async with share.slot("a"):
                pass
        assert "limit of 2 turns in flight" in err.value.message and err.value.retry_after_s == 1.0
        async with share.slot("b"):
            assert share.snapshot().in_flight == {"a": 2, "b": 1}
    assert share.snapshot().in_flight == {}
    assert share.snapshot().rejected_total == {"a": 1}
    assert share.snapshot().in_flight_max == {"a": 2, "b": 1}


async def test_a_slot_is_given_back_when_the_turn_fails() -> None:
    share = KeyShare(1)
    with pytest.raises(ValueError):
        async with share.slot("a"):
            raise ValueError("turn failed")
    async with share.slot("a"):
        pass
    assert share.snapshot().rejected_total == {}


async def test_no_cap_means_no_refusal() -> None:
    share = KeyShare(0)
    async with share.slot("a"), share.slot("a"), share.slot("a"):
        assert share.snapshot().in_flight == {"a": 3}
