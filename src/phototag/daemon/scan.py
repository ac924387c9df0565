"""Which paths under a watched root the daemon cares about, and the walk its rescans make.

The same rules as ``phototag scan`` (:func:`phototag.files.is_candidate`: extension allow-list, exclude globs,
temp files, our own outputs), plus: nothing inside a hidden folder below the root.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..config import Config
from ..files import is_candidate
from ..tempfiles import clean_folder, is_temp_name
from .stability import FileStat

log = logging.getLogger(__name__)


def relevant(path: Path, root: Path, config: Config) -> bool:
    """True when ``path`` (below ``root``) is a photo the daemon should process. No I/O."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    if any(part.startswith(".") for part in rel.parts[:-1]):
        return False
    return is_candidate(path, config)


def excluded_folder(folder: Path, config: Config) -> bool:
    """A folder is excluded when a file directly inside it would be (``*/@eaDir/*`` prunes ``@eaDir``)."""
    probe = os.path.join(folder, "x")
    return any(fnmatch.fnmatch(probe, pattern) for pattern in config.exclude)


def walk(
    root: Path,
    config: Config,
    *,
    remove_stale_tmp: bool = False,
    progress: Callable[[int], None] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
) -> Iterator[tuple[Path, FileStat]]:
    """Every relevant file below ``root`` with its stat (symlinks not followed, hidden and excluded folders
    pruned). ``remove_stale_tmp``: remove the stale ``*_exiftool_tmp`` and phototag temp files met on the way
    (:func:`phototag.tempfiles.clean_folder`: only under the folder's lock, only when no process has them
    open; exiftool refuses to write a photo whose ``_exiftool_tmp`` exists). ``progress(n)`` is called every
    5,000 files. ``on_error(path, why)`` hears of folders that cannot be listed and of candidates that are not
    regular files (default: a logged warning)."""
    stack = [root]
    seen = 0

    def fail(path: Path, why: str) -> None:
        if on_error is not None:
            on_error(path, why)
        else:
            log.warning("%s: %s", path, why)

    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            fail(folder, f"cannot list this folder: {e.strerror or e}")
            continue
        if remove_stale_tmp and any(is_temp_name(e.name) for e in entries):
            clean_folder(folder)
        for entry in entries:
            seen += 1
            if progress is not None and seen % 5000 == 0:
                progress(seen)
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not name.startswith(".") and not excluded_folder(Path(entry.path), config):
                        stack.append(Path(entry.path))
                    continue
                path = Path(entry.path)
                if is_temp_name(name) or not relevant(path, root, config):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    if not entry.is_symlink():  # symlinked files are not watched (README); special files:
                        fail(path, "not a regular file (a FIFO, device or socket): phototag opens only "
                             "regular files")  # fmt: skip
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            yield path, FileStat.of(st)
