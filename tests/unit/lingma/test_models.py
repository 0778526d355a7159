"""flatten_models and resolve_model (docs/architecture.md §6)."""

from __future__ import annotations

import pytest

from common.protocol import ModelInfo
from sidecar.lingma.models import FALLBACK_MODEL_KEY, flatten_models, resolve_model

RAW = {
    "assistant": [
        {"key": "dashscope_qwen3_coder", "displayName": "Qwen3-Coder", "isDefault": False},
        {"key": "auto", "displayName": "Auto", "isDefault": True},
    ],
    "chat": [
        {"key": "auto", "displayName": "Auto (chat)", "isDefault": True},
        {"key": "dashscope_qwen_plus_20250428_thinking", "displayName": "Qwen-Plus-Thinking", "isReasoning": True},
        {"key": "qwen_vl", "displayName": "", "isVl": True, "maxInputTokens": 32768},
        {"displayName": "no key"},
        "junk",
    ],
    "inline": [{"key": "qwen_vl", "displayName": "Qwen-VL"}],
    "quest": "not a list",
}


def test_flatten_keeps_first_seen_order_and_flags() -> None:
    models = flatten_models(RAW)
    assert [m.key for m in models] == [
        "dashscope_qwen3_coder",
        "auto",
        "dashscope_qwen_plus_20250428_thinking",
        "qwen_vl",
    ]
    by_key = {m.key: m for m in models}
    assert by_key["auto"] == ModelInfo(key="auto", display_name="Auto", is_default=True)
    assert by_key["dashscope_qwen_plus_20250428_thinking"].is_reasoning
    vl = by_key["qwen_vl"]
    assert vl.is_vision and vl.display_name == "Qwen-VL" and vl.context_window == 32768


def test_flatten_of_a_logged_out_result_is_empty() -> None:
    assert flatten_models({}) == []


MODELS = flatten_models(RAW)
ALIASES = {"gpt-4o": "dashscope_qwen3_coder", "Fast": "Qwen-Plus-Thinking", "broken": "no_such_key"}


@pytest.mark.parametrize(
    ("requested", "default_key", "expected"),
    [
        ("auto", None, ("auto", True)),
        ("dashscope_qwen3_coder", "auto", ("dashscope_qwen3_coder", True)),
        ("qwen3-coder", None, ("dashscope_qwen3_coder", False)),
        ("QWEN-PLUS-THINKING", None, ("dashscope_qwen_plus_20250428_thinking", False)),
        ("AUTO", None, ("auto", False)),
        ("gpt-4o", None, ("dashscope_qwen3_coder", False)),
        ("fast", None, ("dashscope_qwen_plus_20250428_thinking", False)),
        ("broken", None, ("auto", False)),
        ("claude-sonnet-4-5", None, ("auto", False)),
        ("claude-sonnet-4-5", "qwen_vl", ("qwen_vl", False)),
        ("claude-sonnet-4-5", "Qwen-VL", ("qwen_vl", False)),
        ("claude-sonnet-4-5", "gone_model", ("auto", False)),
    ],
)
def test_resolve(requested: str, default_key: str | None, expected: tuple[str, bool]) -> None:
    assert resolve_model(requested, MODELS, default_key=default_key, aliases=ALIASES) == expected


def test_without_a_default_flag_the_first_model_wins() -> None:
    models = [ModelInfo(key="a"), ModelInfo(key="b")]
    assert resolve_model("x", models, default_key=None, aliases={}) == ("a", False)


def test_with_no_models_known() -> None:
    assert resolve_model("x", [], default_key=None, aliases={}) == (FALLBACK_MODEL_KEY, False)
    assert resolve_model("x", [], default_key="mine", aliases={}) == ("mine", False)
    assert resolve_model("x", [], default_key=None, aliases={"x": "target"}) == ("target", False)
