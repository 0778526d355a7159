"""Work proportional to a request's size runs on worker threads, so the sidecar's loop never waits for it.

Rendering a prompt, counting its tokens and hashing a history take time in proportion to the conversation
(a 15 MB ``count_tokens`` body takes seconds). Above ``INLINE_CHARS`` of text such work goes to a small
thread pool (tiktoken and hashlib release the GIL); below, it takes a few milliseconds and is done at once,
so an ordinary turn never queues behind a huge one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from common.conversation import Conversation, TextPart

__all__ = ("INLINE_CHARS", "Offload", "text_size")

INLINE_CHARS = 32 * 1024
WORKERS = 2

T = TypeVar("T")


def text_size(conv: Conversation, enough: int | None = None) -> int:
    """Roughly how much text a conversation holds, counted without touching the text itself.

    With ``enough``, counting stops once the total reaches it: a long history is known to be long after
    its first messages, so the check costs the same on every turn of a growing session.
    """
    total = sum(len(t.name) + len(t.description) + len(t.parameters) for t in conv.tools)
    for message in conv.messages:
        if enough is not None and total >= enough:
            return total
        total += sum(len(p.text) for p in message.content if isinstance(p, TextPart))
        total += sum(len(c.arguments) for c in message.tool_calls)
    return total


class Offload:
    def __init__(self, workers: int = WORKERS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sidecar-cpu")

    async def always(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def run(self, conv: Conversation, work: Callable[[], T]) -> T:
        """``work`` for ``conv``: at once when the conversation is small, else on a worker thread."""
        if text_size(conv, INLINE_CHARS) < INLINE_CHARS:
            return work()
        return await self.always(work)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
