"""The analyzer runtime: the one place that loads and runs models, for every front end.

``scan`` and ``watch`` (through :class:`phototag.pipeline.Pipeline`), ``doctor``, ``search``/``similar``, the
benchmarks and, later, the HTTP service and the cluster runner all hold an :class:`AnalyzerRuntime`:

* **resolve**: the analyzers the plugins registered, by name; ``fingerprint()`` and ``model_info()`` are called
  inside an error boundary (an analyzer whose identity cannot be computed is *broken* and fails alone);
* **load** on first use, on the device that the ``select_device`` hook or the hardware probe chooses
  (:func:`pick_device`); a load failure is remembered for the runtime's life and reported once;
* **analyze** ``(name, images)`` -> :class:`Ran`: the analyses, or the error that stopped the batch; the torch
  thread count is set for each call to that analyzer's device (torch's setting is process-wide, so a CPU
  analyzer configured for 7 threads gets 7 even after a GPU analyzer ran with 2);
* **one lock per analyzer**: concurrent callers (HTTP requests, a daemon and a search in one process) take
  turns per model, and different models run side by side;
* **unload** idle models, never one that a caller is using (:meth:`AnalyzerRuntime.using`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .errors import ConfigError, ModelUnavailableError, PhototagError
from .hardware import Hardware, apply_threads, choose_device, probe
from .models import shared_pool
from .types import Analysis, Analyzer, DecodedImage, Device, ModelInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ran:
    """One :meth:`AnalyzerRuntime.analyze` call: an analysis per image, or the error that stopped the batch."""

    analyses: list[Analysis] | None
    error: str | None = None
    seconds_each: float = 0.0


@dataclass
class _Slot:
    analyzer: Analyzer
    lock: threading.RLock = field(default_factory=threading.RLock)
    device: Device | None = None
    loaded: bool = False
    error: str | None = None  # why it cannot run (identity, device or load failure); remembered
    users: int = 0
    last_used: float = 0.0


class AnalyzerRuntime:
    """Loads and runs ``analyzers`` (names must be unique). ``hook`` is the plugin manager's hook relay (for
    ``select_device``); ``hardware`` the probe result (default: probed now); ``clock`` for idle times."""

    def __init__(
        self,
        config: Config,
        analyzers: Sequence[Analyzer],
        *,
        hardware: Hardware | None = None,
        hook: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [a.name for a in analyzers]
        if len(set(names)) != len(names):
            raise PhototagError(f"two analyzers share a name: {names}; rename one in its plugin")
        self.config = config
        # probed on first use: the probe imports torch (seconds), which a re-scan with nothing to do never needs
        self._hardware = hardware
        self.hook = hook
        self._clock = clock
        self._slots = {a.name: _Slot(a) for a in analyzers}
        self._guard = threading.Lock()

    @property
    def hardware(self) -> Hardware:
        """The hardware the analyzers are placed on (:func:`~phototag.hardware.probe`, when first asked)."""
        if self._hardware is None:
            self._hardware = probe()
        return self._hardware

    # -- what there is --------------------------------------------------------------------------------------

    @property
    def analyzers(self) -> list[Analyzer]:
        return [s.analyzer for s in self._slots.values()]

    def get(self, name: str) -> Analyzer:
        return self._slot(name).analyzer

    def devices(self) -> dict[str, Device]:
        """The device of every analyzer that was placed."""
        return {n: s.device for n, s in self._slots.items() if s.device is not None}

    def error(self, name: str) -> str | None:
        """Why ``name`` cannot run (remembered from a failed identity, device choice or load), or None."""
        return self._slot(name).error

    def fingerprints(self) -> dict[str, str]:
        """The fingerprint of every analyzer whose identity can be computed; one that raises is marked
        broken (see :meth:`error`) and left out, so that it fails alone."""
        out = {}
        for name, slot in self._slots.items():
            try:
                out[name] = slot.analyzer.fingerprint()
            except Exception as e:
                self._break(slot, f"analyzer {name} is broken: fingerprint() failed: {type(e).__name__}: {e}")
        return out

    def model_info(self, name: str) -> ModelInfo:
        """``model_info()`` of ``name``, or a placeholder naming the analyzer when it raises."""
        slot = self._slot(name)
        try:
            return slot.analyzer.model_info()
        except Exception as e:
            self._break(slot, f"analyzer {name} is broken: model_info() failed: {type(e).__name__}: {e}")
            return ModelInfo(name)

    # -- loading ------------------------------------------------------------------------------------------

    def place(self, name: str) -> Device:
        """The device ``name`` runs on (chosen once); raises ConfigError when ``device_fallback`` is off and
        the configured device cannot be used."""
        slot = self._slot(name)
        with slot.lock:
            if slot.device is None:
                slot.device = pick_device(slot.analyzer, self.config, self.hardware, self.hook)
            return slot.device

    def load(self, name: str) -> str | None:
        """Load ``name`` if it is not loaded; returns why it cannot run (remembered), or None."""
        slot = self._slot(name)
        with slot.lock:
            return self._load(slot)

    def _load(self, slot: _Slot) -> str | None:
        if slot.error is not None or slot.loaded:
            return slot.error
        name = slot.analyzer.name
        try:
            device = self.place(name)
            apply_threads(device)
            slot.analyzer.load(device)
        except ModelUnavailableError as e:
            return self._break(slot, f"analyzer {name}: {e}")
        except ConfigError as e:
            return self._break(slot, f"analyzer {name}: {e}")
        except Exception as e:
            return self._break(slot, f"analyzer {name} could not load: {type(e).__name__}: {e}")
        slot.loaded = True
        slot.last_used = self._clock()
        log.info(
            "%s on %s (%s, %d threads): %s",
            name,
            device.torch_device,
            device.dtype,
            device.threads,
            device.reason,
        )
        return None

    # -- running ------------------------------------------------------------------------------------------

    def analyze(self, name: str, images: Sequence[DecodedImage]) -> Ran:
        """Run ``name`` on ``images`` (loading it first): one analysis per image, or the error."""
        slot = self._slot(name)
        with self.using(name), slot.lock:
            error = self._load(slot)
            if error is not None:
                return Ran(None, error)
            assert slot.device is not None
            apply_threads(slot.device)  # per call: the process-wide setting may be another analyzer's
            start = time.perf_counter()
            try:
                analyses = list(slot.analyzer.analyze(images))
                if len(analyses) != len(images):
                    raise PhototagError(f"returned {len(analyses)} results for {len(images)} photos")
            except Exception as e:
                log.error("analyzer %s failed on a batch of %d: %s", name, len(images), e)
                return Ran(None, f"analyzer {name} failed: {type(e).__name__}: {e}")
            each = (time.perf_counter() - start) / max(len(images), 1)
            return Ran(analyses, None, each)

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[Analyzer]:
        """Hold ``name`` in use for a block (it is not unloaded meanwhile); yields the analyzer, which the
        block may call directly for capabilities beyond ``analyze`` (``embed_text``): load it first."""
        slot = self._slot(name)
        with self._guard:
            slot.users += 1
        try:
            yield slot.analyzer
        finally:
            with self._guard:
                slot.users -= 1
                slot.last_used = self._clock()

    @contextlib.contextmanager
    def held(self, name: str) -> Iterator[Analyzer]:
        """``name`` loaded, in use and locked for a block, with torch's threads set for its device: for callers
        that use a capability beyond ``analyze`` (``embed_text``, zero-shot scores, questions) and must take
        turns with the batches like :meth:`analyze` does. Raises :class:`ModelUnavailableError` when it cannot
        load."""
        slot = self._slot(name)
        with self.using(name) as analyzer, slot.lock:
            error = self._load(slot)
            if error is not None:
                raise ModelUnavailableError(error)
            assert slot.device is not None
            apply_threads(slot.device)
            yield analyzer

    # -- unloading ----------------------------------------------------------------------------------------

    def unload_idle(self, idle_seconds: float = 0.0) -> list[str]:
        """Unload the loaded analyzers that nobody uses and that were idle for ``idle_seconds``; returns
        their names. Shared weights go when their last user is gone."""
        now = self._clock()
        gone = []
        for name, slot in self._slots.items():
            with self._guard:
                busy = slot.users > 0 or now - slot.last_used < idle_seconds
            if busy or not slot.loaded or not slot.lock.acquire(blocking=False):
                continue
            try:
                try:
                    slot.analyzer.unload()
                except Exception as e:
                    log.warning("analyzer %s did not unload cleanly: %s", name, e)
                slot.loaded = False
                gone.append(name)
            finally:
                slot.lock.release()
        if gone:
            shared_pool().unload_idle(idle_seconds)
        return gone

    def close(self) -> None:
        """Unload everything that is not in use."""
        self.unload_idle(0.0)

    # -- internals ----------------------------------------------------------------------------------------

    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise PhototagError(f"no analyzer named {name!r} is enabled ({', '.join(self._slots)})") from None

    def _break(self, slot: _Slot, message: str) -> str:
        if slot.error is None:
            slot.error = message
            log.error("%s", message)
        return slot.error


def pick_device(analyzer: Analyzer, config: Config, hardware: Hardware, hook: Any = None) -> Device:
    """Where ``analyzer`` runs: a plugin's ``select_device`` answer, else the hardware probe's choice for the
    analyzer's own ``device`` setting or the global one. Raises ConfigError when ``device_fallback`` is off and
    the configured device cannot be used."""
    settings = getattr(analyzer, "settings", None)
    preference = getattr(settings, "device", None) or config.device
    device = None
    if hook is not None:
        device = hook.select_device(analyzer=analyzer, hardware=hardware, preference=preference)
    if device is None:
        device = choose_device(
            analyzer.needs,
            preference,
            hardware,
            dtype=config.dtype,
            threads=config.threads,
            strict=not config.device_fallback,
        )
    return device
