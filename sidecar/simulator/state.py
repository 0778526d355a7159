"""What the simulator keeps in its work dir: machine id, login (``cache/user``), endpoint, pending logins.

``cache/user`` is base64 of a JSON object that names the ``cache/id`` it was written for, so a work dir
counts as logged in only when the two travel together, as with the real binary's encrypted file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import msgspec

__all__ = ("LoginNonces", "PendingLogin", "UserInfo", "WorkDir", "default_user")

_TOKEN_LIFETIME_MS = 60 * 24 * 3600 * 1000
_NONCE_TTL_S = 600.0


class UserInfo(msgspec.Struct, kw_only=True):
    machine_id: str
    uid: str
    aid: str
    name: str
    security_oauth_token: str
    refresh_token: str
    expire_time: int
    user_type: str = "personal_standard"


def default_user(machine_id: str, name: str = "sim-user") -> UserInfo:
    """A deterministic account derived from the machine id (and name), written at start when logged in."""
    digest = hashlib.sha1(f"{machine_id}:{name}".encode()).hexdigest()
    uid = str(int(digest[:13], 16)).rjust(16, "5")[:16]
    return UserInfo(
        machine_id=machine_id,
        uid=uid,
        aid=uid,
        name=name,
        security_oauth_token=f"pt-{digest[:24]}",
        refresh_token=f"rt-{digest[-24:]}",
        expire_time=int(time.time() * 1000) + _TOKEN_LIFETIME_MS,
    )


class WorkDir:
    """Paths and small files under ``--workDir``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.logs = root / "logs"
        self.sessions = self.cache / "db"
        self._id_file = self.cache / "id"
        self._user_file = self.cache / "user"
        self._endpoint_file = self.cache / "endpoint.json"
        self.scenario_cursor = self.cache / "sim-scenario-cursor.json"
        self.machine_id = ""

    def prepare(self) -> str:
        """Create the directories and ``cache/id`` (a UUID, kept if it exists); return the machine id."""
        for path in (self.cache, self.logs, self.sessions):
            path.mkdir(parents=True, exist_ok=True)
        existing = self.load_machine_id()
        if not existing:
            existing = str(uuid.uuid4())
            self._id_file.write_text(existing, encoding="utf-8")
        self.machine_id = existing
        return existing

    def load_machine_id(self) -> str:
        """The machine id already on disk, or "" (without creating anything)."""
        try:
            self.machine_id = self._id_file.read_text(encoding="utf-8").strip()
        except OSError:
            self.machine_id = ""
        return self.machine_id

    def user(self) -> UserInfo | None:
        """The logged-in user: ``cache/user`` exists, decodes, was written for this ``cache/id``, has not expired."""
        user = self.stored_user()
        return user if user is not None and user.expire_time > time.time() * 1000 else None

    def stored_user(self) -> UserInfo | None:
        """``cache/user`` for this ``cache/id``, expired or not."""
        try:
            raw = base64.b64decode(self._user_file.read_bytes(), validate=True)
            user = msgspec.json.decode(raw, type=UserInfo)
        except (OSError, binascii.Error, msgspec.DecodeError):
            return None
        return user if user.machine_id == self.machine_id else None

    def write_user(self, user: UserInfo) -> None:
        encoded = base64.b64encode(msgspec.json.encode(user))
        tmp = self._user_file.with_suffix(".tmp")
        tmp.write_bytes(encoded)
        tmp.replace(self._user_file)

    def delete_user(self) -> None:
        self._user_file.unlink(missing_ok=True)

    def endpoint(self, default: str) -> str:
        try:
            stored = msgspec.json.decode(self._endpoint_file.read_bytes(), type=dict[str, str])
        except (OSError, msgspec.DecodeError):
            return default
        return stored.get("endpoint", default)

    def set_endpoint(self, endpoint: str) -> None:
        self._endpoint_file.write_bytes(msgspec.json.encode({"endpoint": endpoint}))


@dataclass(frozen=True, slots=True)
class PendingLogin:
    nonce: str
    verifier: str
    challenge: str
    expires_at: float


class LoginNonces:
    """Login nonces live in memory and are one-shot, so the process must stay up until the callback."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingLogin] = {}

    def issue(self) -> PendingLogin:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        login = PendingLogin(uuid.uuid4().hex, verifier, challenge, time.monotonic() + _NONCE_TTL_S)
        self._pending[login.nonce] = login
        return login

    def consume(self, nonce: str) -> bool:
        login = self._pending.pop(nonce, None)
        return login is not None and login.expires_at > time.monotonic()
