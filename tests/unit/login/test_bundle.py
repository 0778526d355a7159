"""Session bundles: the allowlist on export, and every kind of malicious bundle refused with the work dir untouched."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.login.bundle import MAX_FILE_BYTES, MAX_TOTAL_BYTES, BundleError, export_bundle, import_bundle


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its kind, mode and content hash: "byte for byte" made checkable."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            kind = "link:" + os.readlink(path)
        elif path.is_dir():
            kind = "dir"
        else:
            kind = hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(root))] = f"{kind}:{oct(st.st_mode)}:{st.st_size}"
    return out


def _logged_in_dir(root: Path) -> Path:
    (root / "cache" / "db").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "index").mkdir()
    (root / "cache" / "id").write_text("machine-1")
    (root / "cache" / "user").write_text("encrypted-user")
    (root / "cache" / "quota").write_text("q")
    (root / "cache" / "db" / "local.db").write_text("history")
    (root / "logs" / "lingma.log").write_text("log")
    (root / "index" / "x").write_text("idx")
    (root / "sim-journal.jsonl").write_text("{}")
    return root


def _tar_b64(add: Callable[[tarfile.TarFile], None], *, compress: bool = True) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        add(tar)
    raw = buf.getvalue()
    return base64.b64encode(gzip.compress(raw) if compress else raw).decode()


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _with_login(extra: Callable[[tarfile.TarFile], None]) -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        _file(tar, "cache/id", b"machine-2")
        _file(tar, "cache/user", b"user-2")
        extra(tar)

    return add


def _special(name: str, kind: bytes, linkname: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = 1, 3
        tar.addfile(info)

    return add


def test_export_carries_only_the_allowlist_and_round_trips(tmp_path: Path) -> None:
    source = _logged_in_dir(tmp_path / "a")
    exported = export_bundle(source)
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(exported.bundle_b64))) as tar:
        names = sorted(tar.getnames())
    assert names == ["cache/id", "cache/quota", "cache/user"]
    assert exported.raw_bytes == len(base64.b64decode(exported.bundle_b64))
    target = tmp_path / "b"
    (target / "cache").mkdir(parents=True)
    (target / "cache" / "id").write_text("fresh-machine")  # logged out: an id but no user
    assert import_bundle(exported.bundle_b64, target, account="acct-1")
    assert (target / "cache" / "id").read_text() == "machine-1"
    assert (target / "cache" / "user").read_text() == "encrypted-user"
    assert oct((target / "cache" / "user").stat().st_mode & 0o777) == "0o600"
    assert not [p for p in target.iterdir() if p.name.startswith(".bundle-")], "the staging dir is gone"


def test_export_of_a_logged_out_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "id").write_text("m")
    with pytest.raises(BundleError):
        export_bundle(tmp_path)


def test_a_bundle_never_overwrites_a_live_login(tmp_path: Path) -> None:
    live = _logged_in_dir(tmp_path / "live")
    before = _tree(live)
    other = export_bundle(_logged_in_dir(tmp_path / "other"))
    assert import_bundle(other.bundle_b64, live, account="acct-1") is False
    assert _tree(live) == before


BOMB = base64.b64encode(gzip.compress(b"\0" * (MAX_TOTAL_BYTES * 4))).decode()

MALICIOUS: dict[str, tuple[str, str]] = {
    "symlink": (_tar_b64(_with_login(_special("cache/quota", tarfile.SYMTYPE, "/etc/passwd"))), "is a link"),
    "hard link": (_tar_b64(_with_login(_special("cache/quota", tarfile.LNKTYPE, "cache/id"))), "is a link"),
    "device": (_tar_b64(_with_login(_special("cache/quota", tarfile.CHRTYPE))), "device"),
    "fifo": (_tar_b64(_with_login(_special("cache/quota", tarfile.FIFOTYPE))), "device or a pipe"),
    "dotdot": (_tar_b64(_with_login(lambda t: _file(t, "cache/../../evil"))), "'..'"),
    "absolute": (_tar_b64(_with_login(lambda t: _file(t, "/tmp/evil"))), "absolute path"),
    "outside allowlist": (_tar_b64(_with_login(lambda t: _file(t, "cache/db/local.db"))), "not a file a bundle may"),
    "logs": (_tar_b64(_with_login(lambda t: _file(t, "logs/lingma.log"))), "not a file a bundle may"),
    "oversize member": (
        _tar_b64(_with_login(lambda t: _file(t, "cache/quota", b"q" * (MAX_FILE_BYTES + 1)))),
        "larger than",
    ),
    "gzip bomb": (BOMB, "inflates past"),
    "not gzip": (_tar_b64(_with_login(lambda t: None), compress=False), "not gzip"),
    "not base64": ("this is *not* base64!", "not base64"),
    "empty": ("", "empty"),
    "gzip of garbage": (base64.b64encode(gzip.compress(b"garbage" * 100)).decode(), "tar"),
    "id without user": (_tar_b64(lambda t: _file(t, "cache/id")), "lacks cache/user"),
    "duplicate": (_tar_b64(_with_login(lambda t: _file(t, "cache/id", b"again"))), "twice"),
}


@pytest.mark.parametrize("kind", sorted(MALICIOUS))
def test_malicious_bundles_are_refused_and_change_nothing(tmp_path: Path, kind: str) -> None:
    bundle, why = MALICIOUS[kind]
    work = tmp_path / "w"
    (work / "cache").mkdir(parents=True)
    (work / "cache" / "id").write_text("existing-machine")
    (work / "logs").mkdir()
    (work / "logs" / "lingma.log").write_text("log line")
    before = _tree(work)
    outside = _tree(tmp_path)
    with pytest.raises(BundleError) as caught:
        import_bundle(bundle, work, account="acct-7")
    message = str(caught.value)
    assert "acct-7" in message and why in message, message
    assert "machine-2" not in message and "user-2" not in message, "the message never quotes the content"
    assert _tree(work) == before
    assert _tree(tmp_path) == outside, "nothing was written anywhere else either"
