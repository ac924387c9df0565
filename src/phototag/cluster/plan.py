"""The driver's prepare stage: the local pipeline's decisions for one photo, with the reading left to workers.

What needs work is decided exactly as :meth:`phototag.pipeline.Pipeline._prepare_one` decides it (stat; done
with the same fingerprints -> skipped; cached results by content hash, else in the JSON sidecar; a claim so
that no other phototag process analyses the photo), on the pipeline's own ``_Item``, so that the pipeline's
write stage can take the item afterwards. Two things are left out, because they read every byte of the photo
and a single driver would be the whole cluster's limit (bench/cluster_bench.py: hashing a 12 MP JPEG costs the
driver more CPU than everything else it does for a photo): the content hash, which a worker computes
(:func:`phototag.cluster.remote.hash_batch`) and hands to :func:`plan_item`, and the decode
(:func:`phototag.cluster.remote.decode_batch`). A photo whose every result is cached needs only its size,
which the driver reads from the header, as the local pipeline does.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FileError, display
from ..images import photo_dimensions
from ..outcomes import Outcome
from ..pipeline import Pipeline, _failed_io, _Item
from ..types import Photo

Unread = tuple[str, bool]
"""A photo a worker could not read: the message naming it, and whether that is transient."""


def check_item(pipeline: Pipeline, path: Path, force: bool, fingerprints: dict[str, str]) -> _Item:
    """The stat-only part: an item finished early (``outcome``: skipped, or failed to stat) or still open."""
    item = _Item(Path(path))
    pipeline._clean_once(item.path.parent)
    try:
        st = os.stat(item.path)
    except FileNotFoundError:
        item.outcome = Outcome(
            item.path, "failed", f"{display(item.path)}: file vanished before it was read", True
        )
        return item
    except OSError as e:
        item.outcome = _failed_io(item.path, e, "reading")
        return item
    if not force and pipeline._done(item.path, st, fingerprints):
        item.outcome = Outcome(item.path, "skipped", "already done with the same models")
        return item
    item.known = pipeline.state.file_record(item.path) is not None
    return item


def plan_item(
    pipeline: Pipeline, item: _Item, read: Photo | Unread, force: bool, fingerprints: dict[str, str]
) -> None:
    """Complete ``item`` with what a worker read (``read``: the photo with its content hash, or why it could
    not be read): its cached results and the analyzers still to run in ``todo`` (then claim it with
    :func:`claim_items`), or its size when every result is cached."""
    if not isinstance(read, Photo):
        message, transient = read
        item.outcome = Outcome(item.path, "failed", message, transient)
        return
    item.photo = read
    pipeline.plan_runs(item, read, force, fingerprints)
    if item.todo:
        return  # claimed with its batch: claim_items
    try:
        item.width, item.height = photo_dimensions(item.path)
    except FileError as e:
        item.outcome = Outcome(item.path, "failed", str(e))
    except OSError as e:
        item.outcome = _failed_io(item.path, e, "decoding")


def claim_items(pipeline: Pipeline, items: list[_Item]) -> None:
    """Claim the items that still need a model, in one transaction for the batch (the local pipeline's claim,
    per photo there); one that another live phototag process holds is skipped, naming that process."""
    wanted = [i for i in items if i.outcome is None and i.todo]
    if not wanted:
        return
    held = pipeline.claims.claim([i.path for i in wanted])
    for item in wanted:
        other = held.get(item.path)
        if other is None:
            item.claimed = True
        else:
            item.outcome = Outcome(
                item.path,
                "skipped",
                f"being analysed by another phototag process (pid {other.pid} on {other.host})",
            )
