"""Cells own their accounts explicitly; one affinity header works for every dialect."""

from __future__ import annotations

import json

import pytest

from common.settings import SettingsError, load_settings
from handlers.affinity import affinity_of
from sidecar.pool import instance_ids

ACCOUNTS = json.dumps(
    [
        {"username": "a@x", "name": "alice", "cell": "lingma-cell-0"},
        {"username": "b@x", "cell": "lingma-cell-0"},
        {"username": "c@x", "name": "carol", "cell": "lingma-cell-1"},
    ]
)


def test_a_cell_runs_only_its_accounts_with_ids_prefixed_by_its_name() -> None:
    zero = load_settings({"LINGMA_ACCOUNTS": ACCOUNTS, "GATEWAY_CELL": "lingma-cell-0"})
    one = load_settings({"LINGMA_ACCOUNTS": ACCOUNTS, "GATEWAY_CELL": "lingma-cell-1"})
    assert instance_ids(zero) == ["lingma-cell-0-alice", "lingma-cell-0-acct-1"]
    assert instance_ids(one) == ["lingma-cell-1-carol"]
    assert [n for n, _ in one.cell_accounts] == [2]


def test_without_accounts_a_cell_prefixes_its_counted_instances() -> None:
    settings = load_settings({"INSTANCE_COUNT": "2", "GATEWAY_CELL": "c7"})
    assert instance_ids(settings) == ["c7-inst-0", "c7-inst-1"]
    assert instance_ids(load_settings({"INSTANCE_COUNT": "2"})) == ["inst-0", "inst-1"]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LINGMA_ACCOUNTS": ACCOUNTS}, "GATEWAY_CELL: LINGMA_ACCOUNTS assigns accounts to cells"),
        ({"LINGMA_ACCOUNTS": ACCOUNTS, "GATEWAY_CELL": "lingma-cell-9"}, "no account is assigned to cell"),
        (
            {"LINGMA_ACCOUNTS": json.dumps([{"username": "a", "cell": "c0"}, {"username": "b"}]), "GATEWAY_CELL": "c0"},
            "account(s) #1 do not",
        ),
        ({"GATEWAY_CELL": "c0", "LINGMA_SESSION_BUNDLE": "SECRETBUNDLE"}, "LINGMA_SESSION_BUNDLE: refused"),
        ({"GATEWAY_CELL": "Cell_0"}, "GATEWAY_CELL: not a valid cell name"),
        ({"LINGMA_ACCOUNTS": json.dumps([{"username": "a", "cell": "../x"}]), "GATEWAY_CELL": "c0"}, "account #0"),
    ],
)
def test_cell_settings_are_refused_with_the_reason(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert named in str(caught.value)
    assert "SECRETBUNDLE" not in str(caught.value) and "a@x" not in str(caught.value)


def test_a_session_bundle_still_works_without_cells() -> None:
    assert load_settings({"LINGMA_SESSION_BUNDLE": "abc"}).lingma_session_bundle == "abc"


def test_the_generic_header_wins_and_each_clients_own_header_still_counts() -> None:
    assert affinity_of({"x-session-affinity": "g", "x-claude-code-session-id": "cc", "session-id": "cx"}) == "g"
    assert affinity_of({"x-claude-code-session-id": "cc"}) == "cc"
    assert affinity_of({"session-id": "cx"}) == "cx"
    assert affinity_of({"session_id": "cx2"}) == "cx2"
    assert affinity_of({"thread-id": "t"}) == "t"
    assert affinity_of({"x-session-affinity": "", "thread-id": "t"}) == "t"
    assert affinity_of({"authorization": "Bearer k"}) is None
