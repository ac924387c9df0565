"""One loaded model per key (model id, device, dtype), shared by every analyzer that uses it.

classify and embed on the same network load it once. Entries are reference-counted by their users and can be
dropped after an idle time (the daemon calls :meth:`ModelPool.unload_idle`). The clock is injected for tests.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class _Entry:
    value: Any
    users: int
    last_used: float


class ModelPool:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self.loads = 0

    def acquire(self, key: Hashable, loader: Callable[[], T]) -> T:
        """The model for ``key``, loading it with ``loader()`` the first time. Pair with :meth:`release`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(loader(), 0, self._clock())
                self._entries[key] = entry
                self.loads += 1
            entry.users += 1
            entry.last_used = self._clock()
            return entry.value

    def touch(self, key: Hashable) -> None:
        with self._lock:
            if key in self._entries:
                self._entries[key].last_used = self._clock()

    def release(self, key: Hashable) -> None:
        """Drop one user; the model stays cached until :meth:`unload_idle` or :meth:`clear`."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.users > 0:
                entry.users -= 1

    def unload_idle(self, idle_seconds: float) -> list[Hashable]:
        """Forget models that no analyzer holds (every :meth:`acquire` was paired with :meth:`release`) and
        nobody used for ``idle_seconds``; returns their keys. A model still held stays: forgetting it would
        only make the next user load a second copy."""
        now = self._clock()
        with self._lock:
            gone = [k for k, e in self._entries.items() if e.users == 0 and now - e.last_used >= idle_seconds]
            for k in gone:
                del self._entries[k]
        if gone:
            gc.collect()
            _empty_device_caches()
        return gone

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        gc.collect()
        _empty_device_caches()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _empty_device_caches() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


_shared = ModelPool()


def shared_pool() -> ModelPool:
    """The process-wide pool that analyzers use."""
    return _shared
