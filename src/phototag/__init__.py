"""phototag: look at photos and write what is in them into their metadata.

The public API for plugin authors: the ``hookimpl`` marker, the data types and the two interfaces.
"""

import pluggy

from .types import (
    Analysis,
    Analyzer,
    AnalyzerRun,
    DecodedImage,
    Device,
    ModelInfo,
    Needs,
    Photo,
    PhotoResult,
    Region,
    Tag,
    Writer,
    fingerprint_of,
)

hookimpl = pluggy.HookimplMarker("phototag")

__version__ = "0.2.0"
__all__ = [
    "Analysis",
    "Analyzer",
    "AnalyzerRun",
    "DecodedImage",
    "Device",
    "ModelInfo",
    "Needs",
    "Photo",
    "PhotoResult",
    "Region",
    "Tag",
    "Writer",
    "__version__",
    "fingerprint_of",
    "hookimpl",
]
