"""Session bundles: the login files of a work dir as a base64 tar.gz, and a safe way back in.

A bundle carries only allowlisted regular files: ``cache/id`` and ``cache/user`` (together, since the
second is encrypted with the first) and a few small settings files. Never ``cache/db/``, logs, the
index, binaries or anything else. Import checks the whole archive before touching the work dir, unpacks
into a temporary directory beside it and then renames the files into place, so a refused bundle leaves
the work dir exactly as it was. No message ever quotes the bundle's content.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = (
    "ALLOWED_FILES",
    "BundleError",
    "ExportedBundle",
    "export_bundle",
    "import_bundle",
    "is_logged_in_dir",
)

REQUIRED = ("cache/id", "cache/user")
ALLOWED_FILES = frozenset(
    {
        *REQUIRED,
        "cache/quota",
        "cache/app-config.json",
        "cache/machine_token.json",
        "lingma_mcp.json",
        "extension/local/config.json",
        "extension/local/mcp.json",
        "extension/server/config.json",
    }
)
MAX_FILE_BYTES = 1 << 20
MAX_TOTAL_BYTES = 4 << 20
MAX_ENCODED_CHARS = 8 << 20

_Refuse = Callable[[str], "BundleError"]


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the account and why, never the content."""


@dataclass(frozen=True, slots=True)
class ExportedBundle:
    bundle_b64: str
    raw_bytes: int


def is_logged_in_dir(work_dir: Path) -> bool:
    """A work dir holds a login when it has ``cache/user`` (with its ``cache/id``)."""
    return (work_dir / "cache" / "user").is_file() and (work_dir / "cache" / "id").is_file()


def export_bundle(work_dir: Path) -> ExportedBundle:
    """The allowlisted files of a logged-in work dir; ``BundleError`` when it holds no login."""
    if not is_logged_in_dir(work_dir):
        raise BundleError("the work dir holds no login (cache/id and cache/user)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in sorted(ALLOWED_FILES):
            path = work_dir / name
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(path.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    return ExportedBundle(base64.b64encode(raw).decode("ascii"), len(raw))


def import_bundle(bundle_b64: str, work_dir: Path, *, account: str) -> bool:
    """Fill a logged-out work dir from a bundle; False (and nothing changed) when it already holds a login.

    Raises ``BundleError`` naming ``account`` for any bundle that is not exactly what it should be.
    """
    files = _read_bundle(bundle_b64, account)
    if is_logged_in_dir(work_dir):
        return False
    work_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=work_dir))
    try:
        for name, data in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        # cache/user last: a work dir only counts as logged in once its cache/id is in place.
        for name in sorted(files, key=lambda n: n == "cache/user"):
            dest = work_dir / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or dest.is_dir():
                raise BundleError(f"session bundle for {account}: {name} in the work dir is not a plain file")
            os.replace(staging / name, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _read_bundle(bundle_b64: str, account: str) -> dict[str, bytes]:
    def refuse(why: str) -> BundleError:
        return BundleError(f"session bundle for {account} refused: {why}")

    text = "".join(bundle_b64.split())
    if not text:
        raise refuse("it is empty")
    if len(text) > MAX_ENCODED_CHARS:
        raise refuse("it is too large")
    try:
        compressed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise refuse("it is not base64") from None
    files = _untar(_gunzip(compressed, refuse), refuse)
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise refuse(f"it lacks {' and '.join(missing)} (cache/id and cache/user travel together)")
    return files


def _untar(raw: bytes, refuse: _Refuse) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar.getmembers():
                name = _check_member(member, refuse)
                if name in files:
                    raise refuse(f"{name} appears twice")
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise refuse(f"{name} cannot be read")
                files[name] = extracted.read()
    except tarfile.TarError:
        raise refuse("it is not a readable tar archive") from None
    return files


def _gunzip(compressed: bytes, refuse: _Refuse) -> bytes:
    """Inflate with a hard cap on the output, so a gzip bomb costs at most the cap."""
    if compressed[:2] != b"\x1f\x8b":
        raise refuse("it is not gzip data")
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(compressed, MAX_TOTAL_BYTES + 1)
    except zlib.error:
        raise refuse("its gzip data is damaged") from None
    if len(raw) > MAX_TOTAL_BYTES or inflater.unconsumed_tail:
        raise refuse(f"it inflates past {MAX_TOTAL_BYTES} bytes")
    if not inflater.eof:
        raise refuse("its gzip data is truncated")
    return raw


def _check_member(member: tarfile.TarInfo, refuse: _Refuse) -> str:
    raw_name = member.name
    path = PurePosixPath(raw_name)
    if path.is_absolute() or raw_name.startswith("/"):
        raise refuse("it holds an absolute path")
    if ".." in path.parts:
        raise refuse("it holds a path with '..'")
    name = str(path)
    if member.issym() or member.islnk():
        raise refuse(f"{_shown(name)} is a link")
    if member.isdev() or member.isfifo():
        raise refuse(f"{_shown(name)} is a device or a pipe")
    if member.isdir():
        raise refuse(f"{_shown(name)} is a directory")
    if not member.isreg():
        raise refuse(f"{_shown(name)} is not a regular file")
    if name not in ALLOWED_FILES:
        raise refuse(f"{_shown(name)} is not a file a bundle may carry")
    if member.size > MAX_FILE_BYTES:
        raise refuse(f"{name} is larger than {MAX_FILE_BYTES} bytes")
    return name


def _shown(name: str) -> str:
    """A member name fit for a message: short and printable."""
    clean = "".join(c if c.isprintable() else "?" for c in name)
    return clean if len(clean) <= 60 else clean[:57] + "..."
