"""A fast, real analyzer for the daemon tests, loaded as an installed third-party plugin would be.

``tests/test_daemon.py`` puts this module and a ``phototag_daemon_test-0.dist-info`` (entry point
``counting = daemon_plugin`` in group ``phototag``) on the daemon's ``PYTHONPATH``, and selects plugins with
``PHOTOTAG_PLUGINS=daemon,sidecar,counting`` (plus ``xmp`` where exiftool is part of the test).

The analyzer computes real facts from the decoded pixels (mean brightness, dominant channel) so the sidecars
hold real, photo-dependent results, and appends one line per analysed photo to ``plugins.counting.log``:
``analyzed <content hash> <path> <pid>``. Tests count those lines to prove that every photo was analysed
exactly once. ``plugins.counting.delay`` slows each photo down (to kill a daemon mid-batch).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from phototag import Analysis, DecodedImage, Device, ModelInfo, Needs, Tag, hookimpl
from phototag.config import Config, PluginSettings
from phototag.errors import display
from phototag.types import Analyzer, Task, fingerprint_of


class CountingSettings(PluginSettings):
    log: str | None = None
    """File to append one line per analysed photo to."""
    delay: float = 0.0
    """Seconds to spend on each photo."""


class CountingAnalyzer:
    name = "counting"
    task: Task = "classify"
    needs = Needs(devices=("cpu",))
    input_size = 32
    Settings = CountingSettings

    def __init__(self, settings: CountingSettings) -> None:
        self.settings = settings

    def model_info(self) -> ModelInfo:
        return ModelInfo("test/counting", "1")

    def fingerprint(self) -> str:
        return fingerprint_of(self.name, 1)

    def load(self, device: Device) -> None:
        self._note(f"load {os.getpid()}")

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        self._note(f"batch {len(images)} {os.getpid()}")
        out = []
        for d in images:
            if self.settings.delay:
                time.sleep(self.settings.delay)
            rgb = np.asarray(d.image.convert("RGB"), dtype=np.float32) / 255.0
            mean = float(rgb.mean())
            channel = ("Red", "Green", "Blue")[int(rgb.reshape(-1, 3).mean(axis=0).argmax())]
            light = "Bright" if mean >= 0.5 else "Dark"
            out.append(
                Analysis(tags=(Tag(light, 0.9, ("Light", light)), Tag(channel, 0.8, ("Colour", channel))))
            )
            self._note(f"analyzed {d.photo.content_hash} {display(d.photo.path)} {os.getpid()}")
        return out

    def unload(self) -> None:
        self._note(f"unload {os.getpid()}")

    def _note(self, line: str) -> None:
        if self.settings.log:
            # one write() per line with O_APPEND: lines from a killed process are whole or absent
            fd = os.open(self.settings.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


@hookimpl
def register_analyzers(register: Callable[[Analyzer], None], config: Config) -> None:
    settings = config.plugin_settings("counting", CountingSettings)
    if settings.enabled:
        register(CountingAnalyzer(settings))
