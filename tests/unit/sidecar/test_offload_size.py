"""The size check that sends big conversations to a worker thread stops counting once it knows."""

from __future__ import annotations

from common.conversation import Conversation, Message, TextPart
from sidecar.offload import INLINE_CHARS, text_size


def _conv(sizes: list[int]) -> Conversation:
    return Conversation(model="m", messages=[Message(role="user", content=[TextPart(text="x" * n)]) for n in sizes])


def test_a_small_conversation_is_counted_whole() -> None:
    assert text_size(_conv([10, 20, 30]), INLINE_CHARS) == 60
    assert text_size(_conv([10, 20, 30])) == 60


def test_a_long_history_is_known_to_be_long_after_its_first_messages() -> None:
    conv = _conv([INLINE_CHARS, *([1_000_000] * 50)])
    assert INLINE_CHARS <= text_size(conv, INLINE_CHARS) < 2 * INLINE_CHARS
    assert text_size(conv) == INLINE_CHARS + 50_000_000
