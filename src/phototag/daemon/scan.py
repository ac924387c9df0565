"""Which paths under a watched root the daemon cares about, and the walk its rescans make.

The same rules as ``phototag scan`` (:func:`phototag.files.is_candidate`: extension allow-list, exclude globs,
temp files, our own outputs), plus: nothing inside a hidden folder below the root.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..config import Config
from ..exiftool import STALE_SUFFIX
from ..files import is_candidate
from .stability import FileStat

log = logging.getLogger(__name__)

STALE_AGE = 10.0  # seconds: younger temp files may belong to a writer that is still running
# the JSON sidecar writer's ".NAME.XXXX.phototag-tmp" and the XMP writer's ".NAME.xmp.phototag-XXXXXXXX.xmp"
_OWN_TEMP = re.compile(r"\.phototag-tmp$|\.phototag-[0-9a-f]{8}\.xmp$")


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
) -> Iterator[tuple[Path, FileStat]]:
    """Every relevant file below ``root`` with its stat (symlinks not followed, hidden and excluded folders
    pruned). ``remove_stale_tmp``: delete ``*_exiftool_tmp`` files and phototag's own temp files met on the way
    when older than ``STALE_AGE`` (only safe while no writer of ours runs: at daemon start; exiftool refuses
    to write a photo whose ``_exiftool_tmp`` exists). ``progress(n)`` is called every 5,000 files."""
    stack = [root]
    seen = 0
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            log.warning("cannot list %s: %s", folder, e.strerror or e)
            continue
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
                if not entry.is_file(follow_symlinks=False):
                    continue
                path = Path(entry.path)
                if is_stale_temp(name):
                    if remove_stale_tmp:
                        _remove_stale(path, entry.stat(follow_symlinks=False))
                    continue
                if not relevant(path, root, config):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            yield path, FileStat.of(st)


def is_stale_temp(name: str) -> bool:
    """A temp file that exiftool or phototag's own writers leave behind only when killed mid-write."""
    return name.endswith(STALE_SUFFIX) or (name.startswith(".") and bool(_OWN_TEMP.search(name)))


def _remove_stale(path: Path, st: os.stat_result) -> None:
    if time.time() - st.st_mtime < STALE_AGE:
        return  # someone (a `phototag scan` next to us) may be writing it right now
    try:
        path.unlink()
        log.warning("removed stale temp file %s (left by a killed exiftool or phototag)", path)
    except OSError as e:
        log.warning("cannot remove stale temp file %s: %s", path, e.strerror or e)
