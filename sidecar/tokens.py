"""Token counts with the Qwen BPE (``qwen.tiktoken`` from the ``dashscope`` package, loaded by ``tiktoken``).

``dashscope`` itself is never imported: it pulls in a web framework. Its data file is found through the
package metadata. Without the file (or tiktoken) counts fall back to an estimate, and the log says so.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import importlib.metadata
import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

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
    out: list[str] = []
    start = 0
    while len(text) - start > _TARGET:
        cut = _CUT.search(text, start + _TARGET - 1)
        end = min(cut.end() if cut else len(text), start + _CHUNK)  # past _CHUNK: an enormous line, cut anyway
        out.append(text[start:end])
        start = end
    if start < len(text):
        out.append(text[start:])
    return out


class _PieceCounts:
    """Counts of pieces already seen, by digest, least recently used dropped first.

    An agent resends its whole history each turn; the pieces of that history come out of ``_pieces``
    the same as last turn (it packs whole lines greedily from the start), so only the newest piece is
    tokenized again. A piece is counted on its own either way, so a cached total equals a fresh one.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()  # counts run on the offload threads

    def get(self, count: Callable[[str], int], piece: str) -> int:
        key = hashlib.blake2b(piece.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._lock:
            found = self._counts.get(key)
            if found is not None:
                self._counts.move_to_end(key)
                return found
        value = count(piece)
        with self._lock:
            self._counts[key] = value
            if len(self._counts) > self._size:
                self._counts.popitem(last=False)
        return value


_SEEN = _PieceCounts()
_SMALL = 2_000  # below this a fresh count is cheaper than a digest and a lookup


def count_tokens(text: str) -> int:
    """Qwen tokens in ``text`` (NFC-normalised, as Qwen's own tokenizer does)."""
    if not text:
        return 0
    count = _encoder()
    if count is None:
        return max(1, (len(text.encode()) + 3) // 4)
    text = unicodedata.normalize("NFC", text)
    return sum(count(piece) if len(piece) < _SMALL else _SEEN.get(count, piece) for piece in _pieces(text))
