"""Token counts equal the Qwen tokenizer's own, computed independently with dashscope's tokenizer class."""

from __future__ import annotations

import importlib.metadata

import pytest

from sidecar.tokens import count_tokens, tokenizer_name

SAMPLES = [
    "hello",
    "Hello, world! How are you today?",
    "你好\uff0c世界\u3002通义灵码是一个编程助手\u3002",
    "def f(x):\n    return x ** 2  # square\n\n\n",
    "   leading and trailing spaces   ",
    "emoji 🚀🔥 and accents: café, naïve, Ångström",
    '{"name": "Bash", "arguments": {"command": "ls -la /tmp"}}',
    "<|im_start|>system\nYou are helpful.<|im_end|>",
    "x" * 5000 + "\n" + "y z " * 3000,
]


@pytest.fixture(scope="module")
def reference() -> object:
    from dashscope.tokenizers.qwen_tokenizer import QwenTokenizer

    files = importlib.metadata.files("dashscope") or []
    vocab = next(f for f in files if f.name == "qwen.tiktoken")
    return QwenTokenizer(str(vocab.locate()))


def test_the_qwen_file_is_used() -> None:
    assert tokenizer_name() == "qwen"


@pytest.mark.parametrize("text", SAMPLES)
def test_counts_match_the_reference_tokenizer(reference: object, text: str) -> None:
    expected = len(reference.encode(text))  # type: ignore[attr-defined]
    assert count_tokens(text) == expected


def test_long_text_is_counted_in_pieces_without_error(reference: object) -> None:
    text = ("line of text number\n" * 20_000) + "tail"
    assert count_tokens(text) == len(reference.encode(text))  # type: ignore[attr-defined]
