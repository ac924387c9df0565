"""Process photos: stat + hash -> decode -> each analyzer (isolated) -> each writer (isolated) -> record.

The one code path behind ``phototag scan`` and ``phototag watch``. Stages, in order, for one batch:

1. **prepare** (thread pool): stat and hash each file; skip what is done (same stat, same analyzer and writer
   fingerprints, its sidecars still there); look up cached results by content hash (else in the photo's JSON
   sidecar, :mod:`phototag.recover`); claim the photos that still need a model (:mod:`phototag.claims`: two
   processes never analyse one photo) and decode them (JPEG draft mode, to the largest ``input_size``).
2. **analyze**: each analyzer that has work gets the whole batch at once, through the analyzer runtime
   (:mod:`phototag.runtime`), inside its own error boundary.
3. **write**: under the folder's lock (:mod:`phototag.folderlock`), each writer in its own error boundary, with
   what library analyzers contribute (:mod:`phototag.library`); a file that changed on disk since step 1 is not
   written (it will be picked up again).
4. **record**: the state DB stores the file's stat *after* our write, the fingerprints and the results, so a
   re-scan is stat-only and our own write does not look like a change. Library analyzers are told what changed
   and may ask for photos done earlier to be written again (from cache).

:meth:`Pipeline.run` overlaps the prepare stage of the next batch with the analysis of the current one, and
tells the photos that are done and unchanged apart before any batch (:class:`_DoneFolders`: one read of the
state DB per folder, then a dict lookup and a stat per photo), so that a re-scan runs near the speed of a
bare walk of the tree.

Why one module of ~500 lines: the four stages share the per-photo ``_Item`` and the batch's bookkeeping
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
from typing import Any

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
from .hardware import Hardware
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
class _Item:
    """One path on its way through a batch."""

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
        """``writer:NAME`` -> the writer's fingerprint (its settings that change what it writes): when one
        changes, the metadata is written again from the cached results, without running a model."""
        out = {}
        for writer in self.writers:
            if not isinstance(writer, Fingerprinted):
                continue
            try:
                out[f"writer:{writer.name}"] = str(writer.fingerprint())
            except Exception as e:
                log.error(
                    "writer %s: fingerprint() failed (%s): its metadata is written every time", writer.name, e
                )
        return out

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
        for outcome in self._rewrites(dry_run):
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
        """Process every path in batches of ``config.batch_size``; preparing batch k+1 while k is analysed.

        A photo that is done and unchanged (the common case of a re-scan) is told apart here, before any
        batch, by :class:`_DoneFolders` (a dict lookup and a stat); everything else takes the batch stages.
        Outcomes come in the order of ``paths`` all the same."""
        summary = Summary()
        start = time.monotonic()
        # the batch being prepared or analysed, and its paths in order with the skips found among them
        pending: tuple[Future[list[_Item]], list[Path | Outcome]] | None = None
        entries: list[Path | Outcome] = []  # the batch being filled, in the same form
        todo = 0  # paths among entries
        done = None if force else _DoneFolders(self.state, self.fingerprints, self._clean_once)
        preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phototag-prepare")

        def finish_pending() -> None:
            nonlocal pending
            if pending is not None:
                future, order = pending
                pending = None
                self._emit(_in_order(order, self._finish(future.result(), dry_run)), summary, on_outcome)

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
            self._emit(list(self._rewrites(dry_run)), summary, on_outcome)
        finally:
            preparer.shutdown(wait=True, cancel_futures=True)
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

    def _clean_once(self, folder: Path) -> None:
        """Remove the stale temp files a killed run left in ``folder``, once per folder and run, whether or
        not anything is written there now (never while another process writes there: the lock must be free)."""
        with self._cleaned_lock:
            if folder in self._cleaned:
                return
            self._cleaned.add(folder)
        if not self.state.readonly:  # a dry run changes nothing
            clean_folder(folder)

    def _rewrites(self, dry_run: bool) -> Iterator[Outcome]:
        """Write again, from cached results, the photos library analyzers asked for. Rewrites do not ask the
        library analyzers again, so this ends."""
        for batch in _batches(self.library.take_rewrites(), self.config.batch_size):
            yield from self._finish(self._prepare(batch, False, rewrite=True), dry_run, update=False)

    def _prepare(self, paths: Sequence[Path], force: bool, rewrite: bool = False) -> list[_Item]:
        items = [_Item(Path(p)) for p in paths]
        fingerprints = self.fingerprints(refresh=True)
        list(self._pool.map(lambda item: self._prepare_one(item, force, fingerprints, rewrite), items))
        return items

    def _prepare_one(
        self, item: _Item, force: bool, fingerprints: dict[str, str], rewrite: bool = False
    ) -> None:
        self._clean_once(item.path.parent)
        try:
            st = item.path.stat()
            if not force and not rewrite and self._done(item.path, st, fingerprints):
                item.outcome = Outcome(item.path, "skipped", "already done with the same models")
                return
            item.known = self.state.file_record(item.path) is not None
            item.photo = make_photo(item.path)
        except FileNotFoundError:
            item.outcome = Outcome(
                item.path, "failed", f"{display(item.path)}: file vanished before it was read", True
            )
            return
        except OSError as e:
            item.outcome = _failed_io(item.path, e, "reading")
            return
        except FileError as e:  # not a regular file
            item.outcome = Outcome(item.path, "failed", str(e))
            return
        self.plan_runs(item, item.photo, force, fingerprints)
        if item.todo:
            # one process analyses a photo at a time: another scan or the daemon may be at it already
            held = self.claims.claim([item.path])
            if item.path in held:
                other = held[item.path]
                item.outcome = Outcome(
                    item.path, "skipped", f"being analysed by another phototag process (pid {other.pid} on "
                    f"{other.host})"
                )  # fmt: skip
                return
            item.claimed = True
        min_side = max((a.input_size for a in item.todo), default=0)
        try:
            if item.todo:
                item.image = decode(item.photo, min_side, self.config.image)
                item.width, item.height = item.image.width, item.image.height
            else:
                # every result is cached (a rename, a copy, a changed writer setting): only the size is needed
                item.width, item.height = photo_dimensions(item.path)
        except FileError as e:
            item.outcome = Outcome(item.path, "failed", str(e))
        except OSError as e:
            item.outcome = _failed_io(item.path, e, "decoding")

    def plan_runs(self, item: _Item, photo: Photo, force: bool, fingerprints: dict[str, str]) -> None:
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

    def _finish(self, items: list[_Item], dry_run: bool, update: bool = True) -> list[Outcome]:
        live = [i for i in items if i.outcome is None]
        for analyzer in self.analyzers:
            batch = [i for i in live if analyzer in i.todo]
            if batch:
                self._analyze(analyzer, batch)
        for item in live:
            item.outcome = self._write_and_record(item, dry_run)
        for item in items:
            item.image = None  # free pixels as soon as the batch is done
        claimed = [i.path for i in items if i.claimed]
        if claimed:
            self.claims.release(claimed)
        outcomes = [i.outcome for i in items if i.outcome is not None]
        if update and not dry_run:
            self.library.update([o.result for o in outcomes if o.result is not None and o.status != "failed"])
        return outcomes

    def _analyze(self, analyzer: Analyzer, batch: list[_Item]) -> None:
        name = analyzer.name
        fingerprint = self.fingerprints()[name]
        model = self.runtime.model_info(name)
        ran = self.runtime.analyze(name, [i.image for i in batch if i.image is not None])
        if ran.analyses is None:
            for item in batch:
                item.runs[name] = AnalyzerRun(name, analyzer.task, model, fingerprint, None, ran.error)
            return
        for item, analysis in zip(batch, ran.analyses, strict=True):
            item.runs[name] = AnalyzerRun(
                name, analyzer.task, model, fingerprint, analysis, None, ran.seconds_each
            )

    def _write_and_record(self, item: _Item, dry_run: bool) -> Outcome:
        assert item.photo is not None
        photo = item.photo
        runs = tuple(item.runs[a.name] for a in self.analyzers if a.name in item.runs)
        result = PhotoResult(photo, item.width, item.height, runs)
        if self.library.analyzers:
            result = replace(result, runs=runs + self.library.contributions(result, self.fingerprints()))
            runs = result.runs
        errors = [r.error for r in runs if r.error]
        if dry_run:
            return Outcome(item.path, "dry-run", "; ".join(errors), result=result)
        try:
            with folder_lock(item.path.parent):
                return self._write_locked(item, result, errors)
        except FolderBusy as e:
            return Outcome(item.path, "failed", str(e), True, result)

    def _write_locked(self, item: _Item, result: PhotoResult, errors: list[str]) -> Outcome:
        """Write and record one photo while holding its folder's lock (no other phototag writes there)."""
        photo, runs = result.photo, result.runs
        try:
            st = item.path.stat()
        except OSError as e:
            return _failed_io(item.path, e, "re-checking")
        if (st.st_size, st.st_mtime_ns) != (photo.size, photo.mtime_ns):
            if not errors and self._done(item.path, st, self.fingerprints()):
                # another phototag process on this state DB finished it while we analysed it
                return Outcome(item.path, "skipped", "done meanwhile by another phototag process")
            return Outcome(
                item.path, "failed", f"{display(item.path)}: changed while being analysed; will retry", True
            )
        for writer in self.writers:
            try:
                writer.write(result)
            except Exception as e:
                message = (
                    str(e) if isinstance(e, FileError) else f"{display(item.path)}: writer {writer.name}: {e}"
                )
                log.error("%s", message)
                self._record_failure(item.path, message, photo.content_hash)
                return Outcome(item.path, "failed", message, _is_transient(e), result)
        try:
            written = self._after_write(photo)
        except FileNotFoundError:
            message = (
                f"{display(item.path)}: moved or deleted right after its metadata was written; not recorded"
            )
            return Outcome(item.path, "failed", message, True, result)
        except OSError as e:
            return _failed_io(item.path, e, "recording")
        cacheable = [r for r in runs if r.task != "library"]  # contributions change with the library
        self.state.store_runs(photo.content_hash, cacheable)
        if written.content_hash != photo.content_hash:  # embed mode changed the bytes: keep results findable
            self.state.store_runs(written.content_hash, cacheable)
        ok = {r.analyzer: r.fingerprint for r in runs if r.error is None and r.task != "library"}
        # writers' and library analyzers' settings too (``library:NAME``): a photo is done with exactly these
        ok.update((k, v) for k, v in self.fingerprints().items() if k.startswith(("writer:", "library:")))
        self.state.record_done(
            written,
            ok,
            "; ".join(errors) or None,
            status="failed" if errors else "done",
            outputs=self._outputs(item.path),
        )
        if self.hook is not None:
            notify(self.hook, "photo_processed", result=result)
        if errors:
            return Outcome(item.path, "failed", "; ".join(errors), False, result)
        return Outcome(item.path, "rewritten" if item.known and not item.todo else "tagged", result=result)

    def _outputs(self, path: Path) -> list[str]:
        """Names of the files the writers made for ``path`` that exist now (beside the photo)."""
        names = []
        for writer in self.writers:
            for out in writer.owned_files(path) if isinstance(writer, OwnsFiles) else ():
                if os.path.lexists(out):
                    names.append(out.name)
        return names

    def _after_write(self, photo: Photo) -> Photo:
        """The photo as it is on disk after our writes (embed mode changes size, mtime and bytes)."""
        st = photo.path.stat()
        if (st.st_size, st.st_mtime_ns) == (photo.size, photo.mtime_ns):
            return photo
        return replace(photo, size=st.st_size, mtime_ns=st.st_mtime_ns, content_hash=hash_file(photo.path))

    def _record_failure(self, path: Path, message: str, content_hash: str | None) -> None:
        try:
            st = path.stat()
            self.state.record_failed(path, st.st_size, st.st_mtime_ns, message, content_hash)
        except OSError:
            pass


_MAX_HELD = 4096
"""At most this many skipped photos wait behind an unfinished batch (then it is started short)."""


class _DoneFolders:
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


def _failed_io(path: Path, e: OSError, doing: str) -> Outcome:
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
