"""The client-to-server methods and how each message is answered.

Params must be a JSON object, as the real binary decodes them into Go structs: an array or missing
params is answered with Go's unmarshal error. Unknown methods get -32601 (and the ``initialized``
notification is only logged as unknown, as 2.11.1 does). Responses to the simulator's own pushes are
accepted and journaled.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from .chat import AskParams, ChatService
from .cli import VERSION
from .framing import FrameError
from .journal import Journal
from .models import query_models
from .rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Connection,
    RpcError,
    go_decode_error,
)
from .state import LoginNonces, WorkDir

__all__ = ("Deferred", "Dispatcher")

_log = logging.getLogger(__name__)
_GO_TYPES = {
    "initialize": "definition.InitializeParams",
    "chat/ask": "definition.AskParams",
    "chat/stop": "definition.ChatStopParam",
    "chat/deleteSessionById": "definition.SessionParam",
    "chat/getSessionById": "definition.SessionParam",
    "config/updateEndpoint": "definition.UpdateEndpointParam",
    "login/generateUrl": "definition.GenerateLoginUrlParam",
    "tool/invokeResult": "definition.ToolInvokeResultParam",
}
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Deferred:
    """A result plus work that must happen only after the reply is on the wire."""

    result: Any
    then: Callable[[], Awaitable[None]]


Handler = Callable[[Connection, dict[str, Any]], Awaitable[Any]]


class Dispatcher:
    def __init__(
        self,
        work: WorkDir,
        chat: ChatService,
        nonces: LoginNonces,
        journal: Journal,
        *,
        http_port: int,
        default_endpoint: str,
    ) -> None:
        self._work = work
        self._chat = chat
        self._nonces = nonces
        self._journal = journal
        self._http_port = http_port
        self._default_endpoint = default_endpoint
        self._handlers: dict[str, Handler] = {
            "initialize": self._initialize,
            "ping": self._ping,
            "auth/status": self._auth_status,
            "auth/logout": self._auth_logout,
            "login/generateUrl": self._generate_url,
            "config/getEndpoint": self._get_endpoint,
            "config/updateEndpoint": self._update_endpoint,
            "config/queryModels": self._query_models,
            "chat/ask": self._chat_ask,
            "chat/stop": self._chat_stop,
            "chat/deleteSessionById": self._delete_session,
            "chat/getSessionById": self._get_session,
            "tool/invokeResult": self._tool_invoke_result,
        }

    async def handle_error(self, conn: Connection, error: FrameError) -> None:
        """Garbage instead of a frame: answer ``Unknown message header``, with the id if it was bare JSON."""
        msg_id: object = None
        try:
            bare = json.loads(error.discarded)
        except (ValueError, RecursionError):
            bare = None
        if isinstance(bare, dict):
            msg_id = bare.get("id")
        _log.warning("dropped %d bytes without a Content-Length header", len(error.discarded))
        await conn.reply_error(msg_id, PARSE_ERROR, error.message)

    async def _parse(self, conn: Connection, body: bytes) -> dict[str, Any] | None:
        """The frame's JSON object, or None after answering why it is not one."""
        try:
            message = json.loads(body)
        except (ValueError, RecursionError) as exc:
            await conn.reply_error(None, PARSE_ERROR, f"parse error: {exc}")
            return None
        if not isinstance(message, dict):
            await conn.reply_error(None, INVALID_REQUEST, "invalid request: not a JSON object")
            return None
        return message

    async def handle_frame(self, conn: Connection, body: bytes) -> None:
        message = await self._parse(conn, body)
        if message is None:
            return
        method = message.get("method")
        if method is None:
            if "id" in message:
                conn.accept_response(message)
            return
        self._journal.record("in", message)
        is_request = "id" in message
        msg_id = message.get("id")
        try:
            outcome = await self._call(conn, str(method), message.get("params", _MISSING))
        except RpcError as exc:
            if is_request:
                await conn.reply_error(msg_id, exc.code, exc.message, str(method))
            return
        except Exception as exc:  # noqa: BLE001 - any bad input is answered, never fatal
            _log.exception("%s failed", method)
            if is_request:
                await conn.reply_error(msg_id, INTERNAL_ERROR, f"internal error: {exc}", str(method))
            return
        result = outcome.result if isinstance(outcome, Deferred) else outcome
        if is_request:
            await conn.reply(msg_id, result, str(method))
        if isinstance(outcome, Deferred):
            await outcome.then()

    async def _call(self, conn: Connection, method: str, params: object) -> Any:
        handler = self._handlers.get(method)
        if handler is None:
            _log.info("unknown method: %s", method)
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {method}")
        if params is None:
            params = {}
        if params is _MISSING:
            raise RpcError(INVALID_PARAMS, "unexpected end of JSON input")
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, go_decode_error(params, _GO_TYPES.get(method, "definition.EmptyRequest")))
        return await handler(conn, params)

    def _logged_in(self) -> bool:
        return self._work.user() is not None

    async def _initialize(self, conn: Connection, params: dict[str, Any]) -> Any:
        result = {"capabilities": {}, "serverInfo": {"name": "lingma", "version": VERSION}}
        if not conn.quirks:
            return result

        async def noise() -> None:
            await conn.push("window/logMessage", {"type": 3, "message": f"Lingma {VERSION} initialized"})

        return Deferred(result, noise)

    async def _ping(self, conn: Connection, params: dict[str, Any]) -> Any:
        return {"success": True}

    async def _auth_status(self, conn: Connection, params: dict[str, Any]) -> Any:
        user = self._work.user()
        if user is None:
            expired = self._work.stored_user() is not None
            status = 3 if expired else 1  # LOGIN_EXPIRED, NOT_LOGIN
            return {"status": status, "id": "", "accountId": "", "name": "", "token": "", "refreshToken": ""}
        return {
            "status": 2,
            "id": user.uid,
            "accountId": user.uid,
            "name": user.name,
            "token": user.security_oauth_token,
            "refreshToken": user.refresh_token,
            "expireTime": user.expire_time,
            "userType": user.user_type,
            "cloudType": "cloud",
            "whitelist": 3,
        }

    async def _auth_logout(self, conn: Connection, params: dict[str, Any]) -> Any:
        self._work.delete_user()
        _log.info("Deleted user info file.")
        return {"success": True}

    async def _generate_url(self, conn: Connection, params: dict[str, Any]) -> Any:
        login = self._nonces.issue()
        query = urllib.parse.urlencode(
            {
                "nonce": login.nonce,
                "state": login.nonce,
                "port": self._http_port,
                "challenge": login.challenge,
                "challenge_method": "S256",
                "machine_id": self._work.machine_id,
            }
        )
        return {
            "success": True,
            "loginUrl": f"http://127.0.0.1:{self._http_port}/lingma/login?{query}",
            "nonce": login.nonce,
            "verifier": login.verifier,
            "challenge": login.challenge,
            "challengeMethod": "S256",
            "errorCode": "",
            "errorMsg": "",
        }

    async def _get_endpoint(self, conn: Connection, params: dict[str, Any]) -> Any:
        return {"endpoint": self._work.endpoint(self._default_endpoint)}

    async def _update_endpoint(self, conn: Connection, params: dict[str, Any]) -> Any:
        endpoint = params.get("endpoint")
        if not isinstance(endpoint, str):
            raise RpcError(INVALID_PARAMS, "json: cannot unmarshal endpoint into Go struct field of type string")
        self._work.set_endpoint(endpoint)
        return {"success": True}

    async def _query_models(self, conn: Connection, params: dict[str, Any]) -> Any:
        return query_models(self._logged_in())

    async def _chat_ask(self, conn: Connection, params: dict[str, Any]) -> Any:
        try:
            ask = msgspec.convert(params, AskParams)
        except msgspec.ValidationError as exc:
            raise RpcError(INVALID_PARAMS, f"json: cannot unmarshal chat/ask params: {exc}") from exc
        verdict = self._chat.check(ask)
        if not verdict["success"]:
            return verdict

        async def start() -> None:
            self._chat.start(conn, ask)

        return Deferred(verdict, start)

    async def _chat_stop(self, conn: Connection, params: dict[str, Any]) -> Any:
        request_id, session_id = str(params.get("requestId") or ""), str(params.get("sessionId") or "")

        return Deferred({}, lambda: self._chat.stop(request_id, session_id))

    async def _delete_session(self, conn: Connection, params: dict[str, Any]) -> Any:
        self._chat.delete_session(str(params.get("sessionId") or ""))
        return {"success": True}

    async def _get_session(self, conn: Connection, params: dict[str, Any]) -> Any:
        session = self._chat.session(str(params.get("sessionId") or ""))
        if session is None:
            raise RpcError(INTERNAL_ERROR, f"session not found: {params.get('sessionId')}")
        now = int(time.time() * 1000)
        return {
            "sessionId": session.sessionId,
            "sessionTitle": session.sessionTitle,
            "gmtCreate": session.gmtCreate,
            "gmtModified": now,
            "chatRecords": [
                {"requestId": r.requestId, "sessionId": session.sessionId, "question": r.question, "answer": r.answer}
                for r in session.records
            ],
        }

    async def _tool_invoke_result(self, conn: Connection, params: dict[str, Any]) -> Any:
        self._chat.tool_result(params)
        return {"errorCode": None, "errorMessage": None}
