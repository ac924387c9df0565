"""Which files are photos to process, and what they are on disk (stat, content hash)."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .config import Config
from .types import Photo

# Our own outputs and other programs' temporary files are never photos.
OWN_SUFFIXES = (".xmp", ".phototag.json")
TEMP_MARKERS = ("_exiftool_tmp", ".phototag-tmp")
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


def iter_photos(paths: Iterable[Path], config: Config) -> Iterator[Path]:
    """Files among ``paths`` and below the folders among them that are candidates, in sorted order per folder.

    Symlinked folders are not followed (loops); explicitly named files are yielded if they exist, even with an
    extension outside the allow-list, so that ``phototag scan odd.file`` reports a clear error instead of
    silently doing nothing.
    """
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(
                    d for d in dirs if not d.startswith(".") and not _excluded(Path(root, d), config)
                )
                for name in sorted(names):
                    candidate = Path(root, name)
                    if is_candidate(candidate, config):
                        yield candidate
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")


def _excluded(folder: Path, config: Config) -> bool:
    # A folder is excluded when a file directly inside it would be: "*/@eaDir/*" prunes the whole @eaDir walk.
    probe = str(folder / "x")
    return any(fnmatch.fnmatch(probe, pattern) for pattern in config.exclude)


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes (hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def make_photo(path: Path) -> Photo:
    """Stat and hash ``path``. Raises OSError for unreadable files."""
    st = path.stat()
    return Photo(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, content_hash=hash_file(path))
