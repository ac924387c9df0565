"""How many model actors each node gets, and how much of it they hold: pure, from the nodes' resources.

Measured before (issue 14, ray 2.60 on 2 cores): actors that take every CPU starve the read/decode stage
silently. So every node keeps a share of its CPUs for decode tasks (:data:`DECODE_SHARE`, at least one
decode task's worth, :data:`DECODE_CPUS`), and the actors split the rest: one actor per GPU (a GPU actor needs
little CPU: the model runs on the GPU, decode is the limit), else one actor per :data:`CPUS_PER_ACTOR` CPUs
(at least one per node). Each actor runs torch with as many threads as the CPUs it holds.

Writer actors (the metadata writes, where the photos are) hold no CPU: writing is file I/O and exiftool's own
process, and must not queue behind the models. One per :data:`CPUS_PER_WRITER` CPUs of each node that
analyses (at least one), because one writer writes one photo at a time (bench/cluster_bench.py measures a
JSON + XMP write at tens of milliseconds, mostly exiftool: one writer alone would cap a GPU node).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CPUS_PER_ACTOR = 4.0
"""CPUs per model actor on a node without GPUs (batched CPU inference stops scaling past a few threads)."""
DECODE_CPUS = 0.5
"""Ray CPUs one decode task asks for (decode is one thread; half a CPU lets two run beside I/O waits)."""
DECODE_SHARE = 0.25
"""The share of each node's CPUs kept free of actors, for decode tasks."""
CPUS_PER_WRITER = 4.0
"""A writer actor per this many CPUs of a node (at least one per node that analyses)."""


@dataclass(frozen=True)
class ActorSpec:
    """One model actor: the node it is placed on and what it holds there."""

    node_id: str
    node_ip: str
    num_cpus: float
    num_gpus: float
    threads: int


def plan_actors(
    nodes: Iterable[Mapping[str, Any]], cpus_per_actor: float = CPUS_PER_ACTOR
) -> list[ActorSpec]:
    """The actors for ``nodes`` (``ray.nodes()`` entries: ``NodeID``, ``NodeManagerAddress``, ``Alive``,
    ``Resources``). A node with no CPU gets none; dead nodes are left out."""
    specs: list[ActorSpec] = []
    for node in nodes:
        if not node.get("Alive", False):
            continue
        resources = node.get("Resources", {})
        cpus = float(resources.get("CPU", 0.0))
        gpus = int(resources.get("GPU", 0))
        if cpus <= 0:
            continue
        free = cpus - max(DECODE_CPUS, cpus * DECODE_SHARE)
        node_id, ip = str(node["NodeID"]), str(node.get("NodeManagerAddress", ""))
        if gpus > 0:
            each = max(0.1, min(1.0, free / gpus))
            specs += [ActorSpec(node_id, ip, round(each, 2), 1.0, max(1, int(each))) for _ in range(gpus)]
            continue
        count = max(1, int(cpus // cpus_per_actor))
        each = max(0.1, free / count)
        specs += [ActorSpec(node_id, ip, round(each, 2), 0.0, max(1, round(each))) for _ in range(count)]
    return specs


def plan_writers(
    nodes: Iterable[Mapping[str, Any]], specs: Iterable[ActorSpec], cpus_per_writer: float = CPUS_PER_WRITER
) -> dict[str, int]:
    """Node ID -> how many writer actors it gets: the nodes that have model actors (``specs``), one writer per
    ``cpus_per_writer`` of their CPUs, at least one."""
    analysing = {spec.node_id for spec in specs}
    out: dict[str, int] = {}
    for node in nodes:
        node_id = str(node.get("NodeID"))
        if node_id in analysing:
            cpus = float(node.get("Resources", {}).get("CPU", 0.0))
            out[node_id] = max(1, int(cpus // cpus_per_writer))
    return out
