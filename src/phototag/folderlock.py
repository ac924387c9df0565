"""One advisory lock per folder, so that any number of phototag processes can write the same photos safely.

Every write of a photo's metadata (read what is there, plan, write through exiftool's temp file, publish a new
sidecar, record in the state DB) happens while the writer holds the lock of the photo's folder: the photo, its
XMP sidecar and its JSON sidecar all live there. Two scans, a scan and the daemon, or phototag on two hosts of a
network share then take turns per folder instead of removing each other's temp files or creating the same
sidecar twice. A temp file found while holding the lock belongs to a writer that is gone (see
:mod:`phototag.tempfiles`).

How the lock is taken:

* ``flock(LOCK_EX)`` on the folder itself (``open(folder, O_RDONLY)``): no file is created, nothing is left
  behind, and a killed process releases it (the kernel closes its descriptors).
* Network file systems map ``flock`` to byte-range locks that need a file opened for writing (NFS) or do not
  lock directories (some SMB servers). There the lock falls back to a hidden, empty ``.phototag.lock`` file in
  the folder (created once, never removed, so there is no unlink race); it coordinates hosts as long as the
  share supports locks (NFS without ``nolock``, SMB without ``nobrl``).
* A file system without any lock support gets one warning per folder; phototag then coordinates only the
  threads of one process and says so.

Waiting is bounded: a folder held longer than ``timeout`` seconds gives :class:`FolderBusy` (a transient
failure: the daemon retries, scan reports it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import FileError

log = logging.getLogger(__name__)

LOCK_FILE = ".phototag.lock"
DEFAULT_TIMEOUT = 120.0
# flock errors that mean "this file system cannot lock this way", not "someone holds it"
_UNSUPPORTED = frozenset({errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})

_local = threading.Lock()
_no_lock_warned: set[str] = set()
_process_locks: dict[str, threading.Lock] = {}


class FolderBusy(FileError):
    """Another phototag process held the folder's lock for longer than the wait allows (transient)."""

    transient_class = True


@contextlib.contextmanager
def folder_lock(folder: Path | str, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold the write lock of ``folder`` for the ``with`` block (see the module docstring)."""
    folder = Path(folder)
    fd = _lock_fd(folder, timeout)
    if fd is None:  # no lock support on this file system: at least serialise this process's threads
        with _process_lock(folder):
            yield
        return
    try:
        yield
    finally:
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def try_folder_lock(folder: Path | str) -> Iterator[bool]:
    """Take the folder's lock only if it is free now; yields whether it was taken."""
    held = folder_lock(folder, timeout=0)
    try:
        held.__enter__()
    except FolderBusy:
        yield False
        return
    try:
        yield True
    finally:
        held.__exit__(None, None, None)


def _lock_fd(folder: Path, timeout: float) -> int | None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise FileError(folder, f"cannot open the folder to lock it: {e.strerror or e}") from e
    return _locked(fd, folder, timeout) or _lock_file_fd(folder, timeout)


def _lock_file_fd(folder: Path, timeout: float) -> int | None:
    """The fallback: a hidden lock file in the folder, opened for writing (what NFS byte-range locks need)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        _warn_unlocked(folder, f"cannot create {LOCK_FILE}: {e.strerror or e}")
        return None
    locked = _locked(fd, folder, timeout)
    if locked is None:
        _warn_unlocked(folder, "the file system does not support locks")
    return locked


def _locked(fd: int, folder: Path, timeout: float) -> int | None:
    """``fd`` once it holds the lock; None (``fd`` closed) when the file system cannot lock it this way."""
    try:
        if _flock(fd, folder, timeout):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def _flock(fd: int, folder: Path, timeout: float) -> bool:
    """Lock ``fd`` exclusively, waiting up to ``timeout``; False when the file system cannot lock it."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno in _UNSUPPORTED:
                return False
            raise FileError(folder, f"cannot lock the folder: {e.strerror or e}") from e
        left = deadline - time.monotonic()
        if left <= 0:
            raise FolderBusy(
                folder,
                f"another phototag process has been writing in this folder for more than {timeout:g} s; "
                "it will be tried again",
            )
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.2)


def _warn_unlocked(folder: Path, why: str) -> None:
    key = str(folder)
    with _local:
        if key in _no_lock_warned:
            return
        _no_lock_warned.add(key)
    log.warning(
        "%s: cannot lock this folder (%s): phototag processes on other hosts writing the same photos are not "
        "coordinated. Mount the share with lock support, or run one phototag per share.",
        folder,
        why,
    )


def _process_lock(folder: Path) -> threading.Lock:
    with _local:
        return _process_locks.setdefault(str(folder), threading.Lock())
