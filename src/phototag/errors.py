"""phototag's exceptions. Each message says what failed, for which file, and what to do.

    PhototagError
    ├── ConfigError            bad config.yaml / override: names the key, the file and line, what is allowed
    ├── PluginError            a plugin failed to load or register
    ├── ModelUnavailableError  a model is not available (offline, missing folder): where we looked, how to fix
    ├── ImageError             a file cannot be decoded safely (corrupt, truncated, bomb, unsupported)
    ├── MetadataError          exiftool refused or failed a write/read
    │   ├── ExiftoolTimeout    an exiftool command passed its deadline (the process is restarted)
    │   ├── ExiftoolDied       the exiftool process died mid-command (it is restarted; the write is retried)
    │   └── TempBusy           a live writer still owns a temp file the write needs (tempfiles.py)
    ├── FolderBusy             another process held the folder's write lock too long (folderlock.py)
    └── StateError             the state database cannot be opened or written

Typed errors become exit codes only at the CLI boundary. A :class:`FileError` is ``transient`` when trying
again later may work (disk full, a busy file, a share that came back): the daemon retries those with backoff.
"""

from __future__ import annotations

import errno as _errno
from pathlib import Path


class PhototagError(Exception):
    """Base of every error phototag raises on purpose."""


class ConfigError(PhototagError):
    """The configuration is invalid. ``key`` is the dotted key path, ``source`` the file and line."""

    def __init__(self, message: str, key: str = "", source: str = "") -> None:
        self.key = key
        self.source = source
        where = f"{source}: " if source else ""
        what = f"{key}: " if key else ""
        super().__init__(f"{where}{what}{message}")


class PluginError(PhototagError):
    """A plugin could not be loaded or registered."""


class ModelUnavailableError(PhototagError):
    """A configured model cannot be loaded here."""


TRANSIENT_ERRNOS = frozenset(
    {
        _errno.EAGAIN,
        _errno.EBUSY,
        _errno.ENOSPC,
        _errno.EDQUOT,
        _errno.EIO,
        _errno.ETIMEDOUT,
        _errno.EROFS,
        _errno.ESTALE,
        _errno.EINTR,
        _errno.ENOLCK,
    }
)
"""errnos that say "try again later" (busy, full, read-only for now, a flaky disk or share), not "this file is
bad"."""


class FileError(PhototagError):
    """An error about one file; ``path`` is that file. ``errno``: the OS error behind it, if any."""

    transient_class = False

    def __init__(self, path: Path | str, message: str, errno: int | None = None) -> None:
        self.path = Path(path)
        self.errno = errno
        super().__init__(f"{display(path)}: {message}")

    @property
    def transient(self) -> bool:
        """True when trying again later may succeed."""
        return self.transient_class or self.errno in TRANSIENT_ERRNOS


class ImageError(FileError):
    """The file is not an image we can decode safely."""


class MetadataError(FileError):
    """Reading or writing metadata failed."""


class ExiftoolTimeout(MetadataError):
    """exiftool did not answer within its deadline."""

    transient_class = True


class ExiftoolDied(MetadataError):
    """exiftool exited (crashed, was killed) while working on this file; worth retrying."""

    transient_class = True


class StateError(PhototagError):
    """The state database is unusable."""


def display(path: Path | str) -> str:
    """``path`` as text that can always be printed and stored as UTF-8: bytes of a file name that are not
    UTF-8 (Python keeps them as lone surrogates) are shown as ``\\xNN``."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text
