"""Usage per API key and per model: turns and the token counts each client was told, since the sidecar started.

The numbers are taken from the turn's own terminal frame (``Finished.usage``), the same one every dialect
turns into its ``usage`` field, so what is recorded for a key is exactly what its clients received. Models
are Lingma's model keys (from ``Started``), never the free-form names callers send, so labels stay few.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator

from common.errors import GatewayError
from common.protocol import Event, Failed, Finished, Started
from common.stats import KeyUsage, UsageReport, UsageRow

__all__ = ("FIELDS", "UsageBook")

FIELDS = ("turns", "failed_turns", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
UNKNOWN_MODEL = "unknown"
"""A turn that failed before a model was chosen (no instance, a bad request)."""


class UsageBook:
    def __init__(self) -> None:
        self.since = time.time()
        self._rows: dict[tuple[str, str], Counter[str]] = {}

    def _row(self, key: str, model: str) -> Counter[str]:
        return self._rows.setdefault((key, model), Counter())

    def record(self, key: str, model: str, terminal: Finished | Failed) -> None:
        row = self._row(key, model or UNKNOWN_MODEL)
        if isinstance(terminal, Failed):
            row["failed_turns"] += 1
            return
        usage = terminal.usage
        row["turns"] += 1
        row["input_tokens"] += usage.input_tokens
        row["cached_input_tokens"] += usage.cached_input_tokens
        row["output_tokens"] += usage.output_tokens
        row["reasoning_tokens"] += usage.reasoning_tokens

    async def metered(self, key: str, events: AsyncIterator[Event]) -> AsyncGenerator[Event, None]:
        """Pass ``events`` through, recording the turn when its terminal frame goes by."""
        model = ""
        try:
            async for event in events:
                if isinstance(event, Started):
                    model = event.model
                elif isinstance(event, (Finished, Failed)):
                    self.record(key, model, event)
                yield event
        except GatewayError as exc:
            self.record(key, model, Failed(code=exc.code, message=""))
            raise
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def snapshot(self) -> UsageReport:
        """The ``/internal/usage`` document: per key (with its models), per model, and in total."""
        keys: dict[str, KeyUsage] = {}
        models: dict[str, Counter[str]] = {}
        total: Counter[str] = Counter()
        for (key, model), row in sorted(self._rows.items()):
            entry = keys.setdefault(key, KeyUsage())
            entry.models[model] = _row(row)
            for f in FIELDS:
                setattr(entry, f, getattr(entry, f) + row[f])
            models.setdefault(model, Counter()).update(row)
            total.update(row)
        return UsageReport(
            since=round(self.since, 3),
            keys=keys,
            models={m: _row(c) for m, c in models.items()},
            total=_row(total),
        )


def _row(counts: Counter[str]) -> UsageRow:
    return UsageRow(**{f: counts[f] for f in FIELDS})
