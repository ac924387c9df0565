"""The engine behind every route: one analyzer runtime, a batcher per analyzer, a decode pool.

Every route family (phototag's own API, PhotoPrism, Immich, OpenAI, Ollama, remote analyzers) reaches the
models only through :class:`Engine`:

* :meth:`Engine.decode` decodes an upload in a worker thread (never on the event loop);
* :meth:`Engine.run` runs one analyzer on images through its :class:`~phototag.serve.batching.Batcher`, so
  concurrent requests share model calls; the model work runs in a thread;
* :meth:`Engine.analyze` runs the analyzers of the asked tasks on one image and returns the document the JSON
  sidecar writes for a photo (:func:`phototag.serialize.result_to_dict`).

The runtime is built from the configured plugins exactly as ``scan`` builds it (each registration in its own
error boundary), or handed in: ``phototag watch --serve`` passes the daemon's, so the API and the daemon share
loaded models (the runtime's per-analyzer lock makes them take turns per model).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pluggy
from fastapi import Depends
from starlette.requests import Request

from .. import __version__
from ..config import Config
from ..errors import PhototagError
from ..runtime import AnalyzerRuntime, Ran
from ..serialize import result_to_dict
from ..types import Analysis, AnalyzerRun, DecodedImage, PhotoResult
from .batching import Batcher
from .decode import bytes_from_text, decode_bytes, is_url
from .errors import BadRequest, Busy, Deadline, NotAvailable, ServeError
from .metrics import Metrics
from .security import fetch_image

T = TypeVar("T")

log = logging.getLogger(__name__)


class Engine:
    """What the routes share. ``runtime`` is used, not owned, when handed in (the daemon's): :meth:`close`
    then leaves its models loaded."""

    def __init__(
        self,
        config: Config,
        runtime: AnalyzerRuntime,
        *,
        state_db: Path | None = None,
        metrics: Metrics | None = None,
        owns_runtime: bool = False,
    ) -> None:
        self.config = config
        self.settings = config.serve
        self.runtime = runtime
        self._state_db = state_db
        self.metrics = metrics or Metrics()
        self.started = time.time()
        self._owns_runtime = owns_runtime
        self._batchers: dict[str, Batcher] = {}
        self._model_pool = ThreadPoolExecutor(
            max_workers=max(1, len(runtime.analyzers)), thread_name_prefix="phototag-serve-model"
        )
        self._decode_pool = ThreadPoolExecutor(
            max_workers=config.decode_workers, thread_name_prefix="phototag-serve-decode"
        )
        self._fingerprints: dict[str, str] | None = None
        self._load_timed: set[str] = set()

    @classmethod
    def from_config(cls, config: Config, pm: pluggy.PluginManager | None = None) -> Engine:
        """An engine with its own runtime holding every analyzer the plugins register for ``config``. A plugin
        that fails for its own reasons is logged and left out; a configuration error is raised."""
        from ..manager import collect, get_plugin_manager

        if pm is None:
            pm, _ = get_plugin_manager()

        def on_error(plugin: str, e: Exception) -> None:
            if isinstance(e, PhototagError):
                raise e
            log.error("plugin %s failed to register: %s: %s", plugin, type(e).__name__, e)

        analyzers = [a for _, a in collect(pm, "register_analyzers", on_error, config=config)]
        runtime = AnalyzerRuntime(config, analyzers, hook=pm.hook)
        return cls(config, runtime, owns_runtime=True)

    # -- what there is --------------------------------------------------------------------------------------

    @property
    def state_db(self) -> Path | None:
        """The state DB ``/v1/search`` and ``/v1/similar`` read: the one given, else the config's once a scan
        made it (looked up on each call, so a scan after the start is found)."""
        if self._state_db is not None:
            return self._state_db
        return self.config.state_db if Path(self.config.state_db).is_file() else None

    def analyzer_names(self) -> list[str]:
        """Every configured analyzer, in registration order."""
        return [a.name for a in self.runtime.analyzers]

    def analyzers_for(self, task: str) -> list[str]:
        """The configured analyzers doing ``task`` (``classify``, ``detect``, ``embed``, ...); [] if none."""
        return [a.name for a in self.runtime.analyzers if a.task == task]

    def tasks(self) -> list[str]:
        """The tasks the configured analyzers do."""
        return sorted({a.task for a in self.runtime.analyzers})

    def min_side(self, names: Sequence[str] | None = None) -> int:
        """The shorter side uploads are decoded to: the largest ``input_size`` of ``names`` (default: all)."""
        chosen = [self.runtime.get(n) for n in names] if names is not None else self.runtime.analyzers
        return max((int(getattr(a, "input_size", 0) or 0) for a in chosen), default=0)

    def fingerprints(self) -> dict[str, str]:
        """Every working analyzer's fingerprint (computed once: some cost a package-metadata lookup)."""
        if self._fingerprints is None:
            self._fingerprints = self.runtime.fingerprints()
        return self._fingerprints

    # -- work ---------------------------------------------------------------------------------------------

    async def decode(self, data: bytes, name: str, min_side: int | None = None) -> DecodedImage:
        """Decode an upload in the decode pool; :class:`~phototag.serve.errors.BadImage` when it is not an
        image phototag decodes. ``min_side`` defaults to what every configured analyzer needs."""
        side = self.min_side() if min_side is None else min_side
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._decode_pool, decode_bytes, data, name, side, self.config.image
        )

    async def image_bytes(self, ref: str) -> bytes:
        """The bytes of an image a client gave as text: a data URL, bare base64, or an http(s) URL (fetched
        only when ``serve.fetch_urls`` allows it: :func:`phototag.serve.security.fetch_image`)."""
        if is_url(ref):
            return await self.fetch_image(ref.strip())
        return bytes_from_text(ref)

    async def fetch_image(self, url: str) -> bytes:
        """The bytes at ``url``, under the server's URL rules (:func:`phototag.serve.security.fetch_image`)."""
        return await fetch_image(url, self.settings)

    async def run(
        self, analyzer: str, images: Sequence[DecodedImage], deadline: float | None = None
    ) -> list[Analysis]:
        """The analyses of ``images`` by ``analyzer`` (one per image, in order), batched with concurrent
        requests. ``deadline`` is a ``time.monotonic()`` value (default: now + ``serve.deadline_s``).

        Raises :class:`NotAvailable` (no such analyzer, or its model cannot load), :class:`Busy`,
        :class:`Deadline`, or a :class:`ServeError` when the model fails on the batch."""
        batcher = self._batcher(analyzer)
        if deadline is None:
            deadline = time.monotonic() + self.settings.deadline_s
        return await batcher.submit(images, deadline)

    async def analyze(
        self,
        image: DecodedImage,
        tasks: Sequence[str] | None = None,
        *,
        analyzers: Sequence[str] | None = None,
        include_embeddings: bool = False,
    ) -> dict[str, Any]:
        """The JSON sidecar document for one uploaded image, from the analyzers doing ``tasks`` (default:
        every configured analyzer) or the ones named in ``analyzers``. An analyzer that fails is in the
        document with its ``error``, as in a sidecar; a full queue or a passed deadline fails the request."""
        names = self.choose(tasks, analyzers)
        deadline = time.monotonic() + self.settings.deadline_s
        runs: dict[str, AnalyzerRun] = {}

        async def one(name: str) -> None:
            start = time.perf_counter()
            analysis: Analysis | None = None
            error: str | None = None
            try:
                [analysis] = await self.run(name, [image], deadline)
            except (Busy, Deadline):
                raise
            except ServeError as e:
                error = e.message
            runs[name] = AnalyzerRun(
                analyzer=name,
                task=self.runtime.get(name).task,
                model=self.runtime.model_info(name),
                fingerprint=self.fingerprints().get(name, ""),
                analysis=analysis,
                error=error,
                seconds=time.perf_counter() - start,
            )

        try:
            async with asyncio.TaskGroup() as group:
                for name in names:
                    group.create_task(one(name))
        except ExceptionGroup as group_error:  # Busy or Deadline of one analyzer: the request's answer
            raise group_error.exceptions[0] from None
        result = PhotoResult(image.photo, image.width, image.height, tuple(runs[n] for n in names))
        doc = result_to_dict(result, extra={"phototag_version": __version__})
        if include_embeddings:
            for run in result.runs:
                if run.analysis is not None and run.analysis.embedding is not None:
                    doc["analyzers"][run.analyzer]["embedding"]["vector"] = list(run.analysis.embedding)
        return doc

    def choose(self, tasks: Sequence[str] | None, analyzers: Sequence[str] | None = None) -> list[str]:
        """The analyzers a request asked for: by name, by task, or all. Raises :class:`BadRequest` for an
        unknown name and :class:`NotAvailable` for a task no analyzer does (naming the plugin to enable)."""
        all_names = self.analyzer_names()
        if analyzers:
            unknown = [n for n in analyzers if n not in all_names]
            if unknown:
                raise BadRequest(
                    f"no analyzer named {', '.join(map(repr, unknown))} is configured "
                    f"(configured: {', '.join(all_names) or 'none'})"
                )
            return list(dict.fromkeys(analyzers))
        if not tasks:
            if not all_names:
                raise NotAvailable("no analyzers are enabled: enable plugins in the server's config")
            return all_names
        chosen: list[str] = []
        for task in dict.fromkeys(tasks):
            found = self.analyzers_for(task)
            if not found:
                raise NotAvailable(
                    f"no analyzer does the task {task!r} on this server (available: "
                    f"{', '.join(self.tasks()) or 'none'}): enable plugins.{task} in the server's config"
                )
            chosen += found
        return chosen

    # -- readiness ----------------------------------------------------------------------------------------

    async def ready(self) -> dict[str, str | None]:
        """Load every analyzer (in the model pool); analyzer -> why it cannot run, or None."""
        loop = asyncio.get_running_loop()
        out: dict[str, str | None] = {}
        for name in self.analyzer_names():
            out[name] = await loop.run_in_executor(self._model_pool, self._load, name)
        return out

    def _load(self, name: str) -> str | None:
        """``runtime.load`` (blocking); the first load's time goes to the metrics."""
        start = time.perf_counter()
        error = self.runtime.load(name)
        if error is None and name not in self._load_timed:
            self._load_timed.add(name)
            self.metrics.load_seconds.labels(name).set(time.perf_counter() - start)
        return error

    def use_runtime(self, runtime: AnalyzerRuntime, config: Config | None = None) -> None:
        """Serve ``runtime`` from now on (``watch --serve`` after the daemon reloaded its configuration). A
        batch already running finishes on the old one; batchers pick the new one for their next batch."""
        if config is not None:
            self.config = config  # batch and queue sizes stay as they started; decoding follows the config
        self.runtime = runtime
        self._fingerprints = None
        self._load_timed = set()

    # -- internals ----------------------------------------------------------------------------------------

    def _batcher(self, name: str) -> Batcher:
        batcher = self._batchers.get(name)
        if batcher is not None:
            return batcher
        if name not in self.analyzer_names():
            raise NotAvailable(
                f"no analyzer named {name!r} is configured (configured: {', '.join(self.analyzer_names())})"
            )

        def work(images: Sequence[DecodedImage]) -> Ran:
            if name not in self.analyzer_names():  # the daemon reloaded a config without it
                return Ran(None, f"analyzer {name} is no longer configured on the server")
            error = self._load(name)
            if error is not None:
                return Ran(None, error)
            return self.runtime.analyze(name, images)

        def error(message: str) -> ServeError:
            gone = name not in self.analyzer_names()
            if gone or self.runtime.error(name) is not None:  # cannot load: the same for every request
                return NotAvailable(f"{message}; fix the server's config (plugins) and restart it")
            return ServeError(message, code="analysis_failed")

        batcher = self.new_batcher(name, work, self._model_pool, error)
        self._batchers[name] = batcher
        return batcher

    def new_batcher(
        self,
        label: str,
        work: Callable[[Sequence[T]], Ran],
        executor: Executor,
        error: Callable[[str], ServeError],
    ) -> Batcher[T]:
        """A batcher named ``label`` (in the metrics) with the ``serve`` settings: batch size, wait, queue limit."""
        settings = self.settings
        metrics = self.metrics
        return Batcher(
            label,
            work,
            executor,
            batch_size=settings.batch_size,
            wait_s=settings.batch_wait_ms / 1000,
            queue_limit=settings.queue_limit,
            error=error,
            on_batch=lambda n: metrics.batch_size.labels(label).observe(n),
            on_depth=lambda n: metrics.queue_depth.labels(label).set(n),
            on_reject=lambda: metrics.rejected.labels(label).inc(),
        )

    async def aclose(self) -> None:
        """Stop the batchers and the pools; unload the models if the runtime is the engine's own."""
        for batcher in self._batchers.values():
            await batcher.close()
        self._batchers.clear()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)
        self._model_pool.shutdown(wait=True, cancel_futures=True)
        if self._owns_runtime:
            self.runtime.close()


def get_engine(request: Request) -> Engine:
    """FastAPI dependency: ``engine: EngineDep`` (or ``engine: Engine = Depends(get_engine)``)."""
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]
"""A route parameter that receives the engine: ``async def route(engine: EngineDep)``."""
