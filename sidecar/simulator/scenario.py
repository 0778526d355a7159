"""The scenario file (docs/lingma-protocol.md §10.5): scripted turns, how one is chosen, and what it streams.

Choosing a turn: an entry's ``match`` regex is searched in the whole questionText; among matching
entries the one whose last match starts latest wins (the newest turn is rendered last), ties going to
the earlier entry; match entries are reusable. Entries without ``match`` are used once each, in order,
for turns that match nothing; which ones are spent is kept in the work dir, so a restart after
``crash`` does not replay it. ``instance`` restricts an entry to the work dir whose basename it names.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from . import render

__all__ = (
    "Action",
    "Crash",
    "Fail",
    "Forget",
    "InvokeTool",
    "LoginSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioTurn",
    "Sleep",
    "Stream",
    "TurnPicker",
    "load_scenario",
)

_ERROR_CODES = {"server": "SERVER_ERROR", "rate_limit": "RATE_LIMIT", "quota": "QUOTA_EXCEEDED"}
_THINK_CHUNK = 8


class ScenarioError(Exception):
    """The scenario file cannot be used; the simulator refuses to start."""


class ToolCallSpec(msgspec.Struct):
    name: str
    arguments: Any = msgspec.field(default_factory=dict)
    format: str = "contract"


class CustomToolCallSpec(msgspec.Struct):
    name: str
    input: Any = ""
    format: str = "contract"


class ErrorSpec(msgspec.Struct):
    status: int = 500
    kind: str = "server"
    message: str = "upstream failed"


class ToolInvokeSpec(msgspec.Struct):
    name: str
    parameters: Any = msgspec.field(default_factory=dict)
    timeout_ms: int = 60_000


class ReplyItem(msgspec.Struct):
    """One item of a reply; an item with several keys runs them in this field order."""

    text: str | None = None
    think: str | None = None
    tool_call: ToolCallSpec | None = None
    custom_tool_call: CustomToolCallSpec | None = None
    delay_ms: float | None = None
    tool_invoke: ToolInvokeSpec | None = None
    forget_session: bool = False
    error: ErrorSpec | None = None
    crash: bool = False


class LoginSpec(msgspec.Struct):
    """The ``login`` block: how the simulated login page behaves (see ``http_login``)."""

    start_logged_out: bool = False
    delay_ms: float = 0
    second_step: bool = False
    accounts: dict[str, str] = msgspec.field(default_factory=dict)
    redirects: int = 0
    """Hops between ``/lingma/login`` and the sign-in form (the real entry goes through several)."""
    captcha: bool = False
    """The sign-in page asks for a captcha instead of a password."""
    expire_after_ms: float = 0
    """The process's first login (at start, or by the page) expires this long after it was made."""


@dataclass(frozen=True, slots=True)
class Stream:
    pieces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Fail:
    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Crash:
    pass


@dataclass(frozen=True, slots=True)
class Forget:
    pass


@dataclass(frozen=True, slots=True)
class InvokeTool:
    name: str
    parameters: Any
    timeout_s: float


Action = Stream | Sleep | Fail | Crash | Forget | InvokeTool
_TERMINAL = (Fail, Crash, Forget)


class ScenarioTurn(msgspec.Struct):
    match: str | None = None
    chunk_size: int | None = None
    chunks: list[str] | None = None
    instance: str | None = None
    reply: list[ReplyItem] = msgspec.field(default_factory=list)

    def chunk(self, text: str, *, think: bool = False) -> tuple[str, ...]:
        if self.chunk_size:
            return tuple(render.chunk_chars(text, self.chunk_size))
        return tuple(render.chunk_chars(text, _THINK_CHUNK) if think else render.chunk_words(text))

    def actions(self) -> list[Action]:
        """The reply as a flat list of steps.

        ``chunks``, when given, replaces every text-producing item: its strings are streamed as they are,
        at the place of the first text-producing item (else before the first error/crash/forget, else last).
        """
        actions: list[Action] = []
        first_text: int | None = None
        for item in self.reply:
            for action in _item_actions(self, item):
                if isinstance(action, Stream) and self.chunks is not None:
                    first_text = len(actions) if first_text is None else first_text
                    continue
                actions.append(action)
        if self.chunks is not None:
            if first_text is None:
                terminal = [i for i, action in enumerate(actions) if isinstance(action, _TERMINAL)]
                first_text = terminal[0] if terminal else len(actions)
            actions.insert(first_text, Stream(tuple(self.chunks)))
        return actions


def _item_actions(turn: ScenarioTurn, item: ReplyItem) -> list[Action]:
    out: list[Action] = []
    if item.text is not None:
        out.append(Stream(turn.chunk(item.text)))
    if item.think is not None:
        out.append(Stream(turn.chunk(render.render_think(item.think), think=True)))
    if item.tool_call is not None:
        call = item.tool_call
        out.append(Stream(turn.chunk(render.render_tool_call(call.name, call.arguments, call.format))))
    if item.custom_tool_call is not None:
        custom = item.custom_tool_call
        out.append(Stream(turn.chunk(render.render_custom_tool_call(custom.name, custom.input, custom.format))))
    if item.delay_ms is not None:
        out.append(Sleep(max(0.0, item.delay_ms) / 1000))
    if item.tool_invoke is not None:
        invoke = item.tool_invoke
        out.append(InvokeTool(invoke.name, invoke.parameters, max(0, invoke.timeout_ms) / 1000))
    if item.forget_session:
        out.append(Forget())
    if item.error is not None:
        error = item.error
        out.append(Fail(error.status, _ERROR_CODES[error.kind], error.message))
    if item.crash:
        out.append(Crash())
    return out


class Scenario(msgspec.Struct):
    turns: list[ScenarioTurn] = msgspec.field(default_factory=list)
    login: LoginSpec = msgspec.field(default_factory=LoginSpec)


def _validate(scenario: Scenario) -> None:
    for index, turn in enumerate(scenario.turns):
        where = f"turns[{index}]"
        if turn.match is not None:
            try:
                re.compile(turn.match)
            except re.error as exc:
                raise ScenarioError(f"{where}.match is not a valid regex: {exc}") from exc
        for item in turn.reply:
            if item.error is not None and item.error.kind not in _ERROR_CODES:
                raise ScenarioError(f"{where}: error.kind must be one of {sorted(_ERROR_CODES)}")
            for call in (item.tool_call, item.custom_tool_call):
                if call is not None and call.format not in render.TOOL_CALL_FORMATS:
                    raise ScenarioError(f"{where}: tool call format must be one of {sorted(render.TOOL_CALL_FORMATS)}")


def load_scenario(path: str | None) -> tuple[Scenario, str]:
    """The scenario and a digest of its bytes (an empty scenario when no file is named)."""
    if not path:
        return Scenario(), ""
    try:
        raw = Path(path).read_bytes()
        scenario = msgspec.json.decode(raw, type=Scenario)
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ScenarioError(f"invalid scenario {path}: {exc}") from exc
    _validate(scenario)
    return scenario, hashlib.sha1(raw).hexdigest()


class _Cursor(msgspec.Struct):
    scenario: str = ""
    used: list[int] = msgspec.field(default_factory=list)


class TurnPicker:
    """Chooses the scenario turn for a questionText; see the module docstring for the rule."""

    def __init__(self, scenario: Scenario, digest: str, instance_id: str, cursor_path: Path) -> None:
        self._turns = [
            (index, turn, re.compile(turn.match) if turn.match is not None else None)
            for index, turn in enumerate(scenario.turns)
            if turn.instance in (None, instance_id)
        ]
        self._digest = digest
        self._path = cursor_path
        self._used = self._load_used()

    def _load_used(self) -> set[int]:
        try:
            cursor = msgspec.json.decode(self._path.read_bytes(), type=_Cursor)
        except (OSError, msgspec.DecodeError):
            return set()
        return set(cursor.used) if cursor.scenario == self._digest else set()

    def pick(self, question: str) -> ScenarioTurn | None:
        best: ScenarioTurn | None = None
        best_start = -1
        for _, turn, pattern in self._turns:
            if pattern is None:
                continue
            start = -1
            for found in pattern.finditer(question):
                start = found.start()
            if start > best_start:
                best, best_start = turn, start
        if best is not None:
            return best
        for index, turn, pattern in self._turns:
            if pattern is None and index not in self._used:
                self._used.add(index)
                self._path.write_bytes(msgspec.json.encode(_Cursor(self._digest, sorted(self._used))))
                return turn
        return None
