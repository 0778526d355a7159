"""Token counts with the Qwen BPE (``qwen.tiktoken`` from the ``dashscope`` package, loaded by ``tiktoken``).

``dashscope`` itself is never imported: it pulls in a web framework. Its data file is found through the
package metadata. Without the file (or tiktoken) counts fall back to an estimate, and the log says so.
"""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import logging
import unicodedata
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


def _bpe_file() -> Path | None:
    try:
        files = importlib.metadata.files("dashscope") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == "qwen.tiktoken":
            return Path(str(entry.locate()))
    return None


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
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in path.read_bytes().splitlines() if line)
    }
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
    if len(text) <= _CHUNK:
        return [text]
    out: list[str] = []
    current = ""
    for i, line in enumerate(text.split("\n")):
        piece = line if i == 0 else "\n" + line
        while len(piece) > _CHUNK:
            out.append(piece[:_CHUNK])
            piece = piece[_CHUNK:]
        if len(current) + len(piece) > _CHUNK:
            out.append(current)
            current = ""
        current += piece
    if current:
        out.append(current)
    return out


def count_tokens(text: str) -> int:
    """Qwen tokens in ``text`` (NFC-normalised, as Qwen's own tokenizer does)."""
    if not text:
        return 0
    count = _encoder()
    if count is None:
        return max(1, (len(text.encode()) + 3) // 4)
    text = unicodedata.normalize("NFC", text)
    return sum(count(piece) for piece in _pieces(text))
