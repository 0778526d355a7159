"""``API_KEYS`` entries are ``KEY`` or ``NAME:KEY``; names (or short hashes) identify keys, never the keys."""

from __future__ import annotations

import pytest

from common.settings import SettingsError, key_name, load_settings


def test_named_and_bare_keys_mix_and_old_lists_keep_working() -> None:
    settings = load_settings({"API_KEYS": "alice:sk-a, sk-plain ,bob:sk-b"})
    assert settings.api_keys == ("sk-a", "sk-plain", "sk-b")
    assert settings.api_key_names == (("alice", "sk-a"), ("bob", "sk-b"))
    assert settings.key_name("sk-a") == "alice" and settings.key_name("sk-b") == "bob"
    bare = settings.key_name("sk-plain")
    assert bare.startswith("key-") and len(bare) == 12 and "sk-plain" not in bare
    assert bare == key_name("sk-plain") == load_settings({"API_KEYS": "sk-plain"}).key_name("sk-plain")
    assert settings.key_name("") == "open"
    assert load_settings({"API_KEYS": "k1,k2"}).api_keys == ("k1", "k2")


def test_a_key_whose_text_before_a_colon_is_no_name_stays_whole() -> None:
    settings = load_settings({"API_KEYS": "9abc:def,a:,:x"})
    assert settings.api_keys == ("9abc:def", "a:", ":x")
    assert settings.api_key_names == ()


@pytest.mark.parametrize(
    ("raw", "why"),
    [("alice:k1,alice:k2", "same name"), ("alice:k1,bob:k1", "listed twice"), ("k1,k1", "listed twice")],
)
def test_duplicates_are_refused_without_quoting_the_keys(raw: str, why: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"API_KEYS": raw})
    assert "API_KEYS" in str(err.value) and why in str(err.value)
    assert "k1" not in str(err.value) and "k2" not in str(err.value)


@pytest.mark.parametrize("raw", ["-1", "many"])
def test_the_per_key_cap_is_validated(raw: str) -> None:
    with pytest.raises(SettingsError, match="GATEWAY_KEY_MAX_IN_FLIGHT"):
        load_settings({"GATEWAY_KEY_MAX_IN_FLIGHT": raw})
    assert load_settings({}).gateway_key_max_in_flight == 0
    assert load_settings({"GATEWAY_KEY_MAX_IN_FLIGHT": "3"}).gateway_key_max_in_flight == 3
