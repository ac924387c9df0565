"""The cluster runner: ``phototag scan PATH --ray ADDRESS`` on a Ray cluster, with the local scan's guarantees.

Who does what (one driver, many workers; Ray is an optional extra, imported only here):

* **driver** (the ``phototag scan`` process, :mod:`.runner`): walks the tree and decides what needs work
  through the local pipeline's own public stages (:meth:`~phototag.pipeline.Pipeline.check`, ``plan``,
  ``claim``: the same state DB, fingerprints, cache, sidecar recovery and claims), sends each batch out, adds
  what library analyzers contribute, and alone writes the state DB (``record``, ``settle``);
* **read tasks** (:mod:`.remote`): hash and decode batches (the local scan's own ``read_photo`` and safe
  decode) where a CPU is free; a photo that cannot be read is a result (an error naming the file), never a
  task failure;
* **model actors** (:mod:`.remote`): one per GPU, or per :data:`.sizing.CPUS_PER_ACTOR` CPUs of a node, leaving
  CPUs to the read tasks (:mod:`.sizing`), each holding an :class:`~phototag.runtime.AnalyzerRuntime`;
* **writer actors** (:mod:`.remote`): one per node with model actors, writing the metadata where the photos are
  (:func:`phototag.pipeline.write_photo`: folder lock, "changed since planned" check, each writer in its own
  error boundary) and returning what they wrote (stat, hash, files) for the driver to record. Ray restarts an
  actor that dies and retries its batch (the writes are idempotent, so at-least-once is safe);
* **below** :data:`.runner.MIN_PHOTOS` photos to analyse Ray does not pay off (bench/cluster_bench.py): the
  local runner is used and the CLI says so.
"""

from __future__ import annotations

from .runner import MIN_PHOTOS, choose_runner

__all__ = ["MIN_PHOTOS", "choose_runner"]
