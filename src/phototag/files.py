"""Which files are photos to process, and what they are on disk (stat, content hash)."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .config import Config
from .errors import FileError, display
from .types import Photo

# Our own outputs and other programs' temporary files are never photos.
OWN_SUFFIXES = (".xmp", ".phototag.json")
TEMP_MARKERS = ("_exiftool_tmp", ".phototag-tmp", ".phototag-")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".swp")


def is_candidate(path: Path, config: Config) -> bool:
    """True when ``path`` (a file name; not stat'ed) is a photo phototag should look at."""
    name = path.name
    if name.startswith((".", "~")) or any(m in name for m in TEMP_MARKERS):
        return False
    lower = name.lower()
    if lower.endswith(OWN_SUFFIXES) or lower.endswith(TEMP_SUFFIXES):
        return False
    if path.suffix.lower() not in config.image.extensions:
        return False
    full = str(path)
    return not any(fnmatch.fnmatch(full, pattern) for pattern in config.exclude)


WalkError = Callable[[Path, str], None]
"""Called with a path that could not be looked at and why (a folder that cannot be listed, a special file)."""


def iter_photos(paths: Iterable[Path], config: Config, on_error: WalkError | None = None) -> Iterator[Path]:
    """Absolute paths of the files among ``paths`` and below the folders among them that are candidates, in
    sorted order per folder, each once (``scan tree tree/sub`` visits ``tree/sub`` once).

    Symlinked folders are not followed (loops); symlinked files are followed when they lead to a regular
    file. Explicitly named files are yielded if they exist, even with an extension outside the allow-list, so
    that ``phototag scan odd.file`` reports a clear error instead of silently doing nothing. Nothing is
    skipped silently: a folder that cannot be listed, and a candidate that is not a regular file (a FIFO, a
    device, a socket, a dangling link), go to ``on_error`` with the reason (default: raise FileError).
    """

    def fail(path: Path, why: str) -> None:
        if on_error is None:
            raise FileError(path, why)
        on_error(path, why)

    seen: set[str] = set()
    for given in paths:
        root = Path(os.path.abspath(given))
        if root.is_dir():
            found: Iterator[Path] = _walk(root, config, fail)
        elif root.exists() or root.is_symlink():
            found = iter((root,))
        else:
            raise FileNotFoundError(f"{display(given)}: no such file or folder")
        for path in found:
            key = str(path)
            if key not in seen:
                seen.add(key)
                yield path


def _walk(root: Path, config: Config, fail: Callable[[Path, str], None]) -> Iterator[Path]:
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        fail(root, f"cannot list this folder: {e.strerror or e}{_permission_hint(e)}")
        return
    folders = []
    for entry in entries:
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                if not entry.name.startswith(".") and not _excluded(path, config):
                    folders.append(path)
                continue
            if not is_candidate(path, config):
                continue
            if entry.is_file(follow_symlinks=False):
                yield path
                continue
            kind = (
                "a symlink that leads nowhere"
                if entry.is_symlink()
                else _kind(entry.stat(follow_symlinks=False))
            )
            if entry.is_symlink() and os.path.exists(path):
                target_kind = _kind(os.stat(path))
                if target_kind == "":
                    yield path
                    continue
                kind = f"a symlink to {target_kind}"
            fail(path, f"not a regular file ({kind}): phototag opens only regular files")
        except OSError as e:
            fail(path, f"cannot look at it: {e.strerror or e}")
    for folder in folders:
        yield from _walk(folder, config, fail)


def _kind(st: os.stat_result) -> str:
    """What a non-regular file is, for messages; "" for a regular file."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return ""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "a special file"


def _permission_hint(e: OSError) -> str:
    if e.errno in (errno.EACCES, errno.EPERM):
        return " (give the user phototag runs as read and execute permission on it)"
    return ""


def open_regular(path: Path, error: type[FileError] = FileError) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (after symlinks). A FIFO would block the
    reader forever and a device never ends (``/dev/zero``): both are refused with ``error`` (a FileError),
    without blocking (``O_NONBLOCK`` for the open, then ``fstat``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        kind = _kind(os.fstat(fd))
        if kind:
            raise error(path, f"not a regular file ({kind}): phototag opens only regular files")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _excluded(folder: Path, config: Config) -> bool:
    # A folder is excluded when a file directly inside it would be: "*/@eaDir/*" prunes the whole @eaDir walk.
    probe = str(folder / "x")
    return any(fnmatch.fnmatch(probe, pattern) for pattern in config.exclude)


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes (hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open_regular(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def make_photo(path: Path) -> Photo:
    """Stat and hash ``path``. Raises OSError for unreadable files, FileError for special files."""
    with open_regular(path) as f:
        st = os.fstat(f.fileno())
        h = hashlib.blake2b(digest_size=16)
        while block := f.read(1 << 20):
            h.update(block)
    return Photo(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, content_hash=h.hexdigest())
