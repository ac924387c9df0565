"""One daemon per state DB: an exclusive ``flock`` on ``STATE_DB.watch.lock``.

The kernel releases the lock when the process dies, so a ``kill -9`` never leaves a stale lock behind. The file
holds the owner's pid, for the message a second daemon gets.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import StateError

SUFFIX = ".watch.lock"


class DaemonLock:
    """The lock file beside ``state_db``; :meth:`acquire` raises :class:`~phototag.errors.StateError` (naming
    the other daemon's pid) when another process holds it."""

    def __init__(self, state_db: Path) -> None:
        self.path = state_db.with_name(state_db.name + SUFFIX)
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateError(
                f"{self.path.with_name(self.path.name.removesuffix(SUFFIX))}: another `phototag watch` "
                f"(pid {other}) uses this state database; stop it first, or give this one another state_db"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
