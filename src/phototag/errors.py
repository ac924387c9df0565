"""phototag's exceptions. Each message says what failed, for which file, and what to do.

    PhototagError
    ├── ConfigError            bad config.yaml / override: names the key, the file and line, what is allowed
    ├── PluginError            a plugin failed to load or register
    ├── ModelUnavailableError  a model is not available (offline, missing folder): where we looked, how to fix
    ├── ImageError             a file cannot be decoded safely (corrupt, truncated, bomb, unsupported)
    ├── MetadataError          exiftool refused or failed a write/read
    │   ├── ExiftoolTimeout    an exiftool command passed its deadline (the process is restarted)
    │   └── ExiftoolDied       the exiftool process died mid-command (it is restarted; the write is retried)
    └── StateError             the state database cannot be opened or written

Typed errors become exit codes only at the CLI boundary.
"""

from __future__ import annotations

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


class FileError(PhototagError):
    """An error about one file; ``path`` is that file."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {message}")


class ImageError(FileError):
    """The file is not an image we can decode safely."""


class MetadataError(FileError):
    """Reading or writing metadata failed."""


class ExiftoolTimeout(MetadataError):
    """exiftool did not answer within its deadline."""


class ExiftoolDied(MetadataError):
    """exiftool exited (crashed, was killed) while working on this file; worth retrying."""


class StateError(PhototagError):
    """The state database is unusable."""
