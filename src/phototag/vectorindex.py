"""A nearest-neighbour index over the stored embeddings, kept beside the state DB, so that ``search`` and
``similar`` answer in milliseconds at a million photos.

Why usearch (HNSW) and not a flat scan: at 1,000,000 x 512-d float32 vectors an exact numpy scan reads 2 GB
per query (about 100 ms on two cores, 5 GB at 1280-d); the HNSW graph answers in about a millisecond
(``bench/index_bench.py`` measures both, and recall@10 against the exact scan, in one run). The graph holds
int8 vectors after cosine normalisation (a quarter of float32's memory, and on this CPU about 3x faster to
build than float16); int8 alone capped recall@10 at 0.948 in the benchmark, whatever the search effort,
because quantisation blurs the order of close neighbours. So the graph is asked for 4x the results and those
are re-ranked with the exact float32 vectors from the state DB (a few rows by primary key). Below
:data:`EXACT_BELOW` vectors the index is a plain numpy matrix searched exactly (cheaper to build than a
graph, and exact).

Keys: the first 63 bits of a photo's content hash (BLAKE2b-128 hex), so the index needs no key table of its
own; :meth:`VectorIndex.sync` brings it up to date with the ``(content_hash, vector)`` rows of one embedding
model, adding and removing only what changed. Files: ``<state db>.<model fingerprint>.usearch`` plus a
``.keys.npy`` listing the hashes it holds (written through a temp file and ``os.replace``: a crash leaves the
old pair or the new one; a pair that does not match is rebuilt).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXACT_BELOW = 20_000
"""Fewer vectors than this: exact numpy search (a few ms at 20k x 1280-d), no graph."""
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH = 64
RERANK = 4
"""With exact vectors at hand, the graph is asked for this many times the wanted results, re-ranked exactly."""


def _usearch_index() -> Any:
    """usearch's ``Index`` class. onnxruntime (OCR, the ONNX backends) is imported first when installed:
    with usearch 2.26 and onnxruntime 1.x, importing onnxruntime *after* usearch's compiled module crashes
    the process (segmentation fault, reproduced with the two imports alone); the other order works."""
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401
    from usearch.index import Index

    return Index


def key_of(content_hash: str) -> int:
    """The index key of a content hash: its first 63 bits (collisions at 1M photos: ~1e-7)."""
    return int(content_hash[:16], 16) & 0x7FFF_FFFF_FFFF_FFFF


def index_path(state_db: Path, model: str) -> Path:
    """Where the index of embedding model ``model`` (an embed fingerprint) lives: beside the state DB."""
    return Path(f"{state_db}.{model}.usearch")


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


class VectorIndex:
    """Cosine nearest neighbours by content hash: exact below :data:`EXACT_BELOW` vectors, HNSW above."""

    def __init__(self, ndim: int, exact_below: int = EXACT_BELOW) -> None:
        self.ndim = ndim
        self.exact_below = exact_below
        self._hashes: dict[int, str] = {}  # key -> content hash
        self._exact: dict[int, np.ndarray] = {}  # key -> unit vector, while small
        self._graph: object | None = None  # usearch Index once large
        self._matrix: tuple[list[int], np.ndarray] | None = None  # the exact vectors stacked, until a change

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, content_hash: str) -> bool:
        return key_of(content_hash) in self._hashes

    @property
    def hashes(self) -> set[str]:
        return set(self._hashes.values())

    @property
    def is_graph(self) -> bool:
        return self._graph is not None

    # -- changes ------------------------------------------------------------------------------------------------

    def add(self, hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Add (or replace) these vectors. Vectors of another dimension are a ValueError."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(hashes), -1)
        if len(hashes) and vectors.shape[1] != self.ndim:
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions; this index holds {self.ndim}")
        keys = np.array([key_of(h) for h in hashes], dtype=np.uint64)
        present = [h for h in hashes if h in self]
        if present:
            self.remove(present)
        units = _normalised(vectors)
        self._matrix = None
        self._hashes.update(zip(keys.tolist(), hashes, strict=True))
        if self._graph is None:
            self._exact.update(zip(keys.tolist(), units, strict=True))
            if len(self._exact) >= self.exact_below:
                self._to_graph()
        elif len(keys):
            self._graph.add(keys, units, threads=os.cpu_count() or 1)  # type: ignore[attr-defined]

    def remove(self, hashes: Iterable[str]) -> None:
        keys = [key_of(h) for h in hashes if h in self]
        self._matrix = None
        for key in keys:
            del self._hashes[key]
            self._exact.pop(key, None)
        if self._graph is not None and keys:
            self._graph.remove(np.array(keys, dtype=np.uint64))  # type: ignore[attr-defined]

    def sync(
        self, wanted: Iterable[str], vectors_of: Callable[[list[str]], np.ndarray], batch: int = 10_000
    ) -> tuple[int, int]:
        """Make the index hold exactly the hashes in ``wanted``; ``vectors_of(hashes)`` loads the vectors of
        the ones it lacks. Returns (added, removed)."""
        want = set(wanted)
        have = self.hashes
        gone = have - want
        new = sorted(want - have)
        self.remove(gone)
        for start in range(0, len(new), batch):
            chunk = new[start : start + batch]
            self.add(chunk, vectors_of(chunk))
        return len(new), len(gone)

    def _to_graph(self) -> None:
        graph = _usearch_index()(
            ndim=self.ndim,
            metric="cos",
            dtype="i8",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )
        if self._exact:
            keys = np.fromiter(self._exact, dtype=np.uint64, count=len(self._exact))
            graph.add(keys, np.stack(list(self._exact.values())), threads=os.cpu_count() or 1)
        self._graph, self._exact = graph, {}

    # -- queries ------------------------------------------------------------------------------------------------

    def search(
        self,
        query: np.ndarray,
        limit: int,
        vectors_of: Callable[[list[str]], np.ndarray] | None = None,
    ) -> list[tuple[str, float]]:
        """The ``limit`` nearest photos to ``query`` as ``(content_hash, cosine similarity)``, best first.

        ``vectors_of(hashes)`` (the float32 vectors, e.g. from the state DB) re-ranks the graph's
        :data:`RERANK` x ``limit`` best candidates exactly: int8 distances find the neighbours, but order them
        only roughly."""
        q = np.asarray(query, dtype=np.float32).ravel()
        if q.size != self.ndim or limit <= 0 or not self._hashes or not np.any(q):
            return []
        q = _normalised(q)
        if self._graph is None:
            if self._matrix is None:
                order = list(self._exact)
                self._matrix = (order, np.stack([self._exact[k] for k in order]))
            keys, matrix = self._matrix
            scores = matrix @ q
            n = min(limit, len(keys))
            top = np.argpartition(-scores, n - 1)[:n] if n < len(keys) else np.arange(len(keys))
            order = sorted(top.tolist(), key=lambda i: (-float(scores[i]), self._hashes[keys[i]]))
            return [(self._hashes[keys[i]], float(scores[i])) for i in order]
        wanted = limit * RERANK if vectors_of is not None else limit
        found = self._graph.search(q, min(wanted, len(self._hashes)))  # type: ignore[attr-defined]
        out = []
        for key, distance in zip(found.keys.tolist(), found.distances.tolist(), strict=True):
            content_hash = self._hashes.get(int(key))
            if content_hash is not None:
                out.append((content_hash, 1.0 - float(distance)))
        if vectors_of is not None and out:
            exact = _normalised(vectors_of([h for h, _ in out])) @ q
            out = sorted(
                ((h, float(score)) for (h, _), score in zip(out, exact, strict=True)), key=lambda x: -x[1]
            )
        return out[:limit]

    def search_many(self, queries: np.ndarray, limit: int) -> list[list[str]]:
        """The ``limit`` nearest content hashes of each query row, in one batch (blocked matrix products
        while exact, the graph's multi-threaded batch search above): for finding duplicates across the whole
        library, where one query at a time would cost n scans."""
        q = _normalised(np.asarray(queries, dtype=np.float32).reshape(-1, self.ndim))
        if not self._hashes or limit <= 0 or not len(q):
            return [[] for _ in range(len(q))]
        n = min(limit, len(self._hashes))
        if self._graph is None:
            if self._matrix is None:
                order = list(self._exact)
                self._matrix = (order, np.stack([self._exact[k] for k in order]))
            keys, matrix = self._matrix
            out = []
            for start in range(0, len(q), 1024):
                scores = q[start : start + 1024] @ matrix.T
                top = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n < len(keys) else None
                for row in range(len(scores)):
                    idx = top[row] if top is not None else np.arange(len(keys))
                    out.append([self._hashes[keys[i]] for i in idx])
            return out
        found = self._graph.search(q, n, threads=os.cpu_count() or 1)  # type: ignore[attr-defined]
        keys_2d = np.asarray(found.keys).reshape(len(q), -1)
        return [[self._hashes[int(k)] for k in row if int(k) in self._hashes] for row in keys_2d]

    # -- files --------------------------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the index (and the list of hashes it holds) atomically: temp files, then ``os.replace``."""
        path = Path(path)
        keys_path = path.with_name(path.name + ".keys.npy")
        hashes = np.array(sorted(self._hashes.values()), dtype="U32")
        tmp_keys = keys_path.with_name(keys_path.name + ".tmp.npy")
        np.save(tmp_keys, hashes)
        tmp = path.with_name(path.name + ".tmp")
        if self._graph is not None:
            self._graph.save(str(tmp))  # type: ignore[attr-defined]
        else:
            rows = [self._exact[key_of(str(h))] for h in hashes]  # in the order of the saved hash list
            matrix = np.stack(rows) if rows else np.zeros((0, self.ndim), np.float32)
            with open(tmp, "wb") as f:
                np.save(f, matrix.astype(np.float32))
        # the hash list is replaced last: a crash in between leaves a pair that load() refuses, then rebuilds
        os.replace(tmp, path)
        os.replace(tmp_keys, keys_path)

    @classmethod
    def load(cls, path: Path, ndim: int, exact_below: int = EXACT_BELOW) -> VectorIndex | None:
        """The index saved at ``path``, or None when it is missing, of another dimension or inconsistent
        (the caller rebuilds it from the state DB)."""
        path = Path(path)
        keys_path = path.with_name(path.name + ".keys.npy")
        try:
            hashes = [str(h) for h in np.load(keys_path)]
            index = cls(ndim, exact_below)
            index._hashes = {key_of(h): h for h in hashes}
            with open(path, "rb") as f:
                magic = f.read(6)
            if magic == b"\x93NUMPY":
                matrix = np.load(path)
                if matrix.shape != (len(hashes), ndim):
                    return None
                index._exact = {key_of(h): v for h, v in zip(hashes, matrix, strict=True)}
            else:
                graph = _usearch_index().restore(
                    str(path),
                    view=False,
                    connectivity=CONNECTIVITY,
                    expansion_add=EXPANSION_ADD,
                    expansion_search=EXPANSION_SEARCH,
                )
                if graph is None or graph.ndim != ndim or len(graph) != len(hashes):
                    return None
                index._graph = graph
            return index
        except (OSError, ValueError, RuntimeError):
            return None
