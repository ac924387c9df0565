"""The ``people`` library analyzer: faces recognised across the library, names learned from the user's own.

It rides on the pipeline's cross-photo hook (:class:`phototag.types.LibraryAnalyzer`), so ``scan`` and the
daemon do the same thing as photos arrive:

* :meth:`PeopleAnalyzer.contribute` (every photo written, dry runs too: it only reads) says who each face is
  now: stored faces by their stored person; a new photo's faces by the clustering rule against the people
  known so far (so a new photo of a named person is named on arrival). A known person's face comes back as the
  detector's box with the ``name`` (:mod:`phototag.xmpdesired` writes it as the region's Name,
  ``PersonInImage`` and ``People|<name>``); every face, with box, landmarks, quality, cluster id, name and
  distance, goes to ``extra["people"]`` (the JSON sidecar).
* :meth:`PeopleAnalyzer.update` (after each batch) stores the new faces, learns the names the user gave in
  their own metadata, clusters (:mod:`phototag.people.cluster`) and names the photos done earlier whose
  people changed, which the pipeline writes again from cache.

Faces come from the analyzer whose result carries ``extra["faces"]`` with descriptors (task
``face-identity``): ``[{"box": [x, y, w, h], "score", "landmarks", "quality", "descriptor": [128 floats],
"model"}]``, in the order of its face regions.

Names the user gave: a face region (``mwg-rs``, Type Face) with a Name that phototag did not write
(digiKam, Lightroom, Picasa, Immich, any MWG writer), in the photo or its XMP sidecar, read through the XMP
writer (:meth:`phototag.plugins.xmp.XmpWriter.user_faces`, the rule it uses to leave them alone). A detected
face it covers (:func:`phototag.xmpdesired.same_face`) is that person for good: it seeds an unnamed cluster
(the cluster gets the name), joins the person of that name, or, when clustering had put it with someone
else, moves (the user corrects). phototag never writes over it: such a face gets no region of phototag's.

Why one module of ~500 lines: ``contribute`` and ``update`` must apply the same rule to the same faces (who a
face is now, which names are the user's, which photos change); split, the two halves would drift apart. The
rule itself is pure and lives in :mod:`phototag.people.cluster`, the tables in :mod:`phototag.people.store`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import Field

from ..config import Config, PluginSettings
from ..types import Analysis, AnalyzerRun, Library, PhotoResult, Region, fingerprint_of
from ..xmpdesired import Box, iou, same_face
from .cluster import Clustering, Decision, decide
from .store import Face, PeopleStore

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

NAME = "people"
USER_IDX = 10_000
"""Faces the user named where no face was detected are stored from this index on."""


class PeopleSettings(PluginSettings):
    threshold: float = Field(0.6, gt=0.0, le=2.0)
    """Descriptor distance below which two faces are the same person (dlib's measured operating point: 0.6,
    99.38 % on LFW; the same person typically scores below 0.5, two people above 0.6)."""
    margin: float = Field(0.05, ge=0.0, lt=0.5)
    """How clearly a face must match: closer than ``threshold - margin`` to a person's nearest face and at
    least ``margin`` closer to them than to anyone else; otherwise it stays unassigned (ambiguous)."""
    min_quality: float = Field(0.0, ge=0.0, le=1.0)
    """Faces the detector rates below this quality (0..1: small, blurred, turned away) are listed but not
    clustered."""
    learn_names: bool = True
    """Learn names from the face regions the user (digiKam, Lightroom, Picasa, Immich...) named."""


Key = tuple[str, str, int]
"""(content hash, face model fingerprint, index): one stored face."""


def face_run(result: PhotoResult) -> tuple[AnalyzerRun, list[Mapping[str, Any]]] | None:
    """The run that identified faces (``extra["faces"]`` with descriptors) and its faces, or None."""
    for run in result.ok_runs:
        faces = run.analysis.extra.get("faces") if run.analysis is not None else None
        if isinstance(faces, list) and any(isinstance(f, Mapping) and f.get("descriptor") for f in faces):
            return run, [f if isinstance(f, Mapping) else {} for f in faces]
    return None


def _box_of(face: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    try:
        x, y, w, h = (float(v) for v in face["box"])
    except (KeyError, TypeError, ValueError):
        return None
    return (x, y, w, h) if w > 0 and h > 0 else None


def corners(box: tuple[float, float, float, float]) -> Box:
    """x, y, w, h (top-left) as left, top, right, bottom."""
    x, y, w, h = box
    return x, y, x + w, y + h


def match_user(
    boxes: Sequence[tuple[float, float, float, float] | None], user: Sequence[tuple[str, Box]]
) -> dict[int, tuple[str, Box]]:
    """Face index -> the user's region over it (:func:`~phototag.xmpdesired.same_face`, the writer's rule;
    one region per face, one face per region, the best overlap first)."""
    pairs = []
    for i, box in enumerate(boxes):
        for j, (_, ubox) in enumerate(user):
            if box is not None and same_face(corners(box), ubox):
                pairs.append((-iou(corners(box), ubox), i, j))
    out: dict[int, tuple[str, Box]] = {}
    taken: set[int] = set()
    for _, i, j in sorted(pairs):
        if i not in out and j not in taken:
            out[i] = user[j]
            taken.add(j)
    return out


class PeopleAnalyzer:
    """See the module docstring. ``reader``: what reads the user's face regions of a photo (the XMP
    writer's :meth:`~phototag.plugins.xmp.XmpWriter.user_faces`; made on first use)."""

    name = NAME
    Settings = PeopleSettings

    def __init__(self, settings: PeopleSettings, config: Config, reader: Any = None) -> None:
        self.settings = settings
        self.config = config
        self._reader = reader
        self._store: PeopleStore | None = None  # read-write, opened by the first update (never in a dry run)
        self._peek: PeopleStore | None = None  # read-only, for contribute before that
        self._user: dict[Path, list[tuple[str, Box]]] = {}  # user faces read by contribute, for update
        self._given: dict[str, list[int | None]] = {}  # content hash -> the people contribute wrote
        self._lock = threading.Lock()
        self._known: tuple[np.ndarray, np.ndarray] | None = (
            None  # stored faces for contribute; reset by update
        )

    def fingerprint(self) -> str:
        s = self.settings
        return fingerprint_of(NAME, 1, s.threshold, s.margin, s.min_quality, s.learn_names)

    # -- storage ----------------------------------------------------------------------------------------------

    def store(self) -> PeopleStore:
        """The read-write store (the state DB's people tables)."""
        if self._store is None:
            self._store = PeopleStore(self.config.state_db)
            if self._peek is not None:
                self._peek.close()
                self._peek = None
        return self._store

    def _reading(self) -> PeopleStore:
        if self._store is not None:
            return self._store
        if self._peek is None:
            self._peek = PeopleStore(self.config.state_db, readonly=True)
        return self._peek

    def close(self) -> None:
        for db in (self._store, self._peek):
            if db is not None:
                db.close()
        self._store = self._peek = None
        if self._reader is not None and hasattr(self._reader, "close"):
            self._reader.close()
            self._reader = None

    def user_faces(self, photo: Path) -> list[tuple[str, Box]]:
        """The named face regions the user left on ``photo`` (not phototag's)."""
        if not self.settings.learn_names:
            return []
        if self._reader is None:
            from ..plugins.xmp import XmpWriter

            self._reader = XmpWriter(self.config)
        try:
            found: list[tuple[str, Box]] = self._reader.user_faces(photo)
        except Exception as e:  # an unreadable sidecar must not stop the photo's other metadata
            log.warning("%s: cannot read its face regions: %s", photo, e)
            return []
        return [(n, b) for n, b in found if n]

    # -- LibraryAnalyzer -----------------------------------------------------------------------------------------

    def contribute(self, result: PhotoResult, library: Library) -> Analysis | None:
        found = face_run(result)
        if found is None:
            return None
        run, faces = found
        with self._lock:
            db = self._reading()
            user = self.user_faces(result.photo.path)
            if len(self._user) > 10_000:  # a dry run never calls update(), which empties these
                self._user.clear()
                self._given.clear()
            self._user[result.photo.path] = user
            boxes = [_box_of(f) for f in faces]
            claimed = match_user(boxes, user)
            stored = {f.idx: f for f in db.faces_of(result.photo.content_hash, run.fingerprint)}
            if stored:
                people: list[int | None] = [
                    stored[i].person if i in stored else None for i in range(len(faces))
                ]
                dists = [stored[i].distance if i in stored else None for i in range(len(faces))]
            else:
                decisions = self._tentative(db, faces)
                people = [d.person for d in decisions]
                dists = [d.distance for d in decisions]
            names = {p.id: p for p in db.people(forgotten=True)}
        regions = [g for g in run.analysis.regions if g.kind == "face"] if run.analysis else []
        named: list[Region] = []
        entries: list[dict[str, Any]] = []
        written: list[int | None] = []
        for i, face in enumerate(faces):
            pid = people[i]
            person = names.get(pid) if pid is not None else None
            name = None
            if i in claimed:
                name = claimed[i][0]
            elif person is not None and person.name and not person.forgotten:
                name = person.name
                box = boxes[i]
                base = regions[i] if i < len(regions) else None
                if base is not None:
                    named.append(Region(base.label, base.score, base.x, base.y, base.w, base.h, "face", name))
                elif box is not None:
                    score = float(face.get("score") or 1.0)
                    named.append(Region("Face", score, *box, kind="face", name=name))
            visible = person is not None and not person.forgotten
            written.append(people[i] if visible else None)
            box_i = boxes[i]
            entries.append(
                {
                    "box": None if box_i is None else list(box_i),
                    "landmarks": face.get("landmarks"),
                    "quality": face.get("quality"),
                    "cluster": people[i] if visible else None,
                    "name": name,
                    "distance": None if dists[i] is None else round(float(dists[i]), 4),  # type: ignore[arg-type]
                    "source": "user" if i in claimed else "detected",
                }
            )
        self._given[result.photo.content_hash] = written
        return Analysis(regions=tuple(named), extra={"people": entries})

    def _tentative(self, db: PeopleStore, faces: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """Who the faces of a photo not stored yet are, against the people known now (nothing stored)."""
        import numpy as np

        if self._known is None:
            known = [f for f in db.all_faces() if f.descriptor is not None]
            dim = len(known[0].descriptor) if known and known[0].descriptor is not None else 0
            self._known = (
                np.asarray([f.descriptor for f in known], np.float32).reshape(len(known), dim),
                np.asarray([-1 if f.person is None else f.person for f in known], np.int64),
            )
        vectors, owners = self._known
        if not len(vectors):
            return [Decision(None, None) for _ in faces]
        out = []
        for face in faces:
            vector = _vector(face)
            if vector is None or vector.size != vectors.shape[1]:
                out.append(Decision(None, None))
                continue
            out.append(decide(vector, vectors, owners, self.settings.threshold, self.settings.margin))
        return out

    def update(self, changed: Sequence[PhotoResult], library: Library) -> Sequence[Path]:
        if not any(face_run(r) for r in changed):
            return []
        with self._lock:
            db = self.store()
            learner = Learner(db, self.settings)
            hashes: set[str] = set()
            for result in changed:
                found = face_run(result)
                if found is None:
                    continue
                run, faces = found
                photo = result.photo
                user = self._user.pop(photo.path, None)
                if user is None:
                    user = self.user_faces(photo.path)
                given = self._given.pop(photo.content_hash, None)
                learner.ingest(photo.content_hash, run.fingerprint, faces, user)
                now = [f.person for f in db.faces_of(photo.content_hash, run.fingerprint) if f.idx < USER_IDX]
                visible = learner.visible(now)
                if given is not None and given != visible:
                    hashes.add(photo.content_hash)
            hashes |= learner.finish()
            self._known = None
            self._user.clear()
            self._given.clear()
        mine = {r.photo.content_hash: r.photo.path for r in changed}
        paths: dict[Path, None] = {}
        for h in sorted(hashes):
            for path in library.paths_for_hash(h) or ([mine[h]] if h in mine else []):
                paths[path] = None
        return list(paths)


def _vector(face: Mapping[str, Any]) -> np.ndarray | None:
    import numpy as np

    try:
        vector = np.asarray(face.get("descriptor") or (), dtype=np.float32).ravel()
    except (TypeError, ValueError):
        return None
    return vector if vector.size and np.all(np.isfinite(vector)) else None


class Learner:
    """One round of storing faces, learning names and clustering over a :class:`PeopleStore`; collects the
    content hashes whose people changed (:meth:`finish`)."""

    def __init__(self, db: PeopleStore, settings: PeopleSettings) -> None:
        self.db = db
        self.settings = settings
        self._clustering: Clustering | None = None
        self.touched_people: set[int] = set()
        self.touched_hashes: set[str] = set()
        self._forgotten = {p.id for p in db.people(forgotten=True) if p.forgotten}

    def clustering(self) -> Clustering:
        if self._clustering is None:
            known = [f for f in self.db.all_faces() if f.descriptor is not None]
            self._clustering = Clustering.of(
                [f.descriptor for f in known],  # type: ignore[misc]
                [f.person for f in known],
                [(f.content_hash, f.model, f.idx) for f in known],
                self.settings.threshold,
                self.settings.margin,
                self.db.new_person,
                locked=[i for i, f in enumerate(known) if f.user_name],
            )
        return self._clustering

    def visible(self, people: Sequence[int | None]) -> list[int | None]:
        return [None if p is None or p in self._forgotten else p for p in people]

    def ingest(
        self,
        content_hash: str,
        model: str,
        faces: Sequence[Mapping[str, Any]],
        user: Sequence[tuple[str, Box]],
    ) -> None:
        """Store the faces of one photo (unless stored with the same user names already) and place them."""
        stored = self.db.faces_of(content_hash, model)
        if stored:
            self.learn(stored, user)
            return
        boxes = [_box_of(f) for f in faces]
        claimed = match_user(boxes, user)
        rows: list[Face] = []
        clustering = self.clustering()
        for i, face in enumerate(faces):
            box = boxes[i]
            vector = _vector(face)
            quality = face.get("quality")
            user_name = claimed[i][0] if i in claimed else None
            person: int | None = None
            distance: float | None = None
            if vector is not None and vector.size != clustering.vectors.shape[1]:
                log.warning("face %d of %s: a %d-d descriptor among %d-d ones; not clustered", i, content_hash,
                            vector.size, clustering.vectors.shape[1])  # fmt: skip
                vector = None
            if vector is not None:
                key = (content_hash, model, i)
                if user_name:
                    decision = clustering.add(key, vector, self._person_for_name(user_name, vector))
                elif isinstance(quality, (int, float)) and quality < self.settings.min_quality:
                    decision = Decision(None, None)
                else:
                    decision = clustering.add(key, vector)
                person, distance = decision.person, decision.distance
            elif user_name:
                person = self._person_for_name(user_name, None)
            rows.append(
                Face(
                    content_hash, model, i, box or (0.0, 0.0, 0.0, 0.0), _landmarks(face),
                    float(quality) if isinstance(quality, (int, float)) else None,
                    vector, str(face.get("model") or ""), person, distance,
                    "user" if user_name else "detected", user_name,
                )
            )  # fmt: skip
        for j, (name, ubox) in enumerate(_unmatched(user, claimed)):
            pid = self._person_for_name(name, None)
            x0, y0, x1, y1 = ubox
            rows.append(
                Face(content_hash, model, USER_IDX + j, (x0, y0, x1 - x0, y1 - y0), [], None, None, "", pid,
                     None, "user", name)
            )  # fmt: skip
        self.db.replace_faces(content_hash, model, rows)
        self._save_moves()

    def learn(self, stored: Sequence[Face], user: Sequence[tuple[str, Box]]) -> bool:
        """Apply the names the user gave (``user``: their named regions) to the faces of a photo stored
        earlier; False when they say what is stored already (a rename, a copy, a rewrite)."""
        detected = [f for f in stored if f.idx < USER_IDX]
        found = match_user([f.box for f in detected], user)
        claimed = {detected[i].idx: v for i, v in found.items()}
        before = {f.idx: f.user_name for f in stored}
        wanted: dict[int, str | None] = {
            f.idx: claimed[f.idx][0] if f.idx in claimed else None for f in detected
        }
        wanted.update({USER_IDX + j: n for j, (n, _) in enumerate(_unmatched(user, claimed))})
        if wanted == before:
            return False
        self._relearn(stored, claimed, user)
        return True

    def _relearn(
        self, stored: Sequence[Face], claimed: Mapping[int, tuple[str, Box]], user: Sequence[tuple[str, Box]]
    ) -> None:
        """The user named (or renamed) faces of a photo stored earlier: apply their word."""
        rows = []
        clustering = self.clustering()
        for f in stored:
            if f.idx >= USER_IDX:
                continue
            name = claimed[f.idx][0] if f.idx in claimed else None
            if name and name != f.user_name and f.descriptor is not None:
                person = self._person_for_name(name, f.descriptor)
                old = f.person
                rows.append(_with(f, person=person, source="user", user_name=name))
                key = (f.content_hash, f.model, f.idx)
                if key in clustering.keys:
                    row = clustering.keys.index(key)
                    clustering.owners[row] = person
                    clustering.locked.add(row)
                self.touched_people |= {p for p in (old, person) if p is not None}
            elif not name and f.user_name:
                rows.append(_with(f, source="detected", user_name=None))
            else:
                rows.append(f)
        for j, (name, ubox) in enumerate(_unmatched(user, claimed)):
            x0, y0, x1, y1 = ubox
            model = stored[0].model
            rows.append(
                Face(stored[0].content_hash, model, USER_IDX + j, (x0, y0, x1 - x0, y1 - y0), [], None, None, "",
                     self._person_for_name(name, None), None, "user", name)
            )  # fmt: skip
        self.db.replace_faces(stored[0].content_hash, stored[0].model, rows)
        self.touched_hashes.add(stored[0].content_hash)

    def _person_for_name(self, name: str, vector: np.ndarray | None) -> int:
        """The person a face the user named ``name`` belongs to. An unnamed cluster this face would join is
        that person (it gets the name; merged into an existing person of that name); else the person of that
        name; else a new one."""
        named = self.db.by_name(name)
        if vector is not None:
            clustering = self.clustering()
            decision = clustering.decide(vector)
            cluster = self.db.person(decision.person) if decision.person is not None else None
            if cluster is not None and cluster.name is None and not cluster.forgotten:
                if named is None:
                    self.db.set_name(cluster.id, name)
                    self.touched_people.add(cluster.id)
                    return cluster.id
                self.db.merge(named.id, [cluster.id])
                clustering.relabel(cluster.id, named.id)
                self.touched_people |= {cluster.id, named.id}
                return named.id
        if named is not None:
            return named.id
        pid = self.db.new_person(name)
        self.touched_people.add(pid)
        return pid

    def _save_moves(self) -> None:
        clustering = self.clustering()
        if not clustering.moved:
            return
        changes = []
        for key, person, distance in clustering.moved:
            content_hash, model, idx = cast(Key, key)
            changes.append((content_hash, model, idx, person, distance))
            self.touched_hashes.add(content_hash)
        self.db.assign(changes)
        clustering.moved.clear()

    def finish(self) -> set[str]:
        """The content hashes whose people changed this round (their metadata must be written again)."""
        self._save_moves()
        hashes = set(self.touched_hashes) | self.db.hashes_of(self.touched_people)
        self.db.drop_empty_people()
        return hashes


def _unmatched(
    user: Sequence[tuple[str, Box]], claimed: Mapping[int, tuple[str, Box]]
) -> list[tuple[str, Box]]:
    """The user's named regions no detected face matched, in order."""
    used = {id(v) for v in claimed.values()}  # match_user hands out the user's own tuples
    return [u for u in user if id(u) not in used]


def _landmarks(face: Mapping[str, Any]) -> list[list[float]]:
    try:
        return [[float(a), float(b)] for a, b in face.get("landmarks") or ()]
    except (TypeError, ValueError):
        return []


def _with(face: Face, **changes: Any) -> Face:
    from dataclasses import replace

    return replace(face, **changes)
