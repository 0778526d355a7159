"""The pool: which instance serves a turn, the per-instance slots, cool-down and readiness."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from common.errors import NoCapacityError, RateLimitedError
from common.settings import Account, Settings
from sidecar.pool import Pool, instance_ids
from tests.support.fake_lingma import FakeInstance


def pool(*instances: FakeInstance, **settings: Any) -> Pool:
    base: dict[str, Any] = {"lingma_bin": "/nonexistent/lingma", "gateway_instance_max_in_flight": 2}
    return Pool(Settings(**{**base, **settings}), instances=list(instances))  # type: ignore[arg-type]


async def wait_until(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_instance_ids_come_from_account_names_or_positions_never_usernames() -> None:
    accounts = (Account(username="alice@example.com", name="alice"), Account(username="bob@example.com"))
    assert instance_ids(Settings(lingma_accounts=accounts)) == ["alice", "acct-1"]
    assert instance_ids(Settings(instance_count=3)) == ["inst-0", "inst-1", "inst-2"]


def test_only_ready_instances_are_chosen() -> None:
    a, b = FakeInstance("a", state="starting"), FakeInstance("b")
    p = pool(a, b)
    assert [i.id for i in p.ready()] == ["b"]
    assert p.choose(None, None) is b


def test_no_ready_instance_is_no_capacity_naming_each_state() -> None:
    p = pool(FakeInstance("a", state="restarting"), FakeInstance("b", state="unhealthy"))
    with pytest.raises(NoCapacityError) as caught:
        p.choose(None, None)
    assert "a is restarting" in caught.value.message and "b is unhealthy" in caught.value.message
    assert caught.value.retry_after_s == 5.0


def test_all_logged_out_says_how_to_log_in() -> None:
    p = pool(FakeInstance("a", state="login_required"))
    with pytest.raises(NoCapacityError) as caught:
        p.choose(None, None)
    assert "a is logged out" in caught.value.message and "lingma-gateway login" in caught.value.message
    assert caught.value.retry_after_s == 30


def test_the_preferred_instance_wins_while_it_is_ready() -> None:
    a, b = FakeInstance("a"), FakeInstance("b")
    p = pool(a, b)
    assert p.choose("b", "some affinity") is b
    b.state = "restarting"
    assert p.choose("b", None) is a
    assert p.choose("no-such-instance", None) is a


def test_affinity_is_sticky_and_spreads_across_instances() -> None:
    instances = [FakeInstance(f"i{n}") for n in range(3)]
    p = pool(*instances)
    picks = {key: p.choose(None, key).id for key in (f"conversation-{n}" for n in range(40))}
    assert all(p.choose(None, key).id == chosen for key, chosen in picks.items())
    assert set(picks.values()) == {"i0", "i1", "i2"}


def test_affinity_survives_another_instance_leaving() -> None:
    """Rendezvous hashing: keys on the instances that stay do not move."""
    instances = [FakeInstance(f"i{n}") for n in range(3)]
    p = pool(*instances)
    before = {f"k{n}": p.choose(None, f"k{n}").id for n in range(30)}
    instances[2].state = "restarting"
    after = {key: p.choose(None, key).id for key in before}
    assert all(after[key] == chosen for key, chosen in before.items() if chosen != "i2")
    assert "i2" not in after.values()


async def test_without_affinity_the_least_busy_then_least_served_instance_is_chosen() -> None:
    a, b = FakeInstance("a", served_total=5), FakeInstance("b", served_total=9)
    p = pool(a, b)
    assert p.choose(None, None) is a
    async with p.slot(a):
        assert p.choose(None, None) is b
    assert p.choose(None, None) is a


async def test_a_full_instance_makes_the_next_turn_wait_then_429() -> None:
    a = FakeInstance("a")
    p = pool(a, gateway_instance_max_in_flight=1, gateway_queue_timeout_sec=0.05)
    async with p.slot(a):
        with pytest.raises(RateLimitedError) as caught:
            async with p.slot(a):
                pass
        assert caught.value.retry_after_s == 1
        assert p.snapshot()[0].in_flight == 1
    assert p.snapshot()[0].in_flight == 0


async def test_a_released_slot_lets_a_waiting_turn_in() -> None:
    a = FakeInstance("a")
    p = pool(a, gateway_instance_max_in_flight=1)
    order: list[str] = []

    async def turn(name: str, hold: float) -> None:
        async with p.slot(a):
            order.append(name)
            await asyncio.sleep(hold)

    first = asyncio.create_task(turn("first", 0.05))
    await wait_until(lambda: order == ["first"])
    await asyncio.gather(first, turn("second", 0))
    assert order == ["first", "second"]


async def test_a_slot_is_given_back_on_error_and_on_cancellation() -> None:
    a = FakeInstance("a")
    p = pool(a, gateway_instance_max_in_flight=1)
    with pytest.raises(ValueError, match="turn broke"):
        async with p.slot(a):
            raise ValueError("turn broke")
    entered = asyncio.Event()

    async def held() -> None:
        async with p.slot(a):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(held())
    await entered.wait()
    waiter = asyncio.create_task(held())  # waits for the slot, then is cancelled while waiting
    await asyncio.sleep(0.01)
    waiter.cancel()
    task.cancel()
    await asyncio.gather(task, waiter, return_exceptions=True)
    assert p.snapshot()[0].in_flight == 0
    async with p.slot(a):
        pass


async def test_a_cooling_instance_leaves_rotation_and_shows_it() -> None:
    a, b = FakeInstance("a"), FakeInstance("b")
    p = pool(a, b, gateway_cooldown_max_sec=60)
    p.cool_down(a, 30, "quota")
    try:
        assert [i.id for i in p.ready()] == ["b"]
        assert p.choose("a", None) is b
        snap = {s.id: s for s in p.snapshot()}
        assert snap["a"].state == "cooling_down"
        assert snap["a"].cooldown_until == pytest.approx(time.time() + 30, abs=2)
        assert snap["b"].cooldown_until is None
    finally:
        await p.stop()


async def test_cool_down_is_capped_and_no_capacity_says_when_to_come_back() -> None:
    a = FakeInstance("a")
    p = pool(a, gateway_cooldown_max_sec=20)
    p.cool_down(a, 3600, "rate limited")
    try:
        with pytest.raises(NoCapacityError) as caught:
            p.choose(None, None)
        assert "a is cooling_down" in caught.value.message
        assert caught.value.retry_after_s == pytest.approx(20, abs=1.5)
        assert p.snapshot()[0].cooldown_until <= time.time() + 20.5
        p.cool_down(a, 2, "a short hint")
        assert p.snapshot()[0].cooldown_until <= time.time() + 2.5
        p.cool_down(a, None, "no hint: the cap")
        assert p.snapshot()[0].cooldown_until == pytest.approx(time.time() + 20, abs=1.5)
    finally:
        await p.stop()


async def test_after_cooling_down_a_probe_brings_the_instance_back() -> None:
    a = FakeInstance("a")
    p = pool(a, gateway_cooldown_max_sec=0.05)
    p.cool_down(a, 0.05, "rate limited")
    assert p.ready() == []
    await wait_until(lambda: p.ready() == [a])
    assert a.probes == 1
    assert p.snapshot()[0].cooldown_until is None


async def test_a_failed_probe_keeps_the_instance_out_until_one_answers() -> None:
    a = FakeInstance("a", probe_ok=False)
    p = pool(a, gateway_cooldown_max_sec=0.05)
    p.cool_down(a, 0.01, "rate limited")
    try:
        await wait_until(lambda: a.probes >= 2)
        assert p.ready() == []
        a.probe_ok = True
        await wait_until(lambda: p.ready() == [a])
    finally:
        await p.stop()


async def test_readiness_and_models_are_learned_once_and_merged() -> None:
    a, b = FakeInstance("a"), FakeInstance("b")
    b.models = {"chat": [{"key": "kimi", "displayName": "Kimi"}, {"key": "qwen3-coder", "displayName": "Qwen"}]}
    p = pool(a, b)
    first = await p.all_models()
    second = await p.all_models()
    assert [m.key for m in first] == ["qwen3-coder", "kimi"]
    assert first == second
    assert a.model_queries == b.model_queries == 1
    a.state = "restarting"
    assert [m.key for m in await p.all_models()] == ["kimi", "qwen3-coder"]


async def test_without_a_binary_start_marks_every_instance() -> None:
    a = FakeInstance("a", state="stopped")
    p = Pool(Settings(lingma_bin=""), instances=[a])  # type: ignore[list-item]
    p.binary = ""
    await p.start()
    assert a.last_error is not None and "LINGMA_BIN" in a.last_error
    assert p.ready() == []


def test_every_process_state_has_its_place_in_the_reported_states() -> None:
    """The pool reports a process state as it is; the shared state set must hold every one of them."""
    from typing import get_args

    from common.stats import InstanceState
    from sidecar.lingma import instance

    assert set(get_args(instance.ProcessState)) <= {s.value for s in InstanceState}
    assert {s.value for s in InstanceState} >= {"logging_in", "login_failed", "cooling_down"}
