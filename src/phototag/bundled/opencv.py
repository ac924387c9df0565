"""An OpenCV model (DNN net, cascade) held in the shared model pool, for the bundled CPU analyzers."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ..models import shared_pool
from ..types import Device


class PooledOpenCVModel:
    """Loaded once per process by ``loader``, under ``key``; OpenCV's CPU backend with the Device's threads."""

    def __init__(self, key: Hashable, loader: Callable[[], Any]) -> None:
        self.key = key
        self._loader = loader
        self._model: Any = None

    def acquire(self, device: Device) -> None:
        if self._model is not None:
            return
        import cv2

        if device.threads > 0:
            cv2.setNumThreads(device.threads)
        self._model = shared_pool().acquire(self.key, self._loader)

    def release(self) -> None:
        if self._model is not None:
            shared_pool().release(self.key)
        self._model = None

    def get(self, analyzer: str) -> Any:
        """The loaded model; a clear error when ``analyze`` runs before ``load``."""
        if self._model is None:
            raise RuntimeError(f"analyzer {analyzer!r}: call load() before analyze()")
        return self._model
