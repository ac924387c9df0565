"""The JSON sidecar writer: ``photo.jpg.phototag.json`` with every score, box, model id and timing.

Written atomically: a temp file in the same folder, fsync, ``os.replace``, fsync of the folder. A crash leaves
the old sidecar or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .. import __version__, hookimpl
from ..config import Config
from ..errors import MetadataError
from ..serialize import result_to_dict
from ..types import PhotoResult, Writer

SUFFIX = ".phototag.json"


def sidecar_path(photo: Path) -> Path:
    return photo.with_name(photo.name + SUFFIX)


def write_json_atomic(path: Path, doc: object) -> None:
    """Write ``doc`` as JSON to ``path`` so that readers see the old file or the complete new one."""
    data = (json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".phototag-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
        try:
            write_json_atomic(path, doc)
        except OSError as e:
            raise MetadataError(
                result.photo.path,
                f"cannot write the JSON sidecar {path.name}: {e.strerror or e}; "
                "make the folder writable or set metadata.json_sidecar: false",
            ) from e

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
