"""Which folders the daemon watches, which paths below them it cares about, and the walk its rescans make.

Both are :mod:`phototag.files`' rules, the ones ``phototag scan`` applies (:func:`~phototag.files.discover`,
:func:`~phototag.files.in_scope`): extension allow-list, exclude globs matched against absolute paths, hidden
files and folders, temp files, phototag's own outputs, only regular files. One difference, on purpose:
symlinked files are skipped (README "Known limits": the watcher cannot see changes to a link's target, and a
photo written through a link changes a file elsewhere).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ..config import Config
from ..errors import PhototagError, display
from ..files import discover, enters, in_scope
from ..tempfiles import clean_folder, is_temp_name
from .stability import FileStat

log = logging.getLogger(__name__)


def absolute(path: Path | str) -> Path:
    """``path`` made absolute the way the walk does (``..`` resolved, symlinks kept), so that events, walks and
    records name a photo the same way."""
    return Path(os.path.abspath(path))


def resolve_roots(folders: Iterable[Path | str], config: Config) -> list[Path]:
    """The folders to watch, absolute; a folder inside another is dropped (it would report every event twice).
    Raises PhototagError when there is none, or one is not a folder."""
    roots = [absolute(f) for f in folders]
    if not roots:
        raise PhototagError(
            "nothing to watch: pass folders to `phototag watch` or set folders: in the config"
        )
    for root in roots:
        if not root.is_dir():
            raise PhototagError(f"{root}: not a folder; create it or fix folders: in {config.source}")
    return [r for r in roots if not any(r != o and r.is_relative_to(o) for o in roots)]


def relevant(path: Path, root: Path, config: Config) -> bool:
    """True when ``path`` (below ``root``) is a photo the daemon should process, were it a regular file.
    No I/O: the same rules as :func:`walk`, for watcher events."""
    return in_scope(path, root, config)


def entered(folder: Path, root: Path, config: Config) -> bool:
    """True when :func:`walk` from ``root`` goes into ``folder`` (no hidden or excluded folder on the way)."""
    return enters(root, folder, config)


def walk(
    root: Path,
    config: Config,
    *,
    remove_stale_tmp: bool = False,
    progress: Callable[[int], None] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
) -> Iterator[tuple[Path, FileStat]]:
    """Every relevant file below ``root`` with its stat (:func:`phototag.files.discover`, symlinked files
    skipped). ``remove_stale_tmp``: remove the stale ``*_exiftool_tmp`` and phototag temp files met on the way
    (:func:`phototag.tempfiles.clean_folder`: only under the folder's lock, only when no process has them
    open; exiftool refuses to write a photo whose ``_exiftool_tmp`` exists). ``progress(n)`` is called every
    5,000 entries. ``on_error(path, why)`` hears of folders that cannot be listed and of candidates that are
    not regular files (default: a logged warning)."""
    for path, st in discover(
        root,
        config,
        on_error or _warn,
        follow_file_links=False,
        on_folder=_clean if remove_stale_tmp else None,
        progress=progress,
    ):
        yield path, FileStat.of(st)


def _clean(folder: Path, names: Sequence[str]) -> None:
    if any(is_temp_name(name) for name in names):
        clean_folder(folder)


def _warn(path: Path, why: str) -> None:
    log.warning("%s: %s", display(path), why)
