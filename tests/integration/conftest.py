from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway import Gateway


@pytest.fixture
def gateway_factory(short_dir: Path) -> Iterator[Any]:
    made: list[Gateway] = []

    def make(**kwargs: Any) -> Gateway:
        gw = Gateway(short_dir / f"g{len(made)}", **kwargs)
        made.append(gw)
        return gw.start()

    yield make
    for gw in made:
        gw.stop()
