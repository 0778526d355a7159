from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.helpers import need_proc
from tests.support.gateway import Gateway


@pytest.fixture
def gateways(short_dir: Path) -> Iterator[Any]:
    """Start gateways (bundled by default) under one short dir; all are stopped at the end."""
    need_proc()
    made: list[Gateway] = []

    def make(**kwargs: Any) -> Gateway:
        # Lingma ports away from the default 37010, which other test runs on the machine start from.
        env = {"LINGMA_SOCKET_PORT": str(random.SystemRandom().randrange(21000, 29000)), **kwargs.pop("env", {})}
        gw = Gateway(short_dir / f"g{len(made)}", env=env, **kwargs)
        made.append(gw)
        return gw.start()

    yield make
    for gw in made:
        gw.stop()
