"""Token counts with the Qwen BPE (``qwen.tiktoken`` from the ``dashscope`` package, loaded by ``tiktoken``).

``dashscope`` itself is never imported: it pulls in a web framework. Its data file is found through the
package metadata. Without the file (or tiktoken) counts fall back to an estimate, and the log says so.
"""

from __future__ import annotations

import binascii
import bisect
import functools
import importlib.metadata
import itertools
import logging
import re
import threading
import unicodedata
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path

import msgspec

__all__ = ("count_tokens", "tokenizer_name")

log = logging.getLogger("lingma_gateway.tokens")

_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", *(f"<|extra_{i}|>" for i in range(205)))
_SPECIAL_START = 151643
_CHUNK = 50_000  # tiktoken's recursive merge can overflow its stack on very long pieces
_TARGET = 4_000  # a piece's size: small enough that a new turn re-tokenizes little of the old text
_CUT = re.compile(r"\n(?=\S)")


_BPE_IN_PACKAGE = "dashscope/resources/qwen.tiktoken"


def _bpe_file() -> Path | None:
    try:
        dist = importlib.metadata.distribution("dashscope")
    except importlib.metadata.PackageNotFoundError:
        return None
    # Where the package keeps it; listing every file of the package (its RECORD) costs a tenth of a second.
    usual = Path(str(dist.locate_file(_BPE_IN_PACKAGE)))
    if usual.exists():
        return usual
    for entry in dist.files or []:
        if entry.name == "qwen.tiktoken":
            return Path(str(entry.locate()))
    return None


def _ranks(data: bytes) -> dict[bytes, int]:
    """``qwen.tiktoken``: one ``<base64 token> <rank>`` per line, read in one pass over the whitespace-split file."""
    fields = data.split()
    return dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))


@functools.cache
def _encoder() -> Callable[[str], int] | None:
    path = _bpe_file()
    if path is None or not path.exists():
        log.warning("the Qwen tokenizer file (dashscope's qwen.tiktoken) is missing: token counts are estimates")
        return None
    try:
        import tiktoken
    except ImportError:
        log.warning("tiktoken is not installed: token counts are estimates")
        return None
    ranks = _ranks(path.read_bytes())
    enc = tiktoken.Encoding(
        "qwen",
        pat_str=_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={tok: _SPECIAL_START + i for i, tok in enumerate(_SPECIALS)},
    )

    def count(text: str) -> int:
        return len(enc.encode(text, allowed_special="all"))

    return count


def tokenizer_name() -> str:
    return "qwen" if _encoder() is not None else "estimate"


def _pieces(text: str) -> list[str]:
    """``text`` cut where the BPE's own pre-split always cuts, packed into pieces of about ``_TARGET``.

    A cut sits just after a newline that is followed by a character other than whitespace. Each of the
    pattern's alternatives that can hold a newline (whitespace ending in newlines, punctuation with its
    trailing newlines, plain whitespace) ends at such a place, and none can start before it and reach
    past it; so the tokens of the whole text are the tokens of its pieces, and so is the count
    (``tests/unit/sidecar/test_token_cache.py`` checks it on random text). The cuts fall at the same
    places in a longer text with the same start, so a resent history makes the same pieces again.
    """
    return _pieces_from(text, 0)


def _cut(text: str, start: int) -> int | None:
    """Where the piece starting at ``start`` ends; None when the rest is the last piece."""
    if len(text) - start <= _TARGET:
        return None
    cut = _CUT.search(text, start + _TARGET - 1)
    return min(cut.end() if cut else len(text), start + _CHUNK)  # past _CHUNK: an enormous line, cut anyway


def _pieces_from(text: str, start: int) -> list[str]:
    out: list[str] = []
    while (end := _cut(text, start)) is not None:
        out.append(text[start:end])
        start = end
    if start < len(text):
        out.append(text[start:])
    return out


class _PieceCounts:
    """Counts of pieces already seen, keyed by the piece itself, least recently used dropped first.

    An agent resends its whole history each turn; the pieces of that history come out of ``_pieces``
    the same as last turn (it packs whole lines greedily from the start), so only the newest piece is
    tokenized again. The piece is its own key: a lookup is one hash and, on a hit, one comparison, both
    far cheaper than a digest, and never wrong. ``max_chars`` bounds the text kept.
    """

    def __init__(self, max_chars: int = 8_000_000) -> None:
        self._max_chars = max_chars
        self._chars = 0
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()  # counts run on the offload threads

    def get(self, count: Callable[[str], int], piece: str) -> int:
        with self._lock:
            found = self._counts.get(piece)
            if found is not None:
                self._counts.move_to_end(piece)
                return found
        value = count(piece)
        with self._lock:
            if piece not in self._counts:
                self._chars += len(piece)
            self._counts[piece] = value
            while self._chars > self._max_chars and self._counts:
                dropped, _ = self._counts.popitem(last=False)
                self._chars -= len(dropped)
        return value


class _Counted(msgspec.Struct):
    """A text counted whole: as given, its NFC-normalised pieces, where they end, the running total after each."""

    raw: str
    pieces: list[str]
    ends: list[int]
    totals: list[int]


class _RecentTexts:
    """The last texts counted whole, so a text that starts like one of them is counted from where they part.

    An agent's prompt is its last prompt with a little more at the end. Normalising, cutting and looking up
    the whole of it again would cost time in proportion to the history; comparing it with the last one is a
    memory compare, and only what follows the shared start is normalised and cut. NFC never reaches across a
    newline (a newline is a starter that composes with nothing), so the shared start is taken up to a newline.
    """

    def __init__(self, size: int = 8) -> None:
        self._entries: deque[_Counted] = deque(maxlen=size)
        self._lock = threading.Lock()

    def resume(self, raw: str) -> tuple[list[str], list[int], str]:
        """The leading pieces of ``raw`` (normalised) shared with a recent text, their totals, and the rest."""
        with self._lock:
            entries = list(self._entries)
        best, shared = None, 0
        for entry in reversed(entries):  # newest first: an agent's last prompt is the likeliest
            length = _common_prefix(entry.raw, raw)
            if length > shared:
                best, shared = entry, length
            if shared * 2 > len(entry.raw):
                break
        split = raw.rfind("\n", 0, shared) + 1
        if best is None or split == 0:
            return [], [], unicodedata.normalize("NFC", raw)
        new_tail = unicodedata.normalize("NFC", raw[split:])
        kept = best.ends[-1] - len(unicodedata.normalize("NFC", best.raw[split:]))
        n = bisect.bisect_right(best.ends, kept)
        while n:
            # From the start of the last shared piece: a cut depends on the character after it too.
            start = best.ends[n - 2] if n > 1 else 0
            region = "".join(best.pieces[n - 1 :])[: kept - start] + new_tail
            if _cut(region, 0) == best.ends[n - 1] - start:
                return best.pieces[:n], best.totals[:n], region[best.ends[n - 1] - start :]
            n -= 1
        return [], [], "".join(best.pieces)[:kept] + new_tail

    def add(self, entry: _Counted) -> None:
        with self._lock:
            self._entries.append(entry)


def _common_prefix(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share, by memory compares of large slices."""
    limit, start, step = min(len(a), len(b)), 0, 1 << 16
    while start < limit:
        end = min(start + step, limit)
        if b.startswith(a[start:end], start):
            start = end
        elif end - start <= 64:
            while start < end and a[start] == b[start]:
                start += 1
            return start
        else:
            step = max(64, (end - start) // 2)
    return limit


_SEEN = _PieceCounts()
_RECENT = _RecentTexts()
_SMALL = 2_000  # below this a fresh count is cheaper than a lookup


def count_tokens(text: str) -> int:
    """Qwen tokens in ``text`` (NFC-normalised, as Qwen's own tokenizer does)."""
    if not text:
        return 0
    count = _encoder()
    if count is None:
        return max(1, (len(text.encode()) + 3) // 4)
    if len(text) < 4 * _TARGET:  # a short text is not worth remembering whole
        text = unicodedata.normalize("NFC", text)
        return sum(count(piece) if len(piece) < _SMALL else _SEEN.get(count, piece) for piece in _pieces(text))
    shared, totals, rest = _RECENT.resume(text)
    pieces, ends, totals = list(shared), list(itertools.accumulate(len(p) for p in shared)), list(totals)
    total = totals[-1] if totals else 0
    end = ends[-1] if ends else 0
    for piece in _pieces(rest):  # the rest starts at a cut, so cutting it alone cuts it as the whole
        total += count(piece) if len(piece) < _SMALL else _SEEN.get(count, piece)
        end += len(piece)
        pieces.append(piece)
        ends.append(end)
        totals.append(total)
    _RECENT.add(_Counted(text, pieces, ends, totals))
    return total
