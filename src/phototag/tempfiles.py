"""Temp files in photo folders: how phototag names its own, and when one left behind is stale.

Two kinds appear next to photos:

* exiftool's ``FILE_exiftool_tmp``, written while exiftool rewrites ``FILE`` and renamed over it at the end;
* phototag's own: ``.phototag-<16 hex>.tmp`` (the JSON sidecar before its rename) and ``.phototag-<16
  hex>.xmp`` (a new XMP sidecar before it is published). The names are short and fixed-length on purpose: a
  photo whose name is near the file system's 255-byte limit must not make the temp name too long, and an
  error must never name a temp file instead of the photo.

A temp file is **stale** when its writer is gone. Removing a live one is what destroyed photos when two
phototag processes met (exiftool, failing to rename its temp file, unlinks the original while retrying), so
the test is strict: the caller holds the folder's lock (:mod:`phototag.folderlock`: no phototag writer of this
folder is running), no process on this host has the file open (``/proc/*/fd``), and it has not been modified
for :data:`GRACE` seconds (a writer between its last write and its rename, or a process this host cannot
see). Anything else is left alone, and the write that needs the name waits or is retried later.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
import time
from pathlib import Path

from .errors import MetadataError
from .folderlock import try_folder_lock

log = logging.getLogger(__name__)

EXIFTOOL_SUFFIX = "_exiftool_tmp"
GRACE = 2.0
"""Seconds without modification before an unopened temp file counts as abandoned."""
_OWN = re.compile(r"^\.phototag-[0-9a-f]{16}\.(?:tmp|xmp)(?:_exiftool_tmp)?$")
# names used by phototag 0.1 (``.NAME.XXXX.phototag-tmp``, ``.NAME.xmp.phototag-XXXXXXXX.xmp``)
_LEGACY = re.compile(r"^\..*(?:\.phototag-tmp|\.phototag-[0-9a-f]{8}\.xmp)(?:_exiftool_tmp)?$")


class TempBusy(MetadataError):
    """A temp file that blocks a write belongs to a writer that is still running (transient)."""

    transient_class = True


def own_temp_name(suffix: str) -> str:
    """A fresh name for one of phototag's temp files (``suffix``: ``.tmp`` or ``.xmp``)."""
    return f".phototag-{secrets.token_hex(8)}{suffix}"


def is_temp_name(name: str) -> bool:
    """exiftool's or phototag's temp file name (never a photo, never processed)."""
    return name.endswith(EXIFTOOL_SUFFIX) or bool(_OWN.match(name) or _LEGACY.match(name))


def holder(path: Path) -> int | None:
    """The pid of a process on this host that has ``path`` open, or None (processes this user cannot inspect
    are not seen)."""
    try:
        target = os.path.realpath(path)
    except OSError:
        return None
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        if pid == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def _is_stale(path: Path, now: float) -> tuple[bool, str]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False, "gone"
    if not stat.S_ISREG(st.st_mode):
        return False, "not a regular file"
    age = now - st.st_mtime
    if age < GRACE:
        return False, f"modified {max(age, 0):.1f} s ago"
    pid = holder(path)
    if pid is not None:
        return False, f"open in process {pid}"
    return True, ""


def remove_stale(tmp: Path, *, photo: Path, wait: float = 10.0) -> bool:
    """Remove ``tmp`` if it is stale, waiting up to ``wait`` seconds for a live writer to finish; True when
    something was removed. The caller holds the folder's lock. Raises :class:`TempBusy` (naming ``photo``)
    when a live writer still has it after the wait."""
    deadline = time.monotonic() + wait
    while True:
        stale, why = _is_stale(tmp, time.time())
        if why == "gone":
            return False
        if stale:
            try:
                tmp.unlink()
            except FileNotFoundError:
                return False
            except OSError as e:
                raise MetadataError(
                    photo, f"a stale temp file {tmp.name} blocks writing and cannot be removed: {e.strerror}"
                ) from e
            log.warning("removed stale temp file %s (its writer is gone)", tmp)
            return True
        if time.monotonic() >= deadline:
            raise TempBusy(
                photo,
                f"another program is writing its metadata right now ({tmp.name} {why}); it will be tried "
                "again",
            )
        time.sleep(0.1)


def clean_folder(folder: Path) -> list[Path]:
    """Remove the stale temp files directly in ``folder`` if its lock is free now (never waits); returns
    what was removed."""
    with try_folder_lock(folder) as held:
        return remove_stale_in(folder) if held else []


def remove_stale_in(folder: Path) -> list[Path]:
    """Remove the stale temp files directly in ``folder`` (only exiftool's and phototag's names); the caller
    holds the folder's lock. Returns what was removed."""
    removed: list[Path] = []
    try:
        names = [e.name for e in os.scandir(folder) if is_temp_name(e.name)]
    except OSError:
        return removed
    now = time.time()
    for name in names:
        path = folder / name
        stale, _ = _is_stale(path, now)
        if not stale:
            continue
        try:
            path.unlink()
        except OSError as e:
            log.warning("cannot remove stale temp file %s: %s", path, e.strerror or e)
            continue
        log.warning("removed stale temp file %s (its writer is gone)", path)
        removed.append(path)
    return removed
