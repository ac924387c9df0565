"""The driver: the local scan's walk and decisions, batches sent to Ray, outcomes recorded here.

:func:`choose_runner` is what ``phototag scan --ray`` calls: it counts the photos that still need a model (the
local scan's stat-only "done" test) and returns the local runner below :data:`MIN_PHOTOS` (saying so), else a
:class:`ClusterRunner`'s ``run``. Both take the same arguments and return the same
:class:`~phototag.outcomes.Summary`, calling ``on_outcome`` once per path, so the progress bar, the lines,
``--json`` and the exit code are the local scan's.

The driver streams the walk through the pipeline's public stages (:class:`~phototag.pipeline.Pipeline`:
``check``, ``plan``, ``claim``, ``result``, ``record``, ``settle``), the same code as a local scan: a stat-only
"done" test per photo, then per batch of the others a hash task on a worker (the bytes are read there, not on
the driver), then the local scan's decisions (cache, sidecar, claim), then one decode task and one ``analyze``
call to the least busy model actor (Ray passes the pixels between them through its object store). As a batch's
analyses come back the driver adds what library analyzers contribute and sends the results to the writer actor
on the node that analysed them, which writes the metadata where the photos are (folder lock, writers, "changed
since planned" check) and returns what it wrote (stat, hash, files); the driver alone records that in the state
DB. Hash tasks run a bounded number of batches ahead and a bounded number of batches are in flight, so memory
does not grow with the tree. A batch whose worker died more often than :data:`MAX_RETRIES` comes back as a
transient failure of each of its photos, named: nothing is dropped.

A killed driver: what was recorded is skipped by the next run (the state DB); its claims die with it
(:mod:`phototag.claims`); a photo written but not yet recorded has its results in its JSON sidecar, which
the next run reads instead of running a model again.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PhototagError, display
from ..extras import require
from ..outcomes import Outcome, Summary
from ..pipeline import DoneFolders, Item, Pipeline, Written
from ..types import AnalyzerRun, Photo, PhotoResult
from .remote import Analysed, Job, ModelWorker, WriterWorker, check_paths, decode_batch, hash_batch
from .sizing import CPUS_PER_ACTOR, DECODE_CPUS, ActorSpec, plan_actors, plan_writers

log = logging.getLogger(__name__)

MIN_PHOTOS = 1000
"""Below this many photos to analyse, the local runner is used. bench/cluster_bench.py (2 cores, busy machine,
after the writes moved to writer actors) put the crossover of the Ray runner at 724-1,198 photos with one or two
worker nodes, and on a quiet machine Ray on the same cores never caught up: 1,000 keeps small, interactive scans
on the predictable local runner until a real multi-machine cluster is measured."""
MAX_RETRIES = 3
"""Times Ray restarts a dead model actor, and retries a batch whose actor or decode task died."""
IN_FLIGHT_PER_ACTOR = 2
"""Batches queued per model actor: one being analysed, one decoded and waiting (bounded memory)."""
READ_BATCHES = 4
"""Model batches per hash task: each Ray call costs the driver about a millisecond, so reading goes in larger
batches (the model batches stay the local scan's size, so results are the same)."""
ENV_PASSED = ("PHOTOTAG_PLUGINS", "PHOTOTAG_BLOCK", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")
"""Environment variables the workers get from the driver: the same plugins and the same model sources."""

Run = Callable[..., Summary]


class ClusterError(PhototagError):
    """The cluster cannot run this scan (cannot connect, a node cannot see the photos, mismatched nodes)."""


def choose_runner(
    pipeline: Pipeline,
    address: str,
    paths: Sequence[Path],
    *,
    force: bool = False,
    always: bool = False,
    say: Callable[[str], None] = log.warning,
    min_photos: int = MIN_PHOTOS,
) -> Run:
    """``pipeline.run`` when fewer than ``min_photos`` of ``paths`` need work (``say`` tells why), else the
    ``run`` of a :class:`ClusterRunner` connected to ``address``. ``always`` uses Ray whatever the count."""
    if not always:
        todo = count_todo(pipeline, paths, force, stop_at=min_photos)
        if todo < min_photos:
            say(
                f"{todo} photo(s) to analyse: below {min_photos}, where Ray pays for its start-up; using the "
                "local runner (--ray-always uses Ray anyway)"
            )
            return pipeline.run
    return ClusterRunner(pipeline, address).run


def count_todo(pipeline: Pipeline, paths: Sequence[Path], force: bool, stop_at: int) -> int:
    """How many of ``paths`` are not done (the local scan's stat-only test), counting up to ``stop_at``."""
    if force:
        return min(len(paths), stop_at)
    done = DoneFolders(pipeline.state, pipeline.fingerprints, lambda _: None)
    count = 0
    for path in paths:
        if not done.is_done(Path(path)):
            count += 1
            if count >= stop_at:
                break
    return count


def _lost(path: Path, doing: str, e: Exception) -> str:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return (
        f"{display(path)}: the Ray worker {doing} it died {MAX_RETRIES + 1} times ({reason}); it is retried on "
        "the next scan"
    )


def connect(address: str) -> Any:
    """``ray`` connected to the cluster at ``address`` (``auto``: the one ``ray start`` made on this machine;
    ``ray://host:10001``: a remote one). Worker output does not reach our stdout (``--json`` stays clean)."""
    ray = require("ray", "ray", "The cluster runner (scan --ray)")
    env = {k: os.environ[k] for k in ENV_PASSED if k in os.environ}
    if not ray.is_initialized():
        try:
            ray.init(
                address=address,
                log_to_driver=False,
                logging_level=logging.WARNING,
                runtime_env={"env_vars": env} if env else None,
            )
        except getattr(ray.exceptions, "AuthenticationError", ()) as e:  # token auth: Ray 2.5x and later
            raise ClusterError(
                f"the Ray cluster at {address!r} refused this driver's token: give it the cluster's token "
                "(RAY_AUTH_MODE=token with RAY_AUTH_TOKEN, or the file ~/.ray/auth_token / RAY_AUTH_TOKEN_PATH)"
            ) from e
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address!r}: {e}; start one with `ray start --head` "
                "(and `ray start --address=HEAD:6379` on each other node), or give its address; a cluster with "
                "token auth (RAY_AUTH_MODE=token) needs its token here too: RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN (or the file ~/.ray/auth_token)"
            ) from e
    return ray


@dataclass
class _Batch:
    """Photos in flight: being analysed by model actor ``actor``, or (``results`` set) being written."""

    items: list[Item]
    actor: int
    results: list[PhotoResult] | None = None  # the write stage: one per open item, in order


@dataclass
class _Actor:
    spec: ActorSpec
    handle: Any
    busy: int = 0
    info: dict[str, Any] = field(default_factory=dict)


class ClusterRunner:
    """Runs :meth:`Pipeline.run`'s contract on a Ray cluster; ``pipeline`` is the driver's (its state DB, its
    fingerprints, its library analyzers); its analyzers are never loaded here and its writers write only the
    library analyzers' rewrites."""

    def __init__(self, pipeline: Pipeline, address: str, *, cpus_per_actor: float = CPUS_PER_ACTOR) -> None:
        self.pipeline = pipeline
        self.address = address
        self.ray = connect(address)
        self.cpus_per_actor = cpus_per_actor
        self.actors: list[_Actor] = []
        self.writers: dict[str, list[Any]] = {}  # node ID -> its writer actors
        self._next_writer = 0

    # -- set-up ---------------------------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def check_storage(self, paths: Sequence[Path]) -> None:
        """Every node must open a sample of the photos at the same path (shared storage); else a
        :class:`ClusterError` naming the node and the path."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        sample: dict[str, str] = {}
        for path in paths:  # the first photo of each folder, up to 16 folders
            sample.setdefault(str(Path(path).parent), str(path))
            if len(sample) >= 16:
                break
        if not sample:
            return
        task = self.ray.remote(num_cpus=0)(check_paths)
        refs = {
            n["NodeManagerAddress"]: task.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(list(sample.values()))
            for n in self.nodes()
        }
        for ip, ref in refs.items():
            host, missing = self.ray.get(ref)
            if missing:
                raise ClusterError(
                    f"node {host} ({ip}) cannot read the photos: {'; '.join(missing[:3])}; the photos must be on "
                    "storage every node mounts at the same path (NFS, SMB, a cluster file system)"
                )

    def start_actors(self) -> None:
        """The model actors and the writer actors of each node that has model actors (:mod:`.sizing`); each must
        have the driver's analyzers and writers (the same fingerprints), else a :class:`ClusterError` naming it."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = self.nodes()
        specs = plan_actors(nodes, self.cpus_per_actor)
        if not specs:
            raise ClusterError(f"the Ray cluster at {self.address} has no node with a CPU to run models on")
        config = self.pipeline.config
        retried = {"max_restarts": MAX_RETRIES, "max_task_retries": MAX_RETRIES}
        models = self.ray.remote(ModelWorker)
        for spec in specs:
            handle = models.options(
                num_cpus=spec.num_cpus,
                num_gpus=spec.num_gpus,
                scheduling_strategy=NodeAffinitySchedulingStrategy(spec.node_id, soft=True),
                **retried,
            ).remote(config, spec.threads)
            self.actors.append(_Actor(spec, handle))
        writers = self.ray.remote(WriterWorker)
        for node_id, count in plan_writers(nodes, specs).items():
            # no CPU reserved: writing is I/O and exiftool, and must not wait behind the models
            self.writers[node_id] = [
                writers.options(
                    num_cpus=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True),
                    **retried,
                ).remote(config)
                for _ in range(count)
            ]
        fingerprints = self.pipeline.fingerprints()
        mine = self.pipeline.runtime.fingerprints()
        written_by = {k: v for k, v in fingerprints.items() if k.startswith("writer:")}
        handles = [(a.handle, mine, "analyzers") for a in self.actors]
        handles += [(w, written_by, "writers") for ws in self.writers.values() for w in ws]
        infos = self.ray.get([h.describe.remote() for h, _, _ in handles])
        for actor, info in zip(self.actors, infos, strict=False):
            actor.info = info
        for (_, want, what), info in zip(handles, infos, strict=True):
            if info["fingerprints"] != want:
                raise ClusterError(
                    f"the Ray worker on {info['host']} has other {what} or versions than this driver "
                    f"({sorted(info['fingerprints'])} vs {sorted(want)}): install the same phototag, plugins and "
                    "models on every node"
                )
        log.info(
            "%d model actor(s) on %d node(s)", len(self.actors), len({a.spec.node_id for a in self.actors})
        )

    def close(self) -> None:
        for handle in [a.handle for a in self.actors] + [w for ws in self.writers.values() for w in ws]:
            try:
                self.ray.kill(handle)
            except Exception as e:  # already gone
                log.debug("actor not killed: %s", e)
        self.actors = []
        self.writers = {}

    # -- the run ---------------------------------------------------------------------------------------------

    def run(
        self,
        paths: Iterable[Path],
        *,
        force: bool = False,
        dry_run: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> Summary:
        """Every path processed once, as :meth:`Pipeline.run` would; outcomes as the batches finish."""
        summary = Summary()
        start = time.monotonic()
        pipeline = self.pipeline

        def emit(outcomes: Iterable[Outcome]) -> None:
            for outcome in outcomes:
                summary.add(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)

        fingerprints = pipeline.fingerprints(refresh=True)
        done = None if force else pipeline.done_folders()
        read = self.ray.remote(num_cpus=DECODE_CPUS, max_retries=MAX_RETRIES)(hash_batch)
        decode = self.ray.remote(num_cpus=DECODE_CPUS, max_retries=MAX_RETRIES)(decode_batch)
        settings = self.ray.put(pipeline.config.image)
        size = pipeline.config.batch_size
        reading: deque[tuple[list[Item], Any]] = deque()  # batches whose hash task was submitted
        flying: dict[Any, _Batch] = {}  # batches being decoded and analysed, or written

        def limit() -> int:
            return IN_FLIGHT_PER_ACTOR * max(len(self.actors), 1)

        def analysing() -> int:
            return sum(1 for b in flying.values() if b.results is None)

        def advance() -> None:
            """Plan the oldest batch that was read, and send what needs a model to an actor."""
            emit(self._collect(flying, dry_run, block=False))
            items, ref = reading.popleft()
            for item, photo in zip(items, self._read(ref, items), strict=True):
                if isinstance(photo, Outcome):
                    item.outcome = photo
                else:
                    pipeline.plan(item, photo, fingerprints, force=force)
            pipeline.claim(items)
            remote = [i for i in items if i.outcome is None and i.todo]
            local = [i for i in items if i.outcome is not None or not i.todo]
            if local:  # finished early, or every result cached: straight to the write stage
                emit(self._write(local, -1, flying, dry_run))
            for first in range(0, len(remote), size):  # the model batches: the local scan's size
                while analysing() >= limit() or len(flying) >= 2 * limit():
                    emit(self._collect(flying, dry_run))
                ref, batch = self._submit(remote[first : first + size], decode, settings)
                flying[ref] = batch

        def push(items: list[Item]) -> None:
            if not self.actors:  # the first photo that needs reading: check the cluster, start the actors
                self.check_storage([i.path for i in items])
                self.start_actors()
            while len(reading) >= limit():
                advance()
            reading.append((items, read.remote([str(i.path) for i in items])))

        current: list[Item] = []
        try:
            for given in paths:
                path = Path(given)
                if done is not None and done.is_done(path):  # the re-scan's fast path: a lookup and a stat
                    emit([Outcome(path, "skipped", "already done with the same models")])
                    continue
                item = pipeline.check(path, fingerprints, force=force)
                if item.outcome is not None:
                    emit([item.outcome])
                    continue
                current.append(item)
                if len(current) >= size * READ_BATCHES:
                    push(current)
                    current = []
            if current:
                push(current)
            while reading:
                advance()
            while flying:
                emit(self._collect(flying, dry_run))
            emit(pipeline.rewrites(dry_run))  # asked for by library analyzers: written here, from cache
        finally:
            self.close()
        summary.seconds = time.monotonic() - start
        return summary

    def _read(self, ref: Any, items: list[Item]) -> list[Photo | Outcome]:
        """The hash task's answer for ``items``; a task that failed more than :data:`MAX_RETRIES` times is a
        transient failure of each photo, named."""
        try:
            return list(self.ray.get(ref))
        except self.ray.exceptions.RayError as e:
            return [Outcome(item.path, "failed", _lost(item.path, "reading", e), True) for item in items]

    def _submit(self, items: list[Item], decode: Any, settings: Any) -> tuple[Any, _Batch]:
        """Send a model batch to the least busy actor (decoded by a task first): its ``ref`` and the batch."""
        jobs = []
        for item in items:
            assert item.photo is not None
            names = tuple(a.name for a in item.todo)
            jobs.append(Job(item.photo, names, max(a.input_size for a in item.todo)))
        index = min(range(len(self.actors)), key=lambda k: self.actors[k].busy)
        actor = self.actors[index]
        actor.busy += 1
        pixels = decode.remote(jobs, settings)
        return actor.handle.analyze.remote(jobs, pixels), _Batch(items, index)

    def _write(
        self, items: list[Item], actor: int, flying: dict[Any, _Batch], dry_run: bool
    ) -> list[Outcome]:
        """The write stage of a batch: its open items' results (with the library analyzers' contributions,
        made here) go to the writer actor on the node of model actor ``actor`` (any, for -1); the outcomes come
        when :meth:`_collect` records them. A dry run writes nothing: its outcomes are returned now."""
        pipeline = self.pipeline
        live = [i for i in items if i.outcome is None]
        if not live or dry_run:
            for item in live:
                item.outcome = pipeline.record(item, pipeline.result(item), Written("dry-run"))
            return pipeline.settle(items, dry_run)
        results = [pipeline.result(item) for item in live]
        if actor >= 0:  # the node that read the photos
            handles = self.writers[self.actors[actor].spec.node_id]
        else:
            handles = [w for ws in self.writers.values() for w in ws]
        writer = handles[self._next_writer % len(handles)]
        self._next_writer += 1
        flying[writer.write.remote(results)] = _Batch(items, actor, results)
        return []

    def _collect(self, flying: dict[Any, _Batch], dry_run: bool, block: bool = True) -> list[Outcome]:
        """Take one batch in flight that is done (waiting for one, unless ``block`` is False): an analysed batch
        goes on to its write stage, a written one is recorded and its outcomes returned."""
        if not flying:
            return []
        ready, _ = self.ray.wait(list(flying), num_returns=1, timeout=None if block else 0)
        if not ready:
            return []
        batch = flying.pop(ready[0])
        if batch.results is not None:
            return self._record(batch, ready[0])
        self.actors[batch.actor].busy -= 1
        try:
            analysed: list[Analysed] = self.ray.get(ready[0])
        except self.ray.exceptions.RayError as e:
            for item in batch.items:
                item.outcome = Outcome(item.path, "failed", _lost(item.path, "analysing", e), True)
            return self.pipeline.settle(batch.items, dry_run)
        pipeline = self.pipeline
        fingerprints = pipeline.fingerprints()
        for item, result in zip(batch.items, analysed, strict=True):
            if result.error is not None:
                item.outcome = Outcome(item.path, "failed", result.error)
                continue
            item.width, item.height = result.width, result.height
            for analyzer in item.todo:
                analysis, error, seconds = (result.runs or {}).get(analyzer.name, (None, "not run", 0.0))
                item.runs[analyzer.name] = AnalyzerRun(
                    analyzer.name,
                    analyzer.task,
                    pipeline.runtime.model_info(analyzer.name),
                    fingerprints[analyzer.name],
                    analysis,
                    error,
                    seconds if error is None else 0.0,
                )
        return self._write(batch.items, batch.actor, flying, dry_run)

    def _record(self, batch: _Batch, ref: Any) -> list[Outcome]:
        """Record what the writer actor wrote (the driver alone writes the state DB); a writer actor that died
        more than :data:`MAX_RETRIES` times is a transient failure of each of its photos, named."""
        pipeline = self.pipeline
        live = [i for i in batch.items if i.outcome is None]
        assert batch.results is not None
        try:
            written: list[Written] = self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            written = [Written("failed", message=_lost(i.path, "writing", e), transient=True) for i in live]
        for item, result, done in zip(live, batch.results, written, strict=True):
            item.outcome = pipeline.record(item, result, done)
        return pipeline.settle(batch.items, dry_run=False)
