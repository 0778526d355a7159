"""The model catalogue that ``config/queryModels`` reports, shaped like the real binary's answer."""

from __future__ import annotations

from typing import Any

__all__ = ("MODEL_KEYS", "query_models")

# key, displayName, isReasoning
_MODELS: dict[str, tuple[str, bool]] = {
    "auto": ("Auto", False),
    "dashscope_qwen3_coder": ("Qwen3-Coder", False),
    "dashscope_qwen_max_latest": ("Qwen-Max", False),
    "dashscope_qwen_plus_20250428_thinking": ("Qwen-Plus-Thinking", True),
}
# The same key appears in several scenes, as it does on the real binary, so clients must de-duplicate.
_SCENES: dict[str, tuple[str, ...]] = {
    "chat": tuple(_MODELS),
    "assistant": ("auto", "dashscope_qwen3_coder", "dashscope_qwen_plus_20250428_thinking"),
    "inline": ("auto", "dashscope_qwen3_coder"),
}
_DEFAULT = "auto"

MODEL_KEYS = frozenset(_MODELS)


def _entry(key: str) -> dict[str, Any]:
    display, reasoning = _MODELS[key]
    return {
        "key": key,
        "displayName": display,
        "isDefault": key == _DEFAULT,
        "isReasoning": reasoning,
        "isVl": False,
        "format": "openai",
        "source": "system",
        "model": "",
        "url": "",
        "apiKey": "",
    }


def query_models(logged_in: bool) -> dict[str, list[dict[str, Any]]]:
    """Logged out, the real binary answers ``{}``."""
    if not logged_in:
        return {}
    return {scene: [_entry(key) for key in keys] for scene, keys in _SCENES.items()}
