"""Which files are photos to process, and what they are on disk (stat, content hash).

:func:`discover` is the one walk of a folder tree: ``phototag scan`` (:func:`iter_photos`) and the daemon's
rescans (:func:`phototag.daemon.scan.walk`) both use it, and :func:`in_scope` applies its rules to a single path
(the daemon's watcher events) without touching the disk.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from pathlib import Path
from typing import BinaryIO, cast

from .config import Config
from .errors import FileError, display
from .types import Photo

# Our own outputs and other programs' temporary files are never photos.
OWN_SUFFIXES = (".xmp", ".phototag.json")
TEMP_MARKERS = ("_exiftool_tmp", ".phototag-tmp", ".phototag-")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".swp")
PROGRESS_EVERY = 5000
""":func:`discover` calls ``progress`` after every this many directory entries."""


def is_candidate(path: Path, config: Config) -> bool:
    """True when ``path`` (a file name; not stat'ed) is a photo phototag should look at. Exclude globs are
    matched against the absolute path (a relative ``path`` is made absolute first)."""
    name = path.name
    if is_hidden(name) or name.startswith("~") or any(m in name for m in TEMP_MARKERS):
        return False
    lower = name.lower()
    if lower.endswith(OWN_SUFFIXES) or lower.endswith(TEMP_SUFFIXES):
        return False
    if path.suffix.lower() not in config.image.extensions:
        return False
    full = str(path) if path.is_absolute() else os.path.abspath(path)
    return not any(fnmatch.fnmatch(full, pattern) for pattern in config.exclude)


def is_hidden(name: str) -> bool:
    """A hidden file or folder: never a photo, never entered."""
    return name.startswith(".")


def excluded_folder(folder: Path, config: Config) -> bool:
    """True when the walk does not enter ``folder`` (absolute): when a file directly inside it would be
    excluded, so that ``*/@eaDir/*`` prunes the whole ``@eaDir`` walk."""
    probe = os.path.join(folder, "x")
    return any(fnmatch.fnmatch(probe, pattern) for pattern in config.exclude)


def enters(root: Path, folder: Path, config: Config) -> bool:
    """True when :func:`discover` from ``root`` enters ``folder`` (both absolute; ``root`` itself is always
    entered): no folder on the way below ``root`` is hidden or excluded. No I/O."""
    try:
        rel = folder.relative_to(root)
    except ValueError:
        return False
    current = root
    for part in rel.parts:
        current = current / part
        if is_hidden(part) or excluded_folder(current, config):
            return False
    return True


def in_scope(path: Path, root: Path, config: Config) -> bool:
    """True when :func:`discover` from ``root`` would yield ``path`` if it is a regular file: the walk's rules
    applied by name only (both absolute; no I/O)."""
    return path != root and enters(root, path.parent, config) and is_candidate(path, config)


class _Rules:
    """:func:`is_candidate` for a whole walk, decided on the entry's name string without building a Path: the
    name rules and the extensions as sets, and only the exclude globs that can match a file in a folder the
    walk entered, compiled into one regex.

    Why most globs need no per-file test: a glob ending in ``/*`` (``*/@eaDir/*``) matches ``folder/name``
    exactly when it matches ``folder/x`` (the ``/`` it needs lies in ``folder/``, and ``*`` takes any name),
    which :func:`excluded_folder` already refused for every folder the walk enters.
    """

    def __init__(self, config: Config) -> None:
        self.extensions = frozenset(config.image.extensions)
        self.temp = re.compile("|".join(re.escape(m) for m in TEMP_MARKERS)).search
        self.folder_globs = [p for p in config.exclude if p.endswith("/*")]
        per_file = [p for p in config.exclude if not p.endswith("/*")]
        joined = "|".join(f"(?:{fnmatch.translate(os.path.normcase(p))})" for p in per_file)
        self.exclude = re.compile(joined).match if per_file else None

    def accepts(self, folder: str, name: str) -> bool:
        """``is_candidate(Path(folder, name))`` for ``folder`` absolute, entered by the walk, and not the
        root of the walk when :meth:`excludes_all_in` it."""
        dot = name.rfind(".")  # Path.suffix, tested first: it turns away the sidecars
        if not 0 < dot < len(name) - 1 or name[dot:].lower() not in self.extensions:
            return False
        if name.startswith((".", "~")) or self.temp(name) is not None:
            return False
        lower = name.lower()
        if lower.endswith(OWN_SUFFIXES) or lower.endswith(TEMP_SUFFIXES):
            return False
        return self.exclude is None or self.exclude(os.path.normcase(os.path.join(folder, name))) is None

    def excludes_all_in(self, folder: Path) -> bool:
        """True when a ``/*`` glob excludes every file in ``folder``: only the root of a walk can be such a
        folder (it is entered whatever its name; the walk enters no other)."""
        probe = os.path.join(folder, "x")
        return any(fnmatch.fnmatch(probe, pattern) for pattern in self.folder_globs)


_name = attrgetter("name")
WalkError = Callable[[Path, str], None]
"""Called with a path that could not be looked at and why (a folder that cannot be listed, a special file)."""
FolderHook = Callable[[Path, Sequence[str]], None]
"""Called with each folder the walk enters and the names of its entries, before its files are yielded."""


def discover(
    root: Path | str,
    config: Config,
    on_error: WalkError,
    *,
    follow_file_links: bool = True,
    on_folder: FolderHook | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[Path, os.stat_result]]:
    """Every photo below the folder ``root``, with its stat: the one walk behind ``phototag scan`` and the
    daemon's rescans. The rules:

    - paths are absolute (``root`` is made absolute first), so exclude globs always see absolute paths;
    - hidden folders (``.*``) and excluded ones (:func:`excluded_folder`) are not entered; symlinked folders
      are never followed (loops);
    - a file is yielded when :func:`is_candidate` accepts its name (extension allow-list, exclude globs, hidden
      and temp files, phototag's own outputs) and it is a regular file;
    - a symlinked file is yielded with its target's stat when it leads to a regular file; with
      ``follow_file_links=False`` (the daemon, which cannot watch link targets) symlinked files are skipped;
    - nothing else is skipped silently: a folder that cannot be listed, and a candidate that is not a regular
      file (a FIFO, a device, a socket, a symlink to one or to nothing) or cannot be stat'ed, go to
      ``on_error(path, why)``. A file that vanishes between the listing and its stat is skipped.

    Order: a folder's files sorted by name, then its subfolders in the same way, depth first. ``on_folder``
    (:data:`FolderHook`) hears of each folder entered; ``progress(n)`` is called every
    :data:`PROGRESS_EVERY` entries with the number looked at so far.
    """
    found = _walk(root, config, on_error, follow_file_links, on_folder, progress, stat=True)
    return cast(Iterator[tuple[Path, os.stat_result]], found)


def _walk(
    root: Path | str,
    config: Config,
    on_error: WalkError,
    follow_file_links: bool,
    on_folder: FolderHook | None,
    progress: Callable[[int], None] | None,
    stat: bool,
) -> Iterator[tuple[Path, os.stat_result | None]]:
    """:func:`discover`; with ``stat=False`` a plain regular file (known from the folder listing's file type,
    no system call) comes with None instead of its stat."""
    rules = _Rules(config)
    stack = [Path(os.path.abspath(root))]
    top = stack[0]
    looked = 0
    while stack:
        folder = stack.pop()
        here = str(folder)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=_name)
        except OSError as e:
            on_error(folder, f"cannot list this folder: {e.strerror or e}{_permission_hint(e)}")
            continue
        if on_folder is not None:
            on_folder(folder, [e.name for e in entries])
        folders: list[Path] = []
        no_files = folder == top and rules.excludes_all_in(folder)
        for entry in entries:
            looked += 1
            if progress is not None and looked % PROGRESS_EVERY == 0:
                progress(looked)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not is_hidden(entry.name):
                        sub = folder / entry.name
                        if not excluded_folder(sub, config):
                            folders.append(sub)
                    continue
                if no_files or not rules.accepts(here, entry.name):  # sidecars etc.: no Path built
                    continue
                path = folder / entry.name
                if not stat and entry.is_file(follow_symlinks=False):
                    yield path, None
                    continue
                found = _regular(entry, path, follow_file_links, on_error)
            except FileNotFoundError:
                continue  # vanished between the listing and the stat
            except OSError as e:
                on_error(folder / entry.name, f"cannot look at it: {e.strerror or e}")
                continue
            if found is not None:
                yield path, found
        stack.extend(reversed(folders))


def _regular(entry: os.DirEntry[str], path: Path, follow: bool, on_error: WalkError) -> os.stat_result | None:
    """The stat of a candidate when it is (or, with ``follow``, leads to) a regular file; else None, and
    ``on_error`` hears why unless it is a symlink that is not followed."""
    if entry.is_symlink():
        if not follow:
            return None
        try:
            st = os.stat(path)
        except OSError:
            if not os.path.lexists(path):
                raise FileNotFoundError(path) from None
            kind = "a symlink that leads nowhere"
        else:
            target = _kind(st)
            if not target:
                return st
            kind = f"a symlink to {target}"
    else:
        st = entry.stat(follow_symlinks=False)
        kind = _kind(st)
        if not kind:
            return st
    on_error(path, f"not a regular file ({kind}): phototag opens only regular files")
    return None


def iter_photos(paths: Iterable[Path], config: Config, on_error: WalkError | None = None) -> Iterator[Path]:
    """Absolute paths of the files among ``paths`` and below the folders among them that are candidates, in
    sorted order per folder, each once (``scan tree tree/sub`` visits ``tree/sub`` once).

    Folders are walked by :func:`discover` (symlinked folders are not followed; symlinked files are followed
    when they lead to a regular file). Explicitly named files are yielded if they exist, even with an extension
    outside the allow-list, so that ``phototag scan odd.file`` reports a clear error instead of silently doing
    nothing. Nothing is skipped silently: a folder that cannot be listed, and a candidate that is not a regular
    file (a FIFO, a device, a socket, a dangling link), go to ``on_error`` with the reason (default: raise
    FileError). A plain regular file is known from the folder listing's file type, without a ``stat``: the
    pipeline stats each photo itself (a file that vanished meanwhile fails there, with that reason).
    """

    def fail(path: Path, why: str) -> None:
        if on_error is None:
            raise FileError(path, why)
        on_error(path, why)

    given_paths = list(paths)
    seen: set[str] | None = set() if len(given_paths) > 1 else None  # one walk yields each path once
    for given in given_paths:
        root = Path(os.path.abspath(given))
        if root.is_dir():
            found: Iterator[Path] = (path for path, _ in _walk(root, config, fail, True, None, None, False))
        elif root.exists() or root.is_symlink():
            found = iter((root,))
        else:
            raise FileNotFoundError(f"{display(given)}: no such file or folder")
        if seen is None:
            yield from found
            continue
        for path in found:
            key = str(path)
            if key not in seen:
                seen.add(key)
                yield path


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
