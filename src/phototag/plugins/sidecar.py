"""The JSON sidecar writer: ``photo.jpg.phototag.json`` with every score, box, model id and timing.

Written atomically: a temp file in the same folder (``.phototag-<hex>.tmp``), fsync, ``os.replace``, fsync of
the folder. A crash leaves the old sidecar or the new one, never half of one. The caller holds the folder's
lock (:mod:`phototag.folderlock`).
"""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable
from pathlib import Path

from .. import __version__, hookimpl
from ..config import Config
from ..errors import MetadataError, display
from ..fileattrs import check_rewritable, replace_file, write_target
from ..serialize import result_to_dict
from ..types import PhotoResult, Writer, fingerprint_of

SUFFIX = ".phototag.json"
WRITER_VERSION = 1
"""Bump when the document changes shape: every photo's JSON sidecar is then written again from cache."""


def sidecar_path(photo: Path) -> Path:
    return photo.with_name(photo.name + SUFFIX)


def write_json_atomic(
    path: Path, doc: object, *, photo: Path | None = None, allow_read_only: bool = True
) -> None:
    """Write ``doc`` as JSON to ``path`` so that readers see the old file or the complete new one.

    The user's protections hold (:mod:`phototag.fileattrs`): a symlink is written through to its target, an
    existing file keeps its mode (and, as root, its owner), a new one gets the umask's mode, and with
    ``allow_read_only`` off a read-only file is refused. Errors name ``photo`` (default: ``path``)."""
    photo = photo or path
    target = write_target(path, photo)
    before = check_rewritable(target, photo, allow_read_only=allow_read_only, what="its JSON sidecar")
    data = (json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
    replace_file(target, data, before, ".tmp")


class JsonSidecarWriter:
    name = "sidecar"

    def __init__(self, config: Config) -> None:
        self.config = config

    def write(self, result: PhotoResult) -> None:
        path = sidecar_path(result.photo.path)
        doc = result_to_dict(
            result,
            extra={
                "phototag_version": __version__,
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "metadata_mode": self.config.metadata.mode if self.config.metadata.xmp else "none",
            },
        )
        photo = result.photo.path
        try:
            write_json_atomic(path, doc, photo=photo, allow_read_only=self.config.metadata.write_read_only)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                what = "the disk is full" if e.errno == errno.ENOSPC else "the disk quota is used up"
                fix = "free some space; phototag tries again"
            else:
                what, fix = (
                    (e.strerror or str(e)),
                    "make the folder writable or set metadata.json_sidecar: false",
                )
            raise MetadataError(
                photo, f"{what} while writing its JSON sidecar {display(path.name)}: {fix}", e.errno
            ) from e

    def fingerprint(self) -> str:
        """What changes this writer's output besides the results: whether (and how) XMP is written, which the
        document records."""
        mode = self.config.metadata.mode if self.config.metadata.xmp else "none"
        return fingerprint_of("sidecar", mode, WRITER_VERSION)

    def owned_files(self, photo: Path) -> list[Path]:
        """The files this writer makes for ``photo`` (the JSON sidecar)."""
        return [sidecar_path(photo)]

    def remove(self, photo: Path) -> bool:
        """Delete the JSON sidecar of ``photo``; True when there was one."""
        path = sidecar_path(photo)
        if path.exists():
            path.unlink()
            return True
        return False

    def close(self) -> None:
        pass


@hookimpl
def register_writers(register: Callable[[Writer], None], config: Config) -> None:
    if config.metadata.json_sidecar:
        register(JsonSidecarWriter(config))
