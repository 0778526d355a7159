"""A bundle written to a file is owner-only from its creation, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from common.private_file import write_private


def test_the_file_is_created_owner_only_under_an_open_umask(tmp_path: Path) -> None:
    out = tmp_path / "bundle.b64"
    old = os.umask(0)
    try:
        write_private("c2VjcmV0", str(out))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text() == "c2VjcmV0\n"


def test_without_a_path_it_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    write_private("c2VjcmV0", None)
    assert capsys.readouterr().out == "c2VjcmV0\n"
