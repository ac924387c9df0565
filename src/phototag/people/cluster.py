"""Who a face is: the incremental clustering rule, pure (numpy in, decisions out).

A face is compared with every stored face by Euclidean distance between descriptors (dlib's 128-d ResNet
descriptor: same person typically below 0.5, different people above 0.6; dlib's published operating point
is 0.6, 99.38 % on LFW). For each person, the distance that counts is the one to that person's **nearest**
face, not to the centroid of their faces:

* the 0.6 operating point is a pairwise distance; a centroid is closer to everything than any real face is
  (averaging shrinks the spread), so a centroid rule would need a threshold of its own that nobody measured;
* a person's faces are several looks (young and old, glasses, profile): the nearest face keeps each look,
  the centroid blurs them into one that may match none;
* what nearest-face (single-link) rules are known for, chaining two people together through a string of
  in-between faces, is what the margin stops: a face joins a person only when it is closer than
  ``threshold - margin`` **and** at least ``margin`` closer to that person than to anyone else. A face near
  two people, or near one but not clearly, stays unassigned ("ambiguous"), and no face ever merges two
  clusters.

A face that matches nobody is grouped with the unassigned faces within ``threshold - margin`` of it: a new,
unnamed person (two faces at least: a lone face is not a person to suggest). Faces are decided one at a
time, in arrival order, each against everything decided before it, so the same photos in the same order give
the same people, and a batch clusters the same as its photos one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

UNASSIGNED = -1
"""Owner of a stored face that belongs to no person."""


@dataclass(frozen=True)
class Decision:
    """Where one face goes: ``person`` (None: nobody), ``distance`` to that person's nearest face (or to the
    nearest person when unassigned; None when there is none), ``ambiguous``: some person is within the
    threshold but not confidently."""

    person: int | None
    distance: float | None
    ambiguous: bool = False


def per_person(vector: np.ndarray, vectors: np.ndarray, owners: np.ndarray) -> dict[int, float]:
    """Each person's nearest-face distance to ``vector`` (faces owned by :data:`UNASSIGNED` left out)."""
    import numpy as np

    if len(vectors) == 0:
        return {}
    dist = np.linalg.norm(vectors - vector[None, :], axis=1)
    out: dict[int, float] = {}
    for owner, d in zip(owners.tolist(), dist.tolist(), strict=True):
        if owner != UNASSIGNED and d < out.get(owner, np.inf):
            out[owner] = d
    return out


def decide(
    vector: np.ndarray, vectors: np.ndarray, owners: np.ndarray, threshold: float, margin: float
) -> Decision:
    """The person ``vector`` confidently belongs to among the stored faces (``vectors``, ``owners``)."""
    import numpy as np

    near = sorted(per_person(vector, vectors, owners).items(), key=lambda kv: kv[1])
    if not near:
        return Decision(None, None)
    best, d1 = near[0]
    d2 = near[1][1] if len(near) > 1 else np.inf
    if d1 <= threshold - margin and d2 - d1 >= margin:
        return Decision(best, float(d1))
    return Decision(None, float(d1), ambiguous=d1 < threshold)


@dataclass
class Clustering:
    """Stored faces as arrays (``owners``: person id or :data:`UNASSIGNED`), extended face by face.
    ``make()`` creates a new unnamed person and returns its id. ``moved`` lists the stored rows whose person
    changed here (key, person, distance), for the caller to save."""

    vectors: np.ndarray
    owners: np.ndarray
    threshold: float
    margin: float
    make: Callable[[], int]
    keys: list[object] = field(default_factory=list)
    """What each row is to the caller (a face's key); rows added by :meth:`add` get theirs."""
    locked: set[int] = field(default_factory=set)
    """Rows whose person the user decided (a named region): never regrouped."""
    moved: list[tuple[object, int, float]] = field(default_factory=list)

    @classmethod
    def of(
        cls, vectors: Sequence[np.ndarray], owners: Sequence[int | None], keys: Sequence[object],
        threshold: float, margin: float, make: Callable[[], int], locked: Sequence[int] = (),
    ) -> Clustering:  # fmt: skip
        import numpy as np

        dim = len(vectors[0]) if len(vectors) else 128
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)
        owned = np.asarray([UNASSIGNED if o is None else o for o in owners], dtype=np.int64)
        return cls(matrix, owned, threshold, margin, make, list(keys), set(locked))

    def decide(self, vector: np.ndarray) -> Decision:
        """:func:`decide` against every face so far, without adding it."""
        import numpy as np

        return decide(
            np.asarray(vector, np.float32).ravel(), self.vectors, self.owners, self.threshold, self.margin
        )

    def relabel(self, old: int, new: int) -> None:
        """Person ``old`` became ``new`` (merged)."""
        self.owners[self.owners == old] = new

    def add(self, key: object, vector: np.ndarray, person: int | None = None) -> Decision:
        """Decide a new face (or place it with ``person``, the user's word) and remember it."""
        import numpy as np

        vector = np.asarray(vector, dtype=np.float32).ravel()
        if person is not None:
            decision = Decision(person, self._distance_to(vector, person))
        else:
            decision = decide(vector, self.vectors, self.owners, self.threshold, self.margin)
        owner = UNASSIGNED if decision.person is None else decision.person
        if decision.person is None and not decision.ambiguous:
            owner = self._group(vector, owner)
            if owner != UNASSIGNED:
                decision = Decision(owner, self._distance_to(vector, owner))
        self.vectors = np.vstack([self.vectors, vector[None, :]]) if len(self.vectors) else vector[None, :]
        self.owners = np.append(self.owners, owner)
        self.keys.append(key)
        if person is not None:
            self.locked.add(len(self.keys) - 1)
        return decision

    def _distance_to(self, vector: np.ndarray, person: int) -> float | None:
        return per_person(vector, self.vectors, self.owners).get(person)

    def _group(self, vector: np.ndarray, owner: int) -> int:
        """A new unnamed person of ``vector`` and the unassigned faces close to it, or UNASSIGNED."""
        import numpy as np

        if not len(self.vectors):
            return owner
        dist = np.linalg.norm(self.vectors - vector[None, :], axis=1)
        close = np.flatnonzero((self.owners == UNASSIGNED) & (dist <= self.threshold - self.margin))
        close = np.asarray([i for i in close.tolist() if i not in self.locked], dtype=np.int64)
        if not len(close):
            return owner
        new = self.make()
        self.owners[close] = new
        self.moved += [(self.keys[i], new, float(dist[i])) for i in close.tolist()]
        return new
