"""Lingma's model list flattened to one entry per key, and the name resolution of docs/architecture.md §6."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from common.protocol import ModelInfo

__all__ = ("FALLBACK_MODEL_KEY", "flatten_models", "resolve_model")

log = logging.getLogger(__name__)

FALLBACK_MODEL_KEY = "auto"
"""Sent when nothing else is known: Lingma's own "pick for me" key (docs/lingma-protocol.md §4.2)."""

_WINDOW_KEYS = ("contextWindow", "maxInputTokens", "maxContextTokens")


def flatten_models(raw: Mapping[str, Any]) -> list[ModelInfo]:
    """Distinct keys across the scenes of ``config/queryModels``, first seen first.

    The first entry of a key decides its flags; a later one only fills a missing display name.
    """
    found: dict[str, ModelInfo] = {}
    for entries in raw.values() if isinstance(raw, Mapping) else ():
        if not isinstance(entries, list):
            continue
        for entry in entries:
            model = _model_info(entry)
            if model is None:
                continue
            known = found.get(model.key)
            if known is None:
                found[model.key] = model
            elif not known.display_name and model.display_name:
                found[model.key] = msgspec.structs.replace(known, display_name=model.display_name)
    return list(found.values())


def resolve_model(
    requested: str,
    models: Sequence[ModelInfo],
    *,
    default_key: str | None,
    aliases: Mapping[str, str],
) -> tuple[str, bool]:
    """The Lingma key for a requested name, and whether the caller asked for that real key.

    Exact key, then a case-insensitive display name (or key), then a configured alias; anything else
    gets the default model: ``default_key`` (``DEFAULT_MODEL``), else the first ``isDefault``, else the
    first model.
    """
    name = requested.strip()
    keys = {m.key for m in models}
    if name in keys:
        return name, True
    by_name = _match_name(name, models)
    if by_name is not None:
        return by_name, False
    alias = aliases.get(name) or _casefold_get(aliases, name)
    if alias:
        target = alias if alias in keys or not models else _match_name(alias, models)
        if target is not None:
            return target, False
        log.warning("model alias %r points at %r, which this account does not offer", name, alias)
    return _default_key(models, default_key), False


def _default_key(models: Sequence[ModelInfo], default_key: str | None) -> str:
    if default_key:
        if not models or any(m.key == default_key for m in models):
            return default_key
        by_name = _match_name(default_key, models)
        if by_name is not None:
            return by_name
        log.warning("DEFAULT_MODEL %r is not offered by this account; using Lingma's default", default_key)
    for model in models:
        if model.is_default:
            return model.key
    return models[0].key if models else FALLBACK_MODEL_KEY


def _match_name(name: str, models: Sequence[ModelInfo]) -> str | None:
    folded = name.casefold()
    for model in models:
        if model.display_name and model.display_name.casefold() == folded:
            return model.key
    for model in models:
        if model.key.casefold() == folded:
            return model.key
    return None


def _casefold_get(aliases: Mapping[str, str], name: str) -> str | None:
    folded = name.casefold()
    for alias, target in aliases.items():
        if alias.casefold() == folded:
            return target
    return None


def _model_info(entry: object) -> ModelInfo | None:
    if not isinstance(entry, Mapping):
        return None
    key = entry.get("key")
    if not isinstance(key, str) or not key.strip():
        return None
    name = entry.get("displayName")
    window = next((w for k in _WINDOW_KEYS if _positive_int(w := entry.get(k))), None)
    return ModelInfo(
        key=key,
        display_name=name if isinstance(name, str) else "",
        is_default=entry.get("isDefault") is True,
        is_reasoning=entry.get("isReasoning") is True,
        is_vision=entry.get("isVl") is True,
        context_window=window if isinstance(window, int) else None,
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
