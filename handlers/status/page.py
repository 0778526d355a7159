"""The status page as plain HTML: no script, no external asset, a meta refresh; every value escaped."""

from __future__ import annotations

import time
from html import escape

from common.stats import InstanceState, StatsReport

__all__ = ("REFRESH_S", "login_form", "message_page", "status_page")

REFRESH_S = 5
_LOGIN_STATE = {
    InstanceState.READY: "logged in",
    InstanceState.COOLING_DOWN: "logged in",
    InstanceState.LOGIN_REQUIRED: "logged out",
    InstanceState.LOGGING_IN: "logging in",
}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}
th{background:#f0f0f0}.muted{color:#666}.bad{color:#b00020}.ok{color:#1b7f3b}
form.inline{display:inline;margin:0}button{font:inherit}
"""


def _doc(title: str, body: str, *, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}<title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def login_form(note: str = "") -> str:
    shown = f'<p class="bad">{escape(note)}</p>' if note else ""
    body = (
        "<h1>lingma-gateway status</h1><p>Enter the admin token (<code>ADMIN_TOKEN</code>, else an API key). "
        "It is exchanged for a session cookie and never put in a URL.</p>"
        f'{shown}<form method="post" action="/status/session">'
        '<label>Admin token <input type="password" name="token" autocomplete="current-password" autofocus></label> '
        '<button type="submit">Open</button></form>'
    )
    return _doc("lingma-gateway status: sign in", body)


def message_page(title: str, text: str) -> str:
    return _doc(
        title, f'<h1>{escape(title)}</h1><p>{escape(text)}</p><p><a href="/status">Back to the status page</a></p>'
    )


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return f"<table><tr>{head}</tr>{body}</table>"


def _cooldown(until: float | None, now: float) -> str:
    if until is None or until <= now:
        return "—"
    return f"{until - now:.0f} s left"


def _instances(stats: StatsReport, csrf: str, now: float) -> str:
    rows = []
    for inst in stats.pool.instances:
        ident = escape(inst.id)
        state = escape(inst.state.value)
        button = (
            f'<form class="inline" method="post" action="/status/instances/{ident}/login">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button type="submit">Log in</button></form>'
        )
        rows.append([
            f"<code>{ident}</code>",
            f'<span class="{"ok" if inst.state == InstanceState.READY else "bad"}">{state}</span>',
            escape(_LOGIN_STATE.get(inst.state, "unknown")),
            str(inst.in_flight),
            _cooldown(inst.cooldown_until, now),
            str(inst.restarts_total),
            str(inst.served_total),
            escape(inst.last_error or "—"),
            button,
        ])  # fmt: skip
    headers = ["instance", "state", "login", "turns in flight", "cool-down", "restarts", "served", "last error", ""]
    return "<h2>Instances</h2>" + _table(headers, rows)


def _backpressure(stats: StatsReport) -> str:
    bp = stats.backpressure
    rows = [
        ["turns in flight", f"{bp.in_flight} of {bp.limit}"],
        ["most in flight at once", str(bp.in_flight_max)],
        ["waiting for a slot", str(bp.queued)],
        ["rejected (429)", str(bp.rejected_total)],
    ]
    return "<h2>Backpressure</h2>" + _table(["", ""], rows)


def _session_cache(stats: StatsReport) -> str:
    sc = stats.session_cache
    hits, misses = sc.get("hits", 0), sc.get("misses", 0)
    saved, sent = sc.get("upstream_bytes_saved", 0), sc.get("upstream_bytes_sent", 0)
    rate = (
        f"{100 * hits / (hits + misses):.0f}% ({hits} of {hits + misses})" if hits + misses else "— (no follow-ups yet)"
    )
    rows = [["hit rate", rate], ["bytes saved", f"{saved:,}"], ["bytes sent", f"{sent:,}"]]
    rows += [[escape(k), escape(str(v))] for k, v in sc.items() if k not in ("hits", "misses")]
    return "<h2>Session cache</h2>" + _table(["", ""], rows)


def _counters(title: str, section: dict[str, int]) -> str:
    rows = [[escape(k), str(v)] for k, v in section.items()]
    return f"<h2>{escape(title)}</h2>" + _table(["kind", "count"], rows)


def _failures(stats: StatsReport) -> str:
    recent = stats.recent_failures
    window = int(recent.window_s // 60)
    rows = [[escape(k), str(v)] for k, v in recent.by_kind.items()]
    totals = {k.removeprefix("failed_"): v for k, v in stats.requests.items() if k.startswith("failed_")}
    total_rows = [[escape(k), str(v)] for k, v in sorted(totals.items())]
    return (
        f"<h2>Recent failures (last {window} min)</h2>"
        + _table(["kind", "count"], rows)
        + "<h2>Failures since start</h2>"
        + _table(["kind", "count"], total_rows)
    )


def status_page(stats: StatsReport | None, *, version: str, csrf: str, sidecar_error: str = "") -> str:
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    head = (
        f'<h1>lingma-gateway status</h1><p class="muted">version {escape(version)} · {stamp} · refreshes every '
        f'{REFRESH_S} s · <form class="inline" method="post" action="/status/logout">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button type="submit">Sign out</button></form></p>'
    )
    if stats is None:
        body = head + f'<p class="bad">The sidecar is unavailable ({escape(sidecar_error)}).</p>'
        return _doc("lingma-gateway status", body, refresh=True)
    body = (
        head
        + _instances(stats, csrf, now)
        + _backpressure(stats)
        + _session_cache(stats)
        + _counters("Tool-call recognition", stats.tools)
        + _failures(stats)
        + _counters("Requests", stats.requests)
    )
    return _doc("lingma-gateway status", body, refresh=True)
