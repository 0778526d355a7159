"""Every setting the gateway reads, validated in one place.

Settings are built from a mapping of variable names to text (``Settings.from_mapping``): the environment,
with command-line flags laid over it as overrides, so no process ever writes its flags into ``os.environ``.
The names are listed in the README's configuration table (docs/operations.md §1); deployments of the
predecessor move over unchanged. Building collects every bad value before failing, so an operator fixes
them all at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

__all__ = (
    "SETTINGS_HELP",
    "Account",
    "AskMode",
    "Settings",
    "SettingsError",
    "default_data_dir",
    "default_socket_path",
    "key_name",
    "load_settings",
)

AskMode = Literal["chat", "agent"]
"""How Lingma is asked: plain chat, or its agent (``DEFAULT_ASK_MODE``, the ``lingma-agent`` model)."""

MAX_SOCKET_PATH = 100
T = TypeVar("T")


class SettingsError(ValueError):
    """One or more settings are invalid; the message lists each one."""


class Account(msgspec.Struct, frozen=True, kw_only=True):
    username: str
    password: str = ""
    session_bundle: str | None = None
    name: str | None = None
    cell: str | None = None
    """The cell (``GATEWAY_CELL``) that serves this account; each account belongs to exactly one."""

    def __repr__(self) -> str:
        return f"Account(name={self.name!r}, cell={self.cell!r})"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    api_keys: tuple[str, ...] = ()
    api_key_names: tuple[tuple[str, str], ...] = ()
    """(name, key) for each key given as ``name:key`` in ``API_KEYS``."""
    admin_token: str = ""
    metrics_token: str = ""
    metrics_public: bool = False
    lingma_bin: str = ""
    lingma_work_dir: str = ""
    lingma_socket_port: int = 37010
    lingma_startup_timeout: float = 30.0
    lingma_rpc_timeout: float = 300.0
    lingma_first_chunk_timeout: float = 60.0
    lingma_accounts: tuple[Account, ...] = ()
    lingma_session_bundle: str = ""
    instance_count: int = 1
    default_model: str = ""
    default_ask_mode: AskMode = "chat"
    model_aliases: tuple[tuple[str, str], ...] = ()
    auto_login_enabled: bool = True
    auto_login_headless: bool = True
    auto_login_timeout: float = 120.0
    auto_login_max_retry: int = 2
    dedicated_domain_url: str = ""
    auto_login_browser: str = ""
    auto_login_max_browsers: int = 2
    lingma_probe_interval: float = 2.0
    lingma_probe_timeout: float = 2.0
    lingma_probe_misses: int = 3
    gateway_max_in_flight: int = 32
    gateway_queue_timeout_sec: float = 5.0
    session_reuse_enabled: bool = True
    session_cache_max_entries: int = 10000
    session_cache_ttl_sec: float = 3600.0
    session_cache_lock_timeout: float = 15.0
    tool_forward_enabled: bool = True
    tool_allowlist: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_json: bool = False
    gateway_data_dir: str = ""
    gateway_socket: str = ""
    gateway_socket_mode: int = 0o600
    gateway_heartbeat_sec: float = 3.0
    gateway_max_body_bytes: int = 16 * 1024 * 1024
    gateway_instance_max_in_flight: int = 0
    """0: the same as ``gateway_max_in_flight`` (see ``instance_limit``)."""
    gateway_key_max_in_flight: int = 0
    gateway_cooldown_max_sec: float = 300.0
    lingma_sim_scenario: str = ""
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8787
    gateway_allow_open: bool = False
    gateway_max_connections: int = 1024
    gateway_keepalive_timeout_sec: float = 5.0
    gateway_header_timeout_sec: float = 10.0
    gateway_body_timeout_sec: float = 60.0
    gateway_max_request_line: int = 8192
    gateway_max_header_bytes: int = 32768
    gateway_max_headers: int = 100
    gateway_cell: str = ""

    def __repr__(self) -> str:
        return f"Settings(data_dir={self.data_dir!r}, socket={self.socket_path!r})"

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], overrides: Mapping[str, str | None] | None = None) -> Settings:
        """Read and validate every setting from ``env`` with ``overrides`` (flags, by variable name; None or
        "" leaves the variable as ``env`` has it) on top; raise ``SettingsError`` naming each bad value (never
        the value). The data dir and socket defaults are resolved here, from ``env``, once."""
        given = {name: value for name, value in (overrides or {}).items() if value}
        return _build({**env, **given})

    @property
    def instance_limit(self) -> int:
        """Turns at once per instance: unset means the global limit, so one instance is never cut below it."""
        return self.gateway_instance_max_in_flight or self.gateway_max_in_flight

    @property
    def data_dir(self) -> Path:
        """``from_mapping`` always sets it; a bare ``Settings()`` falls back to the home directory's default."""
        return Path(self.gateway_data_dir) if self.gateway_data_dir else default_data_dir({})

    @property
    def socket_path(self) -> Path:
        return Path(self.gateway_socket) if self.gateway_socket else default_socket_path({}, self.data_dir)

    @property
    def work_dir(self) -> Path:
        return Path(self.lingma_work_dir) if self.lingma_work_dir else self.data_dir / "instances"

    @property
    def cell_accounts(self) -> tuple[tuple[int, Account], ...]:
        """(position in ``LINGMA_ACCOUNTS``, account) of the accounts this process serves: its cell's, or all."""
        return tuple(
            (n, a) for n, a in enumerate(self.lingma_accounts) if not self.gateway_cell or a.cell == self.gateway_cell
        )

    def key_name(self, key: str) -> str:
        """The name usage and limits are kept under: the key's given name, else a short hash of it."""
        return key_name(key, self.api_key_names)


def key_name(key: str, names: tuple[tuple[str, str], ...] = ()) -> str:
    """``open`` for the open gateway; never the key itself. Compared in constant time like the auth check."""
    if not key:
        return "open"
    found = ""
    given = key.encode()
    for name, candidate in names:
        if hmac.compare_digest(given, candidate.encode()) and not found:
            found = name
    return found or "key-" + hashlib.sha256(("lingma-gateway:" + key).encode()).hexdigest()[:8]


def default_data_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path(env.get("HOME", str(Path.home()))) / ".local" / "share"
    return base / "lingma-gateway"


def default_socket_path(env: Mapping[str, str], data_dir: Path) -> Path:
    """One socket per data dir: under ``XDG_RUNTIME_DIR``, named for a hash of the data dir's absolute path."""
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        digest = hashlib.sha256(os.fsencode(data_dir.expanduser().resolve())).hexdigest()[:16]
        return Path(runtime) / f"lingma-gateway-{digest}.sock"
    return data_dir / "sidecar.sock"


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _int_at_least_0(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError("must be 0 (off) or more")
    return value


def _port(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 65535:
        raise ValueError("must be a port number between 1 and 65535")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number") from None
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_KEY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def _api_keys(raw: str) -> tuple[tuple[str, str], ...]:
    """``key`` or ``name:key`` entries, comma-separated; a message never quotes an entry (it may be a key)."""
    entries: list[tuple[str, str]] = []
    for part in _csv(raw):
        name, sep, key = part.partition(":")
        if sep and _KEY_NAME.fullmatch(name) and key:
            entries.append((name, key))
        else:
            entries.append(("", part))
    names = [name for name, _ in entries if name]
    if len(set(names)) != len(names):
        raise ValueError("two entries have the same name; each name:key needs its own name")
    keys = [key for _, key in entries]
    if len(set(keys)) != len(keys):
        raise ValueError("the same key is listed twice")
    return tuple(entries)


def _accounts(raw: str) -> tuple[Account, ...]:
    try:
        accounts = tuple(msgspec.json.decode(raw.encode(), type=list[Account]))
    except msgspec.DecodeError:
        raise ValueError("expected a JSON list of {username, password, session_bundle?, name?, cell?}") from None
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid account list: {exc}") from None
    for n, account in enumerate(accounts):
        if account.cell is not None and not _CELL_NAME.fullmatch(account.cell):
            raise ValueError(f"account #{n}: cell {account.cell!r} is not a valid cell name ({_CELL_RULE})")
    return accounts


def _cell(raw: str) -> str:
    if not _CELL_NAME.fullmatch(raw):
        raise ValueError(f"not a valid cell name ({_CELL_RULE})")
    return raw


def _cell_problems(settings: Settings) -> list[str]:
    """Cells own their accounts explicitly, so that no rescale ever gives one account to two cells."""
    accounts = settings.lingma_accounts
    named = [a.cell is not None for a in accounts]
    problems: list[str] = []
    if not settings.gateway_cell:
        if any(named):
            problems.append("GATEWAY_CELL: LINGMA_ACCOUNTS assigns accounts to cells; set GATEWAY_CELL to this cell")
        return problems
    if settings.lingma_session_bundle:
        problems.append(
            "LINGMA_SESSION_BUNDLE: refused when cells are configured (it applies to the first instance of "
            "whichever cell starts); give each account its own session_bundle"
        )
    unassigned = [str(n) for n, has_cell in enumerate(named) if not has_cell]
    if unassigned:
        problems.append(
            f"LINGMA_ACCOUNTS: with GATEWAY_CELL set every account names its cell; account(s) #{', #'.join(unassigned)}"
            " do not"
        )
    elif accounts and not settings.cell_accounts:
        problems.append(f"LINGMA_ACCOUNTS: no account is assigned to cell {settings.gateway_cell!r}")
    return problems


def _aliases(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError('expected a JSON object such as {"gpt-4o": "dashscope_qwen3_coder"}') from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError("expected a JSON object of string to string")
    return tuple(sorted(data.items()))


def _ask_mode(raw: str) -> AskMode:
    if raw == "chat":
        return "chat"
    if raw == "agent":
        return "agent"
    raise ValueError("expected chat or agent")


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _octal_mode(raw: str) -> int:
    value = int(raw, 8)
    if value not in (0o600, 0o660):
        raise ValueError("expected 600 (owner only) or 660 (owner and group)")
    return value


def _socket_path(raw: str) -> str:
    if len(os.fsencode(raw)) > MAX_SOCKET_PATH:
        raise ValueError(f"socket path is longer than {MAX_SOCKET_PATH} bytes")
    return raw


_CELL_RULE = "lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit"
_CELL_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

_Parser = Callable[[str], object]

# (environment variable, field, parser, help text)
_SPEC: tuple[tuple[str, str, _Parser, str], ...] = (
    (
        "API_KEYS",
        "api_keys",
        _api_keys,
        "comma-separated client API keys, each KEY or NAME:KEY; empty means open (loopback only)",
    ),
    ("ADMIN_TOKEN", "admin_token", str, "token for /internal/*; empty falls back to the API keys"),
    ("METRICS_TOKEN", "metrics_token", str, "token for /metrics (the API keys also work)"),
    ("METRICS_PUBLIC", "metrics_public", _bool, "serve /metrics without a token"),
    ("LINGMA_BIN", "lingma_bin", str, "path of the Lingma binary; empty: discovered"),
    ("LINGMA_WORK_DIR", "lingma_work_dir", str, "base directory of instance work dirs (default <data>/instances)"),
    ("LINGMA_SOCKET_PORT", "lingma_socket_port", _port, "first Lingma WebSocket port"),
    ("LINGMA_STARTUP_TIMEOUT", "lingma_startup_timeout", _positive_float, "seconds for a Lingma process to listen"),
    ("LINGMA_RPC_TIMEOUT", "lingma_rpc_timeout", _positive_float, "seconds for a turn to finish"),
    (
        "LINGMA_FIRST_CHUNK_TIMEOUT",
        "lingma_first_chunk_timeout",
        _positive_float,
        "seconds from chat/ask to a turn's first chunk; a turn that misses it fails with upstream_timeout",
    ),
    (
        "LINGMA_ACCOUNTS",
        "lingma_accounts",
        _accounts,
        "JSON list of {username, password, session_bundle?, name?, cell?}",
    ),
    ("LINGMA_SESSION_BUNDLE", "lingma_session_bundle", str, "base64 tar.gz of a logged-in work dir"),
    ("INSTANCE_COUNT", "instance_count", _positive_int, "instances when no accounts are listed"),
    ("DEFAULT_MODEL", "default_model", str, "model key used for unknown model names"),
    ("DEFAULT_ASK_MODE", "default_ask_mode", _ask_mode, "chat or agent"),
    ("MODEL_ALIASES", "model_aliases", _aliases, "JSON object mapping extra model names to Lingma keys"),
    ("AUTO_LOGIN_ENABLED", "auto_login_enabled", _bool, "log in with a browser when an instance is logged out"),
    ("AUTO_LOGIN_HEADLESS", "auto_login_headless", _bool, "run the login browser headless"),
    ("AUTO_LOGIN_TIMEOUT", "auto_login_timeout", _positive_float, "seconds for one browser login"),
    ("AUTO_LOGIN_MAX_RETRY", "auto_login_max_retry", _positive_int, "browser login attempts"),
    ("DEDICATED_DOMAIN_URL", "dedicated_domain_url", str, "enterprise endpoint set before login"),
    ("AUTO_LOGIN_BROWSER", "auto_login_browser", str, "Chromium executable for the login (empty: chromium on PATH)"),
    ("AUTO_LOGIN_MAX_BROWSERS", "auto_login_max_browsers", _positive_int, "login browsers running at once"),
    ("LINGMA_PROBE_INTERVAL", "lingma_probe_interval", _positive_float, "seconds between auth/status probes"),
    ("LINGMA_PROBE_TIMEOUT", "lingma_probe_timeout", _positive_float, "seconds a probe waits for its answer"),
    ("LINGMA_PROBE_MISSES", "lingma_probe_misses", _positive_int, "missed probes in a row that mark unhealthy"),
    ("GATEWAY_MAX_IN_FLIGHT", "gateway_max_in_flight", _positive_int, "turns served at once across the pool"),
    (
        "GATEWAY_INSTANCE_MAX_IN_FLIGHT",
        "gateway_instance_max_in_flight",
        _positive_int,
        "turns at once per instance (default: GATEWAY_MAX_IN_FLIGHT)",
    ),
    (
        "GATEWAY_KEY_MAX_IN_FLIGHT",
        "gateway_key_max_in_flight",
        _int_at_least_0,
        "turns at once per API key (0: no cap)",
    ),
    (
        "GATEWAY_COOLDOWN_MAX_SEC",
        "gateway_cooldown_max_sec",
        _positive_float,
        "longest cool-down after quota or rate limits",
    ),
    (
        "GATEWAY_QUEUE_TIMEOUT_SEC",
        "gateway_queue_timeout_sec",
        _positive_float,
        "seconds a request waits for a turn slot, global and per-instance together",
    ),
    ("SESSION_REUSE_ENABLED", "session_reuse_enabled", _bool, "continue upstream sessions on follow-up turns"),
    ("SESSION_CACHE_MAX_ENTRIES", "session_cache_max_entries", _positive_int, "session cache size"),
    ("SESSION_CACHE_TTL_SEC", "session_cache_ttl_sec", _positive_float, "session cache entry lifetime"),
    (
        "SESSION_CACHE_LOCK_TIMEOUT",
        "session_cache_lock_timeout",
        _positive_float,
        "seconds to wait at start for a session cache another process holds locked",
    ),
    ("TOOL_FORWARD_ENABLED", "tool_forward_enabled", _bool, "emulate caller-defined tools"),
    ("TOOL_ALLOWLIST", "tool_allowlist", _csv, "comma-separated tool names offered to Lingma (empty: all)"),
    ("LOG_LEVEL", "log_level", _log_level, "DEBUG, INFO, WARNING or ERROR"),
    ("LOG_JSON", "log_json", _bool, "log JSON lines"),
    ("GATEWAY_DATA_DIR", "gateway_data_dir", str, "data directory"),
    ("GATEWAY_SOCKET", "gateway_socket", _socket_path, "sidecar Unix socket path (at most 100 bytes)"),
    ("GATEWAY_SOCKET_MODE", "gateway_socket_mode", _octal_mode, "socket mode: 600, or 660 for split containers"),
    ("GATEWAY_HEARTBEAT_SEC", "gateway_heartbeat_sec", _positive_float, "heartbeat interval while waiting"),
    ("GATEWAY_MAX_BODY_BYTES", "gateway_max_body_bytes", _positive_int, "request body limit after decompression"),
    ("LINGMA_SIM_SCENARIO", "lingma_sim_scenario", str, "simulator scenario file"),
    ("GATEWAY_HOST", "gateway_host", str, "HTTP bind address (--host)"),
    ("GATEWAY_PORT", "gateway_port", _port, "HTTP port (--port)"),
    ("GATEWAY_ALLOW_OPEN", "gateway_allow_open", _bool, "allow a non-loopback bind without API keys (--allow-open)"),
    ("GATEWAY_MAX_CONNECTIONS", "gateway_max_connections", _positive_int, "open HTTP connections before 503"),
    (
        "GATEWAY_KEEPALIVE_TIMEOUT_SEC",
        "gateway_keepalive_timeout_sec",
        _positive_float,
        "idle seconds before a kept-alive HTTP connection is closed",
    ),
    (
        "GATEWAY_HEADER_TIMEOUT_SEC",
        "gateway_header_timeout_sec",
        _positive_float,
        "seconds for a request line and headers to arrive (408)",
    ),
    (
        "GATEWAY_BODY_TIMEOUT_SEC",
        "gateway_body_timeout_sec",
        _positive_float,
        "seconds for a request body to arrive (408)",
    ),
    ("GATEWAY_MAX_REQUEST_LINE", "gateway_max_request_line", _positive_int, "request line limit in bytes (414)"),
    ("GATEWAY_MAX_HEADER_BYTES", "gateway_max_header_bytes", _positive_int, "request head limit in bytes (431)"),
    ("GATEWAY_MAX_HEADERS", "gateway_max_headers", _positive_int, "header fields per request (431)"),
    (
        "GATEWAY_CELL",
        "gateway_cell",
        _cell,
        "this cell's name: serve only the accounts whose cell it is; instance ids start with it",
    ),
)

SETTINGS_HELP: tuple[tuple[str, str], ...] = tuple((env, text) for env, _f, _p, text in _SPEC)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The settings of this process: ``env``, or else its environment, with no overrides."""
    return Settings.from_mapping(os.environ if env is None else env)


def _build(source: Mapping[str, str]) -> Settings:
    values: dict[str, object] = {}
    problems: list[str] = []
    for name, field, parse, _help in _SPEC:
        raw = source.get(name)
        if raw is None or (raw == "" and parse is not str):
            continue
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    entries = values.pop("api_keys", None)
    if isinstance(entries, tuple):
        values["api_keys"] = tuple(key for _name, key in entries)
        values["api_key_names"] = tuple((name, key) for name, key in entries if name)
    if not values.get("gateway_data_dir"):
        values["gateway_data_dir"] = str(default_data_dir(source))
    settings = msgspec.structs.replace(Settings(), **values)
    if not settings.gateway_socket:
        settings = msgspec.structs.replace(settings, gateway_socket=str(default_socket_path(source, settings.data_dir)))
    cell_problems = _cell_problems(settings)
    if cell_problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(cell_problems))
    path = settings.socket_path
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        raise SettingsError(
            f"invalid settings:\n  GATEWAY_SOCKET: the socket path is longer than {MAX_SOCKET_PATH} bytes; "
            "set GATEWAY_SOCKET to a shorter path"
        )
    return settings
