"""One ``chat/ask`` turn: the accept reply, then the pushed sequence of docs/lingma-protocol.md §6.

Pushes, all JSON-RPC requests carrying the ask's ``requestId``:
``chat/process_step_callback`` (step_start, done), ``session/title/update {sessionId, sessionTitle}``,
N x ``chat/answer``, ``chat/process_step_callback`` (step_end, done), ``chat/finish``. With quirks on the
session id appears only in ``session/title/update`` and ``chat/finish`` (``chat/answer`` carries
``sessionId: ""``), an empty ``chat/answer`` follows every second real chunk, ``window/logMessage`` noise is
pushed, and ``fullAnswer`` is ``""`` on every even-numbered turn of a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from . import render
from .ask import AskParams, Turn
from .journal import Journal
from .rpc import Connection
from .scenario import Action, Crash, Fail, Forget, InvokeTool, Sleep, Stream, TurnPicker
from .sessions import Session, SessionRecord, SessionStore

__all__ = ("AskParams", "ChatService")

_log = logging.getLogger(__name__)
_TITLE_CHARS = 40


class _SessionForgotten(Exception):
    pass


class ChatService:
    """Runs turns as tasks so one connection carries several chats and keeps reading while they stream."""

    def __init__(
        self,
        sessions: SessionStore,
        picker: TurnPicker,
        journal: Journal,
        *,
        is_logged_in: Callable[[], bool],
        model_keys: frozenset[str],
    ) -> None:
        self._sessions = sessions
        self._picker = picker
        self._journal = journal
        self._is_logged_in = is_logged_in
        self._model_keys = model_keys
        self._turns: dict[str, Turn] = {}
        self._tool_results: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def check(self, params: AskParams) -> dict[str, Any]:
        """The synchronous ``chat/ask`` result: accepted, or why not."""
        if not self._is_logged_in():
            return {"success": False, "errorCode": "NOT_LOGIN", "errorMessage": "user not login"}
        key = params.model_key
        if key and key not in self._model_keys:
            return {"success": False, "errorCode": "MODEL_NOT_FOUND", "errorMessage": f"model not found: {key}"}
        return {"success": True, "errorCode": "", "errorMessage": ""}

    def start(self, conn: Connection, params: AskParams) -> None:
        """Begin streaming an accepted ask; called after its reply went out."""
        turn = Turn(
            conn,
            params.requestId or uuid.uuid4().hex,
            params.sessionId or "",
            params.sessionType or "chat",
        )
        self._turns[turn.request_id] = turn
        turn.task = asyncio.create_task(self._run(turn, params.questionText or ""))

    async def stop(self, request_id: str, session_id: str) -> None:
        for turn in list(self._turns.values()):
            if turn.request_id == request_id or (not request_id and session_id and turn.session_id == session_id):
                turn.stop_requested = True
                if turn.task is not None:
                    turn.task.cancel()
                if not turn.started:
                    # A task cancelled before its first step never runs, so its finish is sent here.
                    self._turns.pop(turn.request_id, None)
                    await self._send_quietly(turn, turn.finish("cancelled", 200, ""))

    def connection_closed(self, conn: Connection) -> None:
        for turn in list(self._turns.values()):
            if turn.conn is conn and turn.task is not None:
                turn.task.cancel()

    def tool_result(self, params: dict[str, Any]) -> None:
        future = self._tool_results.get(str(params.get("toolCallId", "")))
        if future is not None and not future.done():
            future.set_result(params)

    def delete_session(self, session_id: str) -> bool:
        return self._sessions.delete(session_id)

    def session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    async def _run(self, turn: Turn, question: str) -> None:
        turn.started = True
        try:
            await self._play(turn, question)
        except asyncio.CancelledError:
            if not turn.stop_requested:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self._close_record(turn, "cancelled")
            await self._send_quietly(turn, turn.finish("cancelled", 200, "".join(turn.pieces)))
        except ConnectionClosed:
            self._close_record(turn, "disconnected")
        except _SessionForgotten:
            await self._send_quietly(turn, self._not_found(turn))
        except Exception:  # noqa: BLE001 - a bug in one turn must end that turn, not the simulator
            _log.exception("turn %s failed", turn.request_id)
            failure = turn.finish("error", 500, "", errorCode="SERVER_ERROR", errorMessage="internal simulator error")
            await self._send_quietly(turn, failure)
        finally:
            if self._turns.get(turn.request_id) is turn:
                del self._turns[turn.request_id]

    async def _send_quietly(self, turn: Turn, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await turn.conn.send(message)

    def _not_found(self, turn: Turn) -> dict[str, Any]:
        return turn.finish(
            "error", 404, "", errorCode="SESSION_NOT_FOUND", errorMessage=f"session not found: {turn.session_id}"
        )

    def _close_record(self, turn: Turn, status: str) -> None:
        session = self._sessions.get(turn.session_id)
        if session is None:
            return
        for record in reversed(session.records):
            if record.requestId == turn.request_id:
                record.answer, record.status = "".join(turn.pieces), status
                self._sessions.save(session)
                return

    def _open_session(self, turn: Turn, question: str) -> Session:
        if turn.session_id:
            session = self._sessions.get(turn.session_id)
            if session is None:
                raise _SessionForgotten
        else:
            turn.session_id = str(uuid.uuid4())
            session = self._sessions.create(turn.session_id, render.newest_text(question)[:_TITLE_CHARS])
        session.records.append(SessionRecord(turn.request_id, question))
        self._sessions.save(session)
        return session

    async def _announce(self, turn: Turn, session: Session) -> None:
        conn = turn.conn
        await conn.send(turn.step("step_start"))
        title = conn.push_message(
            "session/title/update", {"sessionId": turn.session_id, "sessionTitle": session.sessionTitle}
        )
        if conn.quirks:
            noise = conn.push_message(
                "window/logMessage", {"type": 4, "message": f"chat request {turn.request_id} accepted"}
            )
            await conn.send_batch([title, noise])
        else:
            await conn.send(title)

    async def _play(self, turn: Turn, question: str) -> None:
        session = self._open_session(turn, question)
        number = len(session.records)
        plan = self._picker.pick(question)
        await self._announce(turn, session)
        actions = (
            plan.actions()
            if plan is not None
            else [Stream(tuple(render.chunk_words(render.default_reply(turn.session_id, session.questions))))]
        )
        for action in actions:
            if not await self._act(turn, action):
                return
        self._close_record(turn, "success")
        full = "".join(turn.pieces)
        if turn.conn.quirks and number % 2 == 0:
            full = ""
        await turn.conn.send_batch([turn.step("step_end"), turn.finish("success", 200, full)])

    async def _act(self, turn: Turn, action: Action) -> bool:
        """Play one scenario action; False when it ended the turn."""
        match action:
            case Stream(pieces):
                for piece in pieces:
                    await turn.stream(piece)
            case Sleep(seconds):
                await asyncio.sleep(seconds)
            case InvokeTool(name, parameters, timeout_s):
                await self._invoke_tool(turn, name, parameters, timeout_s)
            case Fail(status, code, message):
                self._close_record(turn, "error")
                await turn.conn.send_batch(
                    [
                        turn.step("step_end", "error"),
                        turn.finish("error", status, "", errorCode=code, errorMessage=message),
                    ]
                )
                return False
            case Forget():
                self._sessions.delete(turn.session_id)
                raise _SessionForgotten
            case Crash():
                _log.error("scenario crash during request %s", turn.request_id)
                self._journal.close()
                os._exit(137)
        return True

    async def _invoke_tool(self, turn: Turn, name: str, parameters: Any, timeout_s: float) -> None:
        """Ask the client to run a built-in tool and hold the stream until ``tool/invokeResult`` names it."""
        call_id = f"toolcall-{uuid.uuid4().hex}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._tool_results[call_id] = future
        try:
            await turn.conn.push(
                "tool/invoke",
                {
                    "requestId": turn.request_id,
                    "toolCallId": call_id,
                    "name": name,
                    "parameters": parameters,
                    "async": True,
                },
            )
            try:
                await asyncio.wait_for(future, timeout_s)
            except TimeoutError:
                _log.warning("no tool/invokeResult for %s within %.0fs; going on", call_id, timeout_s)
        finally:
            self._tool_results.pop(call_id, None)
