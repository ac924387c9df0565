"""The user's protections on files phototag rewrites: read-only modes, owners, symlinks and the umask.

Every rewrite replaces the file (exiftool's temp file + rename, the JSON sidecar's temp file + ``os.replace``),
which by itself would ignore a read-only mode, give the file to the user phototag runs as, and replace a
symlink with a regular file. So, before a file is rewritten:

* a file with no write permission bit at all (``chmod a-w``) is the user saying "leave it": it is not written
  (a clear error naming the photo), unless ``metadata.write_read_only`` is on; this holds for root too;
* a file owned by another user is not replaced by a non-root phototag (the replacement would change its owner);
  root keeps the owner and group (exiftool does it itself; the JSON writer with ``chown``);
* a symlink is written through: the link's target is rewritten, the link stays;
* the mode of an existing file is kept; a new file gets ``0666`` less the umask, like any program's.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import MetadataError, display
from .tempfiles import own_temp_name


def process_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``; else set-and-restore once)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode a newly created file gets: ``0666`` less the umask."""
    return 0o666 & ~process_umask()


def write_target(path: Path, photo: Path) -> Path:
    """The file to rewrite for ``path``: the path itself, or the end of its symlink chain. Raises
    MetadataError (naming ``photo``) for a symlink that points nowhere or at something that is not a regular
    file."""
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    try:
        st = real.stat()
    except OSError as e:
        raise MetadataError(
            photo, f"{path.name} is a symlink to {display(real)}, which cannot be reached ({e.strerror})"
        ) from e
    if not stat.S_ISREG(st.st_mode):
        raise MetadataError(
            photo, f"{path.name} is a symlink to {display(real)}, which is not a regular file"
        )
    return real


def check_rewritable(path: Path, photo: Path, *, allow_read_only: bool, what: str) -> os.stat_result | None:
    """Raise MetadataError (naming ``photo`` and ``what``, e.g. "its XMP sidecar") when phototag must not
    rewrite ``path``; returns its stat, or None when it does not exist yet."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise MetadataError(photo, f"cannot look at {what} {path.name}: {e.strerror}", e.errno) from e
    if not allow_read_only and not st.st_mode & 0o222:
        raise MetadataError(
            photo,
            f"{what} {display(path.name)} is read-only (mode {stat.S_IMODE(st.st_mode):04o}), so phototag leaves "
            f"it alone. Make it writable (chmod u+w) or set metadata.write_read_only: true",
        )
    euid = os.geteuid()
    if euid != 0 and st.st_uid != euid:
        raise MetadataError(
            photo,
            f"{what} {display(path.name)} belongs to another user (uid {st.st_uid}); rewriting it would make it "
            f"phototag's (uid {euid}). Run phototag as its owner, or change the owner",
        )
    return st


def keep_attributes(fd: int, before: os.stat_result | None) -> None:
    """Give a replacement file (open as ``fd``) the mode and, as root, the owner of the file it replaces;
    a new file gets the umask's mode."""
    if before is None:
        os.fchmod(fd, new_file_mode())
        return
    os.fchmod(fd, stat.S_IMODE(before.st_mode))
    if os.geteuid() == 0:
        os.fchown(fd, before.st_uid, before.st_gid)


def replace_file(path: Path, data: bytes, before: os.stat_result | None, suffix: str) -> None:
    """Make ``path`` hold ``data`` so that readers see the old file or the complete new one: a temp file of
    phototag's naming (``suffix``) in the same folder, the attributes of the file it replaces (or the umask's
    mode, :func:`keep_attributes`), fsync, ``os.replace``, fsync of the folder. Raises OSError."""
    tmp = path.parent / own_temp_name(suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            keep_attributes(f.fileno(), before)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
