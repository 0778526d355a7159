"""Cache keys for session reuse: a hash of what a conversation means, not of how a dialect spelled it.

Normalised away (docs/architecture.md §5.1): text vs a single text block, trailing whitespace, JSON argument formatting,
tool-call ids (replaced by their position, since each dialect prefixes ids its own way), where system and
developer text sits (folded into one leading instruction), split assistant items (Responses sends a
message item and function_call items separately). Reasoning never enters the conversation at all.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from common.conversation import ImagePart, Message, TextPart, ToolCallRecord, ToolSpec

__all__ = ("KeyChain", "conversation_key", "encode_each", "merge_assistant_runs", "reply_message")


def _canonical_args(arguments: str, kind: str) -> object:
    if kind == "custom":
        return arguments
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return arguments


def merge_assistant_runs(messages: Sequence[Message]) -> list[Message]:
    """Join consecutive assistant messages into one, as the gateway produced them."""
    out: list[Message] = []
    for msg in messages:
        if msg.role == "assistant" and out and out[-1].role == "assistant":
            prev = out[-1]
            out[-1] = Message(
                role="assistant",
                content=[*prev.content, *msg.content],
                tool_calls=[*prev.tool_calls, *msg.tool_calls],
            )
        else:
            out.append(msg)
    return out


def _parts(msg: Message) -> list[object]:
    text = "".join(p.text for p in msg.content if isinstance(p, TextPart)).rstrip()
    images = [p.source for p in msg.content if isinstance(p, ImagePart)]
    return [text, images] if images else [text]


def _entry(msg: Message, positions: dict[str, int]) -> list[object]:
    calls: list[object] = []
    for call in msg.tool_calls:
        positions.setdefault(call.id, len(positions))
        calls.append([positions[call.id], call.name, call.kind, _canonical_args(call.arguments, call.kind)])
    entry: list[object] = [msg.role, _parts(msg)]
    if calls:
        entry.append(calls)
    if msg.role == "tool":
        call_id = msg.tool_call_id
        entry.append([None if call_id is None else positions.get(call_id, call_id), msg.is_error])
    return entry


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class _Progress(msgspec.Struct):
    """The digest and the call positions after some leading messages of a body."""

    digest: Any  # hashlib's sha256 object (copied before it is extended)
    positions: dict[str, int]


class _Prefixes:
    """Digests of conversation prefixes, by a chain of per-message digests: a key extends its predecessor's.

    An agent resends its whole history each turn; the key of this turn's history was computed last turn
    (as the key its reply was stored under), so only the messages after it are serialised and hashed.
    """

    def __init__(self, size: int = 2048) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, _Progress] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, link: bytes) -> _Progress | None:
        with self._lock:
            found = self._entries.get(link)
            if found is not None:
                self._entries.move_to_end(link)
            return found

    def put(self, link: bytes, progress: _Progress) -> None:
        with self._lock:
            self._entries[link] = progress
            self._entries.move_to_end(link)
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)


_PREFIXES = _Prefixes()
_encode = msgspec.msgpack.Encoder().encode


def encode_each(messages: Sequence[Message]) -> dict[int, bytes]:
    """Each message's msgpack, by ``id``: one pass a turn's renderer and key chain share (while it holds them)."""
    return {id(m): _encode(m) for m in messages}


def _instruction(messages: Sequence[Message]) -> str:
    """The system and developer text, folded into one instruction."""
    return "\n\n".join(t for m in messages if m.role in ("system", "developer") if (t := m.text().strip()))


def _link(previous: bytes, data: bytes) -> bytes:
    """One link of the chain: SHA-256 (hardware-accelerated where the CPU has it), cut to 16 bytes."""
    digest = hashlib.sha256(previous)
    digest.update(data)
    return digest.digest()[:16]


class _RecentChains:
    """The last chains built, with their messages' bytes, so a resent history's links are not hashed again.

    An agent's body is its last body with a message or two more: comparing the bytes message by message is a
    memory compare, where hashing them again costs time in proportion to the history. Equal bytes give
    equal links, so the links taken over are exactly those hashing would give.
    """

    def __init__(self, size: int = 8) -> None:
        self._entries: deque[tuple[bytes, list[bytes], list[bytes]]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def shared(self, head: bytes, encodings: list[bytes]) -> list[bytes]:
        """The links of the longest run of leading messages a recent chain with the same head had too."""
        with self._lock:
            entries = list(self._entries)
        best: list[bytes] = []
        for their_head, theirs, links in reversed(entries):
            if their_head != head:
                continue
            n = 0
            for mine, their in zip(encodings, theirs, strict=False):
                if mine != their:
                    break
                n += 1
            if n > len(best):
                best = links[:n]
            if n in (len(theirs), len(encodings)):
                break  # the whole of one matches: good enough (what is not shared is hashed)
        return best

    def add(self, head: bytes, encodings: list[bytes], links: list[bytes]) -> None:
        with self._lock:
            self._entries.append((head, encodings, list(links)))


_RECENT = _RecentChains()


class KeyChain:
    """The keys of one conversation and of its prefixes, from one pass over its messages.

    A turn needs two keys: that of its history (to claim a session) and that of the history with its reply
    (to store the new state). Both are prefixes, or an extension, of the same body, so the per-message
    links are computed once and shared.
    """

    def __init__(
        self,
        fingerprint: str,
        tools: Sequence[ToolSpec],
        messages: Sequence[Message],
        encoded: Mapping[int, bytes] | None = None,
    ) -> None:
        """``encoded`` may hold the messages' msgpack by ``id`` (``encode_each``), shared with the renderer."""
        self._fingerprint, self._tools = fingerprint, tools
        self._instruction = _instruction(messages)
        spec = [[t.name, t.kind, t.description, _canonical_args(t.parameters, "function")] for t in tools]
        self._head = _dumps([fingerprint, spec, self._instruction])[:-1] + ", ["
        self.body = merge_assistant_runs([m for m in messages if m.role not in ("system", "developer")])
        head = _link(b"", self._head.encode("utf-8", "surrogatepass"))
        encoded = encoded or {}
        encodings = [encoded.get(id(msg)) or _encode(msg) for msg in self.body]
        self._links = _RECENT.shared(head, encodings)
        link = self._links[-1] if self._links else head
        for data in encodings[len(self._links) :]:
            link = _link(link, data)
            self._links.append(link)
        _RECENT.add(head, encodings, self._links)

    def history_key(self, history: Sequence[Message]) -> str:
        """The key of ``history``: this chain's messages up to (and with) the last assistant message.

        Its body is a prefix of this chain's body. Its instruction is that of its own system and developer
        messages, which is this chain's unless the new turn brought one of its own; then it is hashed apart.
        """
        if _instruction(history) != self._instruction:
            return KeyChain(self._fingerprint, self._tools, history).key()
        return self.key(max((i + 1 for i, m in enumerate(self.body) if m.role == "assistant"), default=0))

    def extended(self, message: Message) -> KeyChain:
        """The chain of the body with ``message`` after it (joined to a last assistant message, as sent back)."""
        grown = object.__new__(KeyChain)
        grown._fingerprint, grown._tools, grown._instruction = self._fingerprint, self._tools, self._instruction
        grown._head = self._head
        body, links = list(self.body), list(self._links)
        if message.role == "assistant" and body and body[-1].role == "assistant":
            message = merge_assistant_runs([body.pop(), message])[0]
            links.pop()
        previous = links[-1] if links else _link(b"", self._head.encode("utf-8", "surrogatepass"))
        grown.body = [*body, message]
        grown._links = [*links, _link(previous, _encode(message))]
        return grown

    def key(self, length: int | None = None) -> str:
        """SHA-256 of ``json.dumps([fingerprint, tools, instruction, body[:length]], sort_keys=True, ...)``.

        The JSON of a list is its items' JSON joined by ``", "``, so the payload is hashed piece by piece:
        the head, then each body entry; the digest after a known prefix is picked up where it was left.
        """
        body = self.body if length is None else self.body[:length]
        links = self._links[: len(body)]
        start, progress = 0, None
        for index in range(len(links) - 1, -1, -1):
            progress = _PREFIXES.get(links[index])
            if progress is not None:
                start = index + 1
                break
        if progress is None:
            digest, positions = hashlib.sha256(self._head.encode()), {}
        else:
            digest, positions = progress.digest.copy(), dict(progress.positions)
        for index in range(start, len(body)):
            digest.update(((", " if index else "") + _dumps(_entry(body[index], positions))).encode())
            if index == len(body) - 1:
                _PREFIXES.put(links[index], _Progress(digest.copy(), dict(positions)))
        digest.update(b"]]")
        return str(digest.hexdigest())


def conversation_key(fingerprint: str, tools: Sequence[ToolSpec], messages: Sequence[Message]) -> str:
    """The key of a whole conversation (see ``KeyChain.key``)."""
    return KeyChain(fingerprint, tools, messages).key()


def reply_message(text: str, calls: Sequence[ToolCallRecord]) -> Message:
    """The assistant message the gateway produced, as a client will send it back."""
    return Message(role="assistant", content=[TextPart(text)] if text else [], tool_calls=list(calls))
