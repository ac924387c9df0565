"""Process photos: stat + hash -> decode -> each analyzer (isolated) -> each writer (isolated) -> record.

The one code path behind ``phototag scan`` and ``phototag watch``. Stages, in order, for one batch:

1. **prepare** (thread pool): stat and hash each file; skip what is done (same stat, same analyzer and writer
   fingerprints, its sidecars still there); look up cached results by content hash (else in the photo's JSON
   sidecar, :mod:`phototag.recover`); claim the photos that still need a model (:mod:`phototag.claims`: two
   processes never analyse one photo) and decode them (JPEG draft mode, to the largest ``input_size``).
2. **analyze**: each analyzer that has work gets the whole batch at once, through the analyzer runtime
   (:mod:`phototag.runtime`), inside its own error boundary; ``analyze_workers`` analyzers at a time, the
   slowest (as last measured) first, so that a model using one core overlaps with the others.
3. **write**: under the folder's lock (:mod:`phototag.folderlock`), each writer in its own error boundary, with
   what library analyzers contribute (:mod:`phototag.library`); a file that changed on disk since step 1 is not
   written (it will be picked up again).
4. **record**: the state DB stores the file's stat *after* our write, the fingerprints and the results, so a
   re-scan is stat-only and our own write does not look like a change. Library analyzers are told what changed
   and may ask for photos done earlier to be written again (from cache).

:meth:`Pipeline.run` overlaps three batches: it prepares the next one while it analyses the current one and
writes the one before (on its own thread, in order), and tells the photos that are done and unchanged apart
before any batch (:class:`DoneFolders`: one read of the state DB per folder, then a dict lookup and a stat per
photo), so that a re-scan runs near the speed of a bare walk of the tree.

The stages are public, for another runner to drive them with the same code (:mod:`phototag.cluster` runs
the reading, analysis and writing on Ray workers): :meth:`Pipeline.check` (stat only), :func:`read_photo`
(hash), :meth:`Pipeline.plan` and :meth:`Pipeline.claim`, then :meth:`Pipeline.result` (with the library
analyzers' contributions), :func:`write_photo` / :func:`write_locked` (may run in any process that sees the
photo; returns a small picklable :class:`Written`), :meth:`Pipeline.record` (the state DB: only its process)
and :meth:`Pipeline.settle` (claims released, library analyzers told). The local run calls exactly these.

Why one module of ~800 lines: the four stages share the per-photo :class:`Item` and the batch's bookkeeping
(fingerprints, claims, cleaned folders); split apart, each would need all of it passed around.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pluggy

from .claims import Claims
from .config import Config
from .errors import (
    TRANSIENT_ERRNOS,
    FileError,
    PhototagError,
    display,
)
from .files import hash_file, make_photo
from .folderlock import FolderBusy, folder_lock
from .hardware import Hardware, usable_cores
from .images import decode, photo_dimensions
from .library import LibraryStage, StateLibrary
from .manager import get_plugin_manager, notify
from .outcomes import Outcome, Summary
from .recover import runs_from_sidecar
from .registration import register_plugins
from .runtime import AnalyzerRuntime
from .state import StateDB
from .tempfiles import EXIFTOOL_SUFFIX, clean_folder
from .types import (
    Analyzer,
    AnalyzerRun,
    DecodedImage,
    Device,
    Fingerprinted,
    LibraryAnalyzer,
    ModelInfo,
    OwnsFiles,
    Photo,
    PhotoResult,
    Writer,
)

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One path on its way through a batch: made by :meth:`Pipeline.check`, completed by :meth:`Pipeline.plan`,
    analysed (``runs``), then written and recorded. Public so that another runner (:mod:`phototag.cluster`)
    drives the same stages; ``outcome`` set means the item is finished."""

    path: Path
    photo: Photo | None = None
    runs: dict[str, AnalyzerRun] = field(default_factory=dict)  # cached or fresh, by analyzer name
    todo: list[Analyzer] = field(default_factory=list)
    image: DecodedImage | None = None
    width: int = 0
    height: int = 0
    outcome: Outcome | None = None  # set when the item is finished early (skipped, failed)
    claimed: bool = False  # this process claimed it for analysis (claims.py)
    known: bool = False  # the state DB had a record of this path (then no model run = "rewritten")


WriteStatus = Literal["written", "changed", "writer-failed", "busy", "failed", "dry-run"]


@dataclass(frozen=True)
class Written:
    """What writing one photo's metadata did (:func:`write_locked`): all that :meth:`Pipeline.record` needs, and
    small and picklable, so that the write can run in another process (a Ray worker where the photo is) and the
    state DB be written by the one process that holds it.

    ``status``: ``written`` (``photo`` as on disk after the write, ``outputs`` the files the writers made);
    ``changed`` (the file changed since it was planned: nothing written; ``photo`` has its stat now);
    ``writer-failed`` (a writer raised: ``message``, ``transient``; ``photo`` its stat after, if any);
    ``busy`` (the folder's lock was not free), ``failed`` (the file could not be re-checked or re-read:
    nothing is recorded); ``dry-run`` (nothing was to be written)."""

    status: WriteStatus
    photo: Photo | None = None
    outputs: tuple[str, ...] = ()
    message: str = ""
    transient: bool = False


def slowest_first(names: Sequence[str], seconds: dict[str, float]) -> list[str]:
    """``names`` in the order to start them on a few threads: never measured first (their cost is unknown),
    then by ``seconds`` (the last batch's time per photo), slowest first; ties keep the given order."""
    return sorted(names, key=lambda n: -seconds.get(n, float("inf")))


class Pipeline:
    """Analyzers, writers and the state DB for one run. Not thread-safe: one worker calls it."""

    def __init__(
        self,
        config: Config,
        analyzers: Sequence[Analyzer],
        writers: Sequence[Writer],
        state: StateDB,
        hardware: Hardware | None = None,
        hook: Any = None,
        setup_errors: Sequence[str] = (),
        runtime: AnalyzerRuntime | None = None,
        library_analyzers: Sequence[LibraryAnalyzer] = (),
    ) -> None:
        self.config = config
        self.runtime = runtime or AnalyzerRuntime(config, analyzers, hardware=hardware, hook=hook)
        self.analyzers = self.runtime.analyzers
        self.writers = list(writers)
        self.state = state
        self.hook = hook
        self.setup_errors = list(setup_errors)
        self.library = LibraryStage(library_analyzers, StateLibrary(state))
        self._fingerprints: dict[str, str] | None = None
        self._cleaned: set[Path] = set()
        self._cleaned_lock = threading.Lock()
        self.claims = Claims(state.path, readonly=state.readonly)
        self._pool = ThreadPoolExecutor(
            max_workers=config.decode_workers, thread_name_prefix="phototag-decode"
        )
        self.analyze_workers = config.analyze_workers or (2 if usable_cores() >= 2 else 1)
        """How many analyzers run at once on a batch (``analyze_workers``, 0 resolved)."""
        self._analyze_pool = (
            ThreadPoolExecutor(max_workers=self.analyze_workers, thread_name_prefix="phototag-analyze")
            if self.analyze_workers > 1
            else None
        )
        self._analyzer_seconds: dict[str, float] = {}  # seconds per photo of each analyzer's last batch
        self.stage_seconds: dict[str, float] = {"analyze": 0.0, "prepare_wait": 0.0, "write_wait": 0.0}
        """Wall seconds, summed over this pipeline's life, of the analyze stage, and of :meth:`run` waiting for
        a batch's prepare stage (stat, hash, decode) or for the previous batch's writes to finish: what the
        benchmark splits a run's time into."""

    @classmethod
    def from_config(
        cls, config: Config, pm: pluggy.PluginManager | None = None, state: StateDB | None = None
    ) -> Pipeline:
        """Collect analyzers and writers from every plugin (each registration in its own error boundary)."""
        if pm is None:
            pm, _ = get_plugin_manager()
        found = register_plugins(config, pm)
        return cls(
            config,
            found.analyzers,
            found.writers,
            state or StateDB(config.state_db),
            hook=pm.hook,
            setup_errors=found.warnings,
            library_analyzers=found.library,
        )

    # -- public -------------------------------------------------------------------------------------------------

    @property
    def hardware(self) -> Hardware:
        """The probed hardware (probed when first needed: a run with nothing to analyse never imports torch)."""
        return self.runtime.hardware

    @property
    def devices(self) -> dict[str, Device]:
        """Where each analyzer that was placed runs."""
        return self.runtime.devices()

    def fingerprints(self, refresh: bool = False) -> dict[str, str]:
        """Every working analyzer's fingerprint, computed once per batch (some cost a package-metadata lookup,
        which would otherwise dominate a stat-only re-scan). A broken analyzer (its fingerprint raises) is left
        out: its photos fail with the reason, the others' results are written."""
        if refresh or self._fingerprints is None:
            self._fingerprints = {
                **self.runtime.fingerprints(),
                **self._writer_fingerprints(),
                **self.library.fingerprints(),
            }
        return self._fingerprints

    def _writer_fingerprints(self) -> dict[str, str]:
        return writer_fingerprints(self.writers)

    def is_current(self, path: Path) -> bool:
        """Stat-only check: was ``path`` done with the current analyzers, is it unchanged since, and are the
        files the writers made for it still there?"""
        try:
            st = path.stat()
        except OSError:
            return False
        return self._done(path, st, self.fingerprints())

    def _done(self, path: Path, st: os.stat_result, fingerprints: dict[str, str]) -> bool:
        return self.state.is_done(path, st.st_size, st.st_mtime_ns, fingerprints)

    def process(self, paths: Sequence[Path], *, force: bool = False, dry_run: bool = False) -> list[Outcome]:
        """Process one batch to the end; returns one outcome per path, in order. Photos that a library
        analyzer asks to rewrite are written too (logged, not returned)."""
        outcomes = self._finish(self._prepare(paths, force), dry_run)
        for outcome in self.rewrites(dry_run):
            log.info("%s: %s", display(outcome.path), outcome.message or outcome.status)
        return outcomes

    def run(
        self,
        paths: Iterable[Path],
        *,
        force: bool = False,
        dry_run: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> Summary:
        """Process every path in batches of ``config.batch_size``: batch k+1 is prepared while batch k is
        analysed and batch k-1 written (one thread each, so ``on_outcome`` is called from the writing thread,
        one outcome at a time).

        A photo that is done and unchanged (the common case of a re-scan) is told apart here, before any
        batch, by :class:`DoneFolders` (a dict lookup and a stat); everything else takes the batch stages.
        Outcomes come in the order of ``paths`` all the same."""
        summary = Summary()
        start = time.monotonic()
        # the batch being prepared or analysed, and its paths in order with the skips found among them
        pending: tuple[Future[list[Item]], list[Path | Outcome]] | None = None
        entries: list[Path | Outcome] = []  # the batch being filled, in the same form
        todo = 0  # paths among entries
        done = None if force else self.done_folders()
        preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phototag-prepare")
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phototag-write")
        writing: Future[None] | None = None  # the analysed batch being written

        def write_out(items: list[Item], order: list[Path | Outcome]) -> None:
            self._emit(_in_order(order, self._write_batch(items, dry_run)), summary, on_outcome)

        def drain() -> None:
            """Wait for the batch being written (its outcomes are then emitted)."""
            nonlocal writing
            if writing is not None:
                future, writing = writing, None
                waited = time.perf_counter()
                future.result()
                self.stage_seconds["write_wait"] += time.perf_counter() - waited

        def finish_pending() -> None:
            nonlocal pending, writing
            if pending is not None:
                future, order = pending
                pending = None
                waited = time.perf_counter()
                items = future.result()
                self.stage_seconds["prepare_wait"] += time.perf_counter() - waited
                self._analyze_all([i for i in items if i.outcome is None])
                drain()  # one batch written at a time, in order
                writing = writer.submit(write_out, items, order)

        def submit() -> None:
            nonlocal pending, entries, todo
            batch = [e for e in entries if isinstance(e, Path)]
            ahead = (preparer.submit(self._prepare, batch, force), entries)
            finish_pending()
            pending, entries, todo = ahead, [], 0

        try:
            self.fingerprints(refresh=True)
            for given in paths:
                path = given if isinstance(given, Path) else Path(given)
                if done is not None and done.is_done(path):
                    skip = Outcome(path, "skipped", "already done with the same models")
                    if todo:  # after a photo still in the batch: wait for it
                        entries.append(skip)
                        if len(entries) >= _MAX_HELD:
                            submit()
                    else:
                        if pending is not None:
                            finish_pending()
                        drain()
                        summary.add(skip)
                        if on_outcome is not None:
                            on_outcome(skip)
                    continue
                entries.append(path)
                todo += 1
                if todo >= self.config.batch_size:
                    submit()
            if todo:
                submit()
            finish_pending()
            drain()
            self._emit(list(self.rewrites(dry_run)), summary, on_outcome)
        finally:
            preparer.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True)  # an interrupted run still finishes writing what was analysed
        summary.seconds = time.monotonic() - start
        return summary

    def rewrite(self, paths: Sequence[Path], dry_run: bool = False) -> list[Outcome]:
        """Write the metadata of ``paths`` again from their cached results (no model runs; a photo with no
        cached result for an analyzer is analysed). For commands that change what a library analyzer
        contributes (``phototag people name``): the photos it names are written now."""
        outcomes: list[Outcome] = []
        for batch in _batches(paths, self.config.batch_size):
            outcomes += self._finish(self._prepare(batch, False, rewrite=True), dry_run, update=False)
        return outcomes

    def unload_models(self) -> list[str]:
        """Unload every loaded analyzer nobody is using (they reload on next use); the daemon calls this when
        idle."""
        return self.runtime.unload_idle(0.0)

    def close(self) -> None:
        """Unload models, close writers (exiftool) and the decode pool. The state DB stays open for the caller."""
        self._pool.shutdown(wait=True)
        if self._analyze_pool is not None:
            self._analyze_pool.shutdown(wait=True)
        try:
            self.claims.release_all()
        except PhototagError as e:
            log.warning("could not drop this run's claims (the next run takes them over): %s", e)
        self.claims.close()
        for writer in self.writers:
            try:
                writer.close()
            except Exception as e:
                log.warning("writer %s did not close cleanly: %s", writer.name, e)
        self.unload_models()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stages -------------------------------------------------------------------------------------------------

    @staticmethod
    def _emit(
        outcomes: list[Outcome], summary: Summary, on_outcome: Callable[[Outcome], None] | None
    ) -> None:
        for outcome in outcomes:
            summary.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

    def clean_once(self, folder: Path) -> None:
        """Remove the stale temp files a killed run left in ``folder``, once per folder and run, whether or
        not anything is written there now (never while another process writes there: the lock must be free)."""
        with self._cleaned_lock:
            if folder in self._cleaned:
                return
            self._cleaned.add(folder)
        if not self.state.readonly:  # a dry run changes nothing
            clean_folder(folder)

    def done_folders(self) -> DoneFolders:
        """The re-scan's stat-only "done" test for a walk (:class:`DoneFolders`), cleaning each folder it reads."""
        return DoneFolders(self.state, self.fingerprints, self.clean_once)

    def rewrites(self, dry_run: bool) -> Iterator[Outcome]:
        """Write again, from cached results, the photos library analyzers asked for. Rewrites do not ask the
        library analyzers again, so this ends."""
        for batch in _batches(self.library.take_rewrites(), self.config.batch_size):
            yield from self._finish(self._prepare(batch, False, rewrite=True), dry_run, update=False)

    # -- the stages one photo takes, public for other runners (phototag.cluster): one code path -----------------

    def check(self, path: Path, fingerprints: dict[str, str], *, force: bool = False) -> Item:
        """Stage 1, stat only: an :class:`Item` already finished (``outcome``: skipped, done with
        ``fingerprints`` and unchanged; or failed, the file cannot be stat'ed) or still open, to be read
        (:func:`read_photo`, which hashes every byte: another process may do it) and :meth:`plan`-ned."""
        item = Item(Path(path))
        self.clean_once(item.path.parent)
        try:
            st = item.path.stat()
        except OSError as e:
            item.outcome = unreadable(item.path, e)
            return item
        if not force and self._done(item.path, st, fingerprints):
            item.outcome = Outcome(item.path, "skipped", "already done with the same models")
            return item
        item.known = self.state.file_record(item.path) is not None
        return item

    def plan(self, item: Item, photo: Photo, fingerprints: dict[str, str], *, force: bool = False) -> None:
        """Stage 1, what the open ``item`` (read as ``photo``) needs (:meth:`plan_runs`): the analyzers still to
        run in ``item.todo`` (then :meth:`claim` it), or, when every result is cached (a rename, a copy, a
        changed writer setting), its size, read from the header."""
        item.photo = photo
        self.plan_runs(item, photo, force, fingerprints)
        if item.todo:
            return
        try:
            item.width, item.height = photo_dimensions(item.path)
        except FileError as e:
            item.outcome = Outcome(item.path, "failed", str(e))
        except OSError as e:
            item.outcome = failed_io(item.path, e, "decoding")

    def claim(self, items: Sequence[Item]) -> None:
        """Claim the open items that need a model, in one transaction: one process analyses a photo at a time
        (another scan or the daemon may be at it already: that item is skipped, naming the process)."""
        wanted = [i for i in items if i.outcome is None and i.todo]
        if not wanted:
            return
        held = self.claims.claim([i.path for i in wanted])
        for item in wanted:
            other = held.get(item.path)
            if other is None:
                item.claimed = True
            else:
                item.outcome = Outcome(
                    item.path, "skipped", f"being analysed by another phototag process (pid {other.pid} on "
                    f"{other.host})"
                )  # fmt: skip

    def _prepare(self, paths: Sequence[Path], force: bool, rewrite: bool = False) -> list[Item]:
        fingerprints = self.fingerprints(refresh=True)
        return list(self._pool.map(lambda p: self._prepare_one(Path(p), force, fingerprints, rewrite), paths))

    def _prepare_one(
        self, path: Path, force: bool, fingerprints: dict[str, str], rewrite: bool = False
    ) -> Item:
        item = self.check(path, fingerprints, force=force or rewrite)
        if item.outcome is not None:
            return item
        photo = read_photo(item.path)
        if isinstance(photo, Outcome):
            item.outcome = photo
            return item
        self.plan(item, photo, fingerprints, force=force)
        self.claim([item])
        if item.outcome is not None or not item.todo:
            return item
        try:
            item.image = decode(photo, max(a.input_size for a in item.todo), self.config.image)
            item.width, item.height = item.image.width, item.image.height
        except FileError as e:
            item.outcome = Outcome(item.path, "failed", str(e))
        except OSError as e:
            item.outcome = failed_io(item.path, e, "decoding")
        return item

    def plan_runs(self, item: Item, photo: Photo, force: bool, fingerprints: dict[str, str]) -> None:
        """What ``item`` (read as ``photo``) needs: each analyzer's cached result (the state DB, else the
        photo's JSON sidecar) in ``item.runs``, the analyzers still to run in ``item.todo``; a broken analyzer
        fails alone, with its reason. Used by the local pipeline and the cluster runner alike."""
        recovered: dict[str, AnalyzerRun] | None = None
        for analyzer in self.analyzers:
            if analyzer.name not in fingerprints:  # broken: fails alone, with the reason
                error = self.runtime.error(analyzer.name) or f"analyzer {analyzer.name} is broken"
                item.runs[analyzer.name] = AnalyzerRun(
                    analyzer.name, analyzer.task, ModelInfo(analyzer.name), "", None, error
                )
                continue
            cached = (
                None
                if force
                else self.state.cached_run(photo.content_hash, analyzer.name, fingerprints[analyzer.name])
            )
            if cached is None and not force:
                # a lost or rebuilt state DB: the photo's JSON sidecar still holds results for these bytes
                if recovered is None:
                    recovered = runs_from_sidecar(item.path, photo.content_hash, fingerprints)
                cached = recovered.get(analyzer.name)
            if cached is not None:
                item.runs[analyzer.name] = cached
            else:
                item.todo.append(analyzer)

    def _finish(self, items: list[Item], dry_run: bool, update: bool = True) -> list[Outcome]:
        self._analyze_all([i for i in items if i.outcome is None])
        return self._write_batch(items, dry_run, update)

    def _write_batch(self, items: list[Item], dry_run: bool, update: bool = True) -> list[Outcome]:
        """Write and record each analysed item of a batch, then settle it; returns the outcomes in order."""
        for item in items:
            if item.outcome is None:
                item.outcome = self._write_and_record(item, dry_run)
        return self.settle(items, dry_run, update)

    def _analyze_all(self, live: list[Item]) -> None:
        """Every analyzer on its share of the batch: one after the other, or ``analyze_workers`` at once, the
        slowest first (longest-first keeps the last one from running alone). Each writes its own key of
        each item's ``runs``; results do not depend on the order."""
        start = time.perf_counter()
        try:
            self._analyze_each(live)
        finally:
            self.stage_seconds["analyze"] += time.perf_counter() - start

    def _analyze_each(self, live: list[Item]) -> None:
        work = [(a, [i for i in live if a in i.todo]) for a in self.analyzers]
        work = [(a, batch) for a, batch in work if batch]
        if self._analyze_pool is None or len(work) < 2:
            for analyzer, batch in work:
                self._analyze(analyzer, batch)
            return
        order = slowest_first([a.name for a, _ in work], self._analyzer_seconds)
        work.sort(key=lambda w: order.index(w[0].name))
        for future in [self._analyze_pool.submit(self._analyze, a, batch) for a, batch in work]:
            future.result()

    def _analyze(self, analyzer: Analyzer, batch: list[Item]) -> None:
        name = analyzer.name
        fingerprint = self.fingerprints()[name]
        model = self.runtime.model_info(name)
        ran = self.runtime.analyze(name, [i.image for i in batch if i.image is not None])
        if ran.analyses is None:
            for item in batch:
                item.runs[name] = AnalyzerRun(name, analyzer.task, model, fingerprint, None, ran.error)
            return
        self._analyzer_seconds[name] = ran.seconds_each
        for item, analysis in zip(batch, ran.analyses, strict=True):
            item.runs[name] = AnalyzerRun(
                name, analyzer.task, model, fingerprint, analysis, None, ran.seconds_each
            )

    def result(self, item: Item) -> PhotoResult:
        """What the writers get for an analysed (or fully cached) item: its runs in analyzer order, plus what the
        library analyzers contribute now."""
        assert item.photo is not None
        runs = tuple(item.runs[a.name] for a in self.analyzers if a.name in item.runs)
        result = PhotoResult(item.photo, item.width, item.height, runs)
        if self.library.analyzers:
            result = replace(result, runs=runs + self.library.contributions(result, self.fingerprints()))
        return result

    def _write_and_record(self, item: Item, dry_run: bool) -> Outcome:
        """Stages 3 and 4 in this process: write under the folder's lock and record before releasing it."""
        result = self.result(item)
        if dry_run:
            return self.record(item, result, Written("dry-run"))
        try:
            with folder_lock(item.path.parent):
                return self.record(item, result, write_locked(self.writers, result))
        except FolderBusy as e:
            return self.record(item, result, Written("busy", message=str(e), transient=True))

    def record(self, item: Item, result: PhotoResult, written: Written) -> Outcome:
        """Stage 4: the item's outcome from what the write did (here or in another process), recorded in the
        state DB: results by content hash, and the file's stat *after* the write with the fingerprints it is
        done with, so that a re-scan is stat-only. Only the process that holds the state DB calls this."""
        path, runs = item.path, result.runs
        errors = [r.error for r in runs if r.error]
        if written.status == "dry-run":
            return Outcome(path, "dry-run", "; ".join(errors), result=result)
        if written.status == "busy":  # the folder's lock was not free
            return Outcome(path, "failed", written.message, written.transient, result)
        if written.status == "failed":
            return Outcome(path, "failed", written.message, written.transient)
        now = written.photo
        if written.status == "changed":
            assert now is not None
            if not errors and self.state.is_done(path, now.size, now.mtime_ns, self.fingerprints()):
                # another phototag process on this state DB finished it while we analysed it
                return Outcome(path, "skipped", "done meanwhile by another phototag process")
            return Outcome(path, "failed", f"{display(path)}: changed while being analysed; will retry", True)
        if written.status == "writer-failed":
            log.error("%s", written.message)
            if now is not None:
                self.state.record_failed(path, now.size, now.mtime_ns, written.message, now.content_hash)
            return Outcome(path, "failed", written.message, written.transient, result)
        assert now is not None
        photo = result.photo
        cacheable = [r for r in runs if r.task != "library"]  # contributions change with the library
        self.state.store_runs(photo.content_hash, cacheable)
        if now.content_hash != photo.content_hash:  # embed mode changed the bytes: keep results findable
            self.state.store_runs(now.content_hash, cacheable)
        ok = {r.analyzer: r.fingerprint for r in runs if r.error is None and r.task != "library"}
        # writers' and library analyzers' settings too (``library:NAME``): a photo is done with exactly these
        ok.update((k, v) for k, v in self.fingerprints().items() if k.startswith(("writer:", "library:")))
        self.state.record_done(
            now,
            ok,
            "; ".join(errors) or None,
            status="failed" if errors else "done",
            outputs=list(written.outputs),
        )
        if self.hook is not None:
            notify(self.hook, "photo_processed", result=result)
        if errors:
            return Outcome(path, "failed", "; ".join(errors), False, result)
        return Outcome(path, "rewritten" if item.known and not item.todo else "tagged", result=result)

    def settle(self, items: Sequence[Item], dry_run: bool, update: bool = True) -> list[Outcome]:
        """The end of a batch whose items all have an outcome: free pixels, release the claims, tell the
        library analyzers what changed (``update``); returns the outcomes in order."""
        for item in items:
            item.image = None  # free pixels as soon as the batch is done
        claimed = [i.path for i in items if i.claimed]
        if claimed:
            self.claims.release(claimed)
        outcomes = [i.outcome for i in items if i.outcome is not None]
        if update and not dry_run:
            self.library.update([o.result for o in outcomes if o.result is not None and o.status != "failed"])
        return outcomes


def writer_fingerprints(writers: Sequence[Writer]) -> dict[str, str]:
    """``writer:NAME`` -> the writer's fingerprint (its settings that change what it writes): when one
    changes, the metadata is written again from the cached results, without running a model."""
    out = {}
    for writer in writers:
        if not isinstance(writer, Fingerprinted):
            continue
        try:
            out[f"writer:{writer.name}"] = str(writer.fingerprint())
        except Exception as e:
            log.error(
                "writer %s: fingerprint() failed (%s): its metadata is written every time", writer.name, e
            )
    return out


def read_photo(path: Path) -> Photo | Outcome:
    """Stage 1's read: stat and hash every byte (:func:`phototag.files.make_photo`); a file that cannot be
    read is its failed outcome, naming it."""
    try:
        return make_photo(path)
    except (OSError, FileError) as e:
        return unreadable(path, e)


def unreadable(path: Path, e: OSError | FileError) -> Outcome:
    """The outcome of a file that could not be stat'ed or read (vanished: transient; not a regular file)."""
    if isinstance(e, FileNotFoundError):
        return Outcome(path, "failed", f"{display(path)}: file vanished before it was read", True)
    if isinstance(e, OSError):
        return failed_io(path, e, "reading")
    return Outcome(path, "failed", str(e))


def write_photo(writers: Sequence[Writer], result: PhotoResult) -> Written:
    """Stage 3 where the photo is (this process or a Ray worker): :func:`write_locked` under the folder's lock."""
    try:
        with folder_lock(result.photo.path.parent):
            return write_locked(writers, result)
    except FolderBusy as e:
        return Written("busy", message=str(e), transient=True)


def write_locked(writers: Sequence[Writer], result: PhotoResult) -> Written:
    """Write one photo's metadata with every writer, while holding its folder's lock (no other phototag writes
    there). A file that changed since it was planned (``result.photo``'s stat) is not written. Idempotent: the
    same ``result`` written twice gives the same files (a retried batch is harmless). Never raises for the
    photo: every failure is a :class:`Written` naming it."""
    photo = result.photo
    path = photo.path
    try:
        st = path.stat()
    except OSError as e:
        failed = failed_io(path, e, "re-checking")
        return Written("failed", message=failed.message, transient=failed.transient)
    if (st.st_size, st.st_mtime_ns) != (photo.size, photo.mtime_ns):
        return Written("changed", replace(photo, size=st.st_size, mtime_ns=st.st_mtime_ns))
    for writer in writers:
        try:
            writer.write(result)
        except Exception as e:
            message = str(e) if isinstance(e, FileError) else f"{display(path)}: writer {writer.name}: {e}"
            try:
                st = path.stat()
                now: Photo | None = replace(photo, size=st.st_size, mtime_ns=st.st_mtime_ns)
            except OSError:
                now = None
            return Written("writer-failed", now, message=message, transient=_is_transient(e))
    try:
        after = _after_write(photo)
    except FileNotFoundError:
        message = f"{display(path)}: moved or deleted right after its metadata was written; not recorded"
        return Written("failed", message=message, transient=True)
    except OSError as e:
        failed = failed_io(path, e, "recording")
        return Written("failed", message=failed.message, transient=failed.transient)
    return Written("written", after, _outputs(writers, path))


def _outputs(writers: Sequence[Writer], path: Path) -> tuple[str, ...]:
    """Names of the files the writers made for ``path`` that exist now (beside the photo)."""
    names = []
    for writer in writers:
        for out in writer.owned_files(path) if isinstance(writer, OwnsFiles) else ():
            if os.path.lexists(out):
                names.append(out.name)
    return tuple(names)


def _after_write(photo: Photo) -> Photo:
    """The photo as it is on disk after our writes (embed mode changes size, mtime and bytes)."""
    st = photo.path.stat()
    if (st.st_size, st.st_mtime_ns) == (photo.size, photo.mtime_ns):
        return photo
    return replace(photo, size=st.st_size, mtime_ns=st.st_mtime_ns, content_hash=hash_file(photo.path))


_MAX_HELD = 4096
"""At most this many skipped photos wait behind an unfinished batch (then it is started short)."""


class DoneFolders:
    """The re-scan's "done" test as a dict lookup: per folder, one bulk read of the state
    (:meth:`StateDB.done_in`) and one listing (for the files the writers made), then per photo a lookup and a
    stat. True only when :meth:`StateDB.is_done` would say so; anything it cannot vouch for (a new or changed
    file, a record with other fingerprints, a missing sidecar, a relative path) is False and goes through the
    batch stages, which decide as before.

    One folder is held at a time (walks yield a folder's photos together), so memory does not grow with the
    tree. ``clean`` is called once for each folder it reads (the stale temp files a killed run left)."""

    def __init__(
        self,
        state: StateDB,
        fingerprints: Callable[[], dict[str, str]],
        clean: Callable[[Path], None],
    ) -> None:
        self._state = state
        self._fingerprints = fingerprints
        self._clean = clean
        self._folder: str | None = None
        self._for: dict[str, str] = {}
        self._done: dict[str, tuple[int, int, str]] = {}
        self._names: frozenset[str] = frozenset()

    def is_done(self, path: Path) -> bool:
        text = str(path)
        folder, _, name = text.rpartition(os.sep)
        if not folder.startswith(os.sep):  # relative (or directly in /): the batch stages decide
            return False
        fingerprints = self._fingerprints()
        if folder != self._folder or (fingerprints is not self._for and fingerprints != self._for):
            self._load(folder, fingerprints)
        known = self._done.get(name)
        if known is None:
            return False
        try:
            st = os.stat(text)
        except OSError:
            return False
        if known[0] != st.st_size or known[1] != st.st_mtime_ns:
            return False
        return self._names.issuperset(_names_of(known[2]))

    def _load(self, folder: str, fingerprints: dict[str, str]) -> None:
        where = Path(folder)
        try:
            names = os.listdir(folder)
        except OSError:
            names = []
        if folder != self._folder and _may_hold_temp_files(names):
            self._clean(where)
        self._folder, self._for, self._names = folder, fingerprints, frozenset(names)
        self._done = self._state.done_in(where, fingerprints)


def _may_hold_temp_files(names: list[str]) -> bool:
    """False when no name in the listing can be a temp file (:func:`phototag.tempfiles.is_temp_name`: each
    begins with ``.`` or ends with exiftool's suffix), tested on the joined names at C speed, so that a
    folder without any is not scanned again by :func:`phototag.tempfiles.clean_folder`."""
    joined = "\0" + "\0".join(names) + "\0"
    return "\0." in joined or f"{EXIFTOOL_SUFFIX}\0" in joined


def _names_of(outputs: str) -> list[str]:
    """The ``outputs`` column (a JSON list of file names, as ``json.dumps`` writes it) as a list: split
    directly when no name needed escaping (no backslash), else parsed."""
    if outputs == "[]":
        return []
    if "\\" in outputs or not (outputs.startswith('["') and outputs.endswith('"]')):
        return list(json.loads(outputs))
    return outputs[2:-2].split('", "')


def _in_order(order: list[Path | Outcome], finished: list[Outcome]) -> list[Outcome]:
    """The outcomes of a batch's paths (``finished``, in order) with the skips that came among them."""
    it = iter(finished)
    return [next(it) if isinstance(entry, Path) else entry for entry in order] + list(it)


def _batches(paths: Iterable[Path], size: int) -> Iterator[list[Path]]:
    batch: list[Path] = []
    for path in paths:
        batch.append(path)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def failed_io(path: Path, e: OSError, doing: str) -> Outcome:
    """The failed outcome of an I/O error while ``doing`` something to ``path`` (transient when worth a retry)."""
    transient = e.errno in TRANSIENT_ERRNOS
    hint = " (check the file's permissions)" if e.errno in (errno.EACCES, errno.EPERM) else ""
    if e.errno == errno.ENOSPC:
        hint = ": the disk is full"
    return Outcome(
        path, "failed", f"{display(path)}: error while {doing}: {e.strerror or e}{hint}", transient
    )


def _is_transient(e: Exception) -> bool:
    if isinstance(e, FileError):
        return e.transient
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    return isinstance(cause, OSError) and cause.errno in TRANSIENT_ERRNOS
