"""Your own tags: one classifier per keyword that *you* wrote, trained on the stored image embeddings.

Where the user's keywords come from: the photos' metadata, read with exiftool (the photo itself and its XMP
sidecars), minus what phototag's provenance (``XMP-phototag:AddedSubject`` / ``AddedHierarchy`` /
``AddedKeywords``) says phototag added. That is the one source that sees keywords added in any photo app after
the scan, and it can never mistake phototag's own keywords (learned ones included) for the user's. A
hierarchical entry (``Family|Anna``) is one keyword path; a flat keyword that is not the leaf of one of the
photo's hierarchical entries is a path of its own.

Training (:func:`train`): for each keyword with at least ``min_positives`` photos, a logistic regression on the
L2-normalised embeddings, positives = the photos with the keyword, negatives = the photos that carry other
keywords of yours but not this one (a photo you have not tagged at all may well show Anna: you just have not
got to it), or every other photo when fewer than ``min_positives`` such photos exist; classes weighted by
their frequency. Cross-validated (stratified k-fold, out-of-fold
probabilities) precision and recall at the threshold chosen as the lowest one whose out-of-fold precision
reaches ``target_precision``; a keyword that cannot reach it is refused, named, with its best precision.
scikit-learn fits it (at ``learn`` time only); the saved model is a ``.npz`` of weights, biases and
thresholds, applied with numpy (:class:`Model`), so scanning needs no scikit-learn.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exiftool import as_list
from .xmpfields import ADDED, HIERARCHY, IPTC_KEYWORDS, SUBJECT

if TYPE_CHECKING:
    import numpy as np

KeywordPath = tuple[str, ...]
_TAGS = (SUBJECT, HIERARCHY, IPTC_KEYWORDS, ADDED[SUBJECT], ADDED[HIERARCHY], ADDED[IPTC_KEYWORDS])


def metadata_files(photo: Path) -> list[Path]:
    """The photo and those of its XMP sidecars that exist (``photo.jpg.xmp``, ``photo.xmp``)."""
    files = [photo]
    for side in (photo.with_name(photo.name + ".xmp"), photo.with_suffix(".xmp")):
        if side != photo and side.is_file() and side not in files:
            files.append(side)
    return files


def user_keywords_of(tags: Mapping[str, Any]) -> set[KeywordPath]:
    """The user's keyword paths in one file's metadata (exiftool ``-G1`` keys), phototag's left out."""
    added_h = {str(v) for v in as_list(tags.get(ADDED[HIERARCHY]))}
    added_s = {str(v) for v in as_list(tags.get(ADDED[SUBJECT]))}
    added_k = {str(v) for v in as_list(tags.get(ADDED[IPTC_KEYWORDS]))}
    paths: set[KeywordPath] = set()
    for entry in (str(v) for v in as_list(tags.get(HIERARCHY))):
        levels = tuple(p.strip() for p in entry.split("|") if p.strip())
        if entry not in added_h and levels:
            paths.add(levels)
    leaves = {p[-1] for p in paths}
    flat = [str(v) for v in as_list(tags.get(SUBJECT)) if str(v) not in added_s]
    flat += [str(v) for v in as_list(tags.get(IPTC_KEYWORDS)) if str(v) not in added_k]
    for keyword in flat:
        keyword = keyword.strip()
        if keyword and keyword not in leaves and keyword not in added_s:
            paths.add((keyword,))
    return paths


def user_keywords(exiftool: Any, photo: Path) -> set[KeywordPath]:
    """The user's keyword paths of ``photo`` (the photo and its sidecars together)."""
    out: set[KeywordPath] = set()
    for path in metadata_files(photo):
        out |= user_keywords_of(exiftool.read_tags(path, *_TAGS))
    leaves = {p[-1] for p in out if len(p) > 1}
    return {p for p in out if len(p) > 1 or p[0] not in leaves}  # "Anna" beside "Family|Anna" is one keyword


# -- training -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeywordReport:
    """How one keyword fared: trained (with cross-validated figures) or refused (with why)."""

    path: KeywordPath
    positives: int
    precision: float = 0.0
    recall: float = 0.0
    threshold: float = 0.0
    refused: str = ""


@dataclass(frozen=True)
class Model:
    """The trained classifiers: one row of ``weights`` per keyword path; ``embed`` is the fingerprint of the
    embedding model they were trained on (they apply to those vectors only)."""

    paths: tuple[KeywordPath, ...]
    weights: np.ndarray
    biases: np.ndarray
    thresholds: np.ndarray
    embed: str
    known: frozenset[tuple[str, int]] = frozenset()
    """(content hash, keyword index) of the photos you tagged with that keyword: not written again."""

    def scores(self, vector: np.ndarray) -> np.ndarray:
        import numpy as np

        v = np.asarray(vector, dtype=np.float64).ravel()
        norm = float(np.linalg.norm(v))
        v = v / norm if norm else v
        return np.asarray(1.0 / (1.0 + np.exp(-(self.weights @ v + self.biases))))

    def predict(self, vector: np.ndarray, content_hash: str = "") -> list[tuple[KeywordPath, float]]:
        """The keyword paths whose probability reaches their threshold, with that probability (not those you
        gave this photo yourself when it was learned from)."""
        import numpy as np

        if not self.paths or np.asarray(vector).size != self.weights.shape[1]:
            return []
        p = self.scores(vector)
        return [
            (path, float(p[i]))
            for i, path in enumerate(self.paths)
            if p[i] >= self.thresholds[i] and (content_hash, i) not in self.known
        ]

    def to_bytes(self) -> bytes:
        import numpy as np

        buf = io.BytesIO()
        np.savez(
            buf,
            paths=np.array(["|".join(p) for p in self.paths], dtype=str),
            weights=self.weights,
            biases=self.biases,
            thresholds=self.thresholds,
            embed=np.array(self.embed),
            known_hashes=np.array([h for h, _ in sorted(self.known)], dtype=str),
            known_index=np.array([i for _, i in sorted(self.known)], dtype=np.int64),
        )
        return buf.getvalue()

    @property
    def digest(self) -> str:
        return hashlib.blake2b(self.to_bytes(), digest_size=8).hexdigest()

    def save(self, path: Path) -> None:
        """Write atomically (temp file + ``os.replace``)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Model:
        import numpy as np

        with np.load(path) as f:
            paths = tuple(tuple(str(p).split("|")) for p in f["paths"])
            known = frozenset(
                zip((str(h) for h in f["known_hashes"]), f["known_index"].tolist(), strict=True)
            )
            return cls(paths, f["weights"], f["biases"], f["thresholds"], str(f["embed"]), known)


def model_path(state_db: Path) -> Path:
    """Where ``phototag learn`` saves the model: beside the state DB."""
    return Path(f"{state_db}.learned.npz")


def choose_threshold(
    scores: np.ndarray, labels: np.ndarray, target: float
) -> tuple[float, float, float] | None:
    """The lowest threshold whose precision on (scores, labels) is at least ``target``, with that precision
    and the recall: (threshold, precision, recall); None when no threshold reaches it."""
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    tp = np.cumsum(y)
    precision = tp / np.arange(1, len(y) + 1)
    best = None
    for i in range(len(s)):
        if i + 1 < len(s) and s[i + 1] == s[i]:
            continue  # a threshold admits every photo with an equal score
        if precision[i] >= target and y[i]:
            best = (float(s[i]), float(precision[i]), float(tp[i] / max(1, y.sum())))
    return best


def train(
    vectors: np.ndarray,
    labels: Mapping[KeywordPath, np.ndarray],
    embed: str,
    *,
    hashes: Sequence[str] = (),
    rejected: Mapping[KeywordPath, np.ndarray] | None = None,
    min_positives: int = 8,
    target_precision: float = 0.9,
    folds: int = 5,
    seed: int = 0,
) -> tuple[Model, list[KeywordReport]]:
    """Train one classifier per keyword. ``vectors`` is (photos x dims); ``labels[path]`` a boolean array
    over the same photos; ``hashes`` their content hashes (the model then leaves the keywords you gave
    them to you); ``rejected[path]`` a boolean array of the photos on which you rejected that keyword (the web
    page's Review): always negatives for it."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    x = x / norms
    reports, kept = [], []
    tagged = np.zeros(len(x), dtype=bool)
    for y in labels.values():
        tagged |= np.asarray(y, dtype=bool)
    for path, y_all in sorted(labels.items()):
        y_all = np.asarray(y_all, dtype=bool)
        refused_by_you = np.zeros(len(x), dtype=bool)
        if rejected is not None and path in rejected:
            refused_by_you = np.asarray(rejected[path], dtype=bool)
            y_all = y_all & ~refused_by_you
        use = tagged if int((tagged & ~y_all).sum()) >= min_positives else np.ones(len(x), dtype=bool)
        use = use | refused_by_you
        xs, y = x[use], y_all[use]
        pos, neg = int(y.sum()), int((~y).sum())
        if pos < min_positives:
            reports.append(
                KeywordReport(path, pos, refused=f"{pos} photo(s), needs at least {min_positives}")
            )
            continue
        if neg < 2:
            reports.append(KeywordReport(path, pos, refused="no photos without it to learn from"))
            continue

        def make() -> Any:
            return LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000)

        k = max(2, min(folds, pos, neg))
        split = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        oof = cross_val_predict(make(), xs, y, cv=split, method="predict_proba")[:, 1]
        chosen = choose_threshold(oof, y, target_precision)
        if chosen is None:
            best = float(np.max([(y[oof >= t].mean()) for t in oof[y]])) if pos else 0.0
            reports.append(
                KeywordReport(
                    path,
                    pos,
                    precision=best,
                    refused=f"cross-validated precision {best:.2f} stays below the target {target_precision:.2f}",
                )
            )
            continue
        threshold, precision, recall = chosen
        fitted = make().fit(xs, y)
        kept.append((path, fitted.coef_[0], float(fitted.intercept_[0]), threshold, y_all))
        reports.append(KeywordReport(path, pos, precision, recall, threshold))
    dims = x.shape[1] if x.ndim == 2 else 0
    known = frozenset(
        (hashes[int(j)], i) for i, k in enumerate(kept) for j in np.flatnonzero(k[4]) if j < len(hashes)
    )
    model = Model(
        tuple(k[0] for k in kept),
        np.array([k[1] for k in kept], dtype=np.float64).reshape(len(kept), dims),
        np.array([k[2] for k in kept], dtype=np.float64),
        np.array([k[3] for k in kept], dtype=np.float64),
        embed,
        known,
    )
    return model, reports


def label_matrix(
    hashes: Sequence[str], keywords: Mapping[str, set[KeywordPath]]
) -> dict[KeywordPath, np.ndarray]:
    """keyword path -> boolean array over ``hashes`` (a content hash carries a keyword when any of its
    paths has it)."""
    import numpy as np

    index = {h: i for i, h in enumerate(hashes)}
    out: dict[KeywordPath, np.ndarray] = {}
    for content_hash, paths in keywords.items():
        for path in paths:
            out.setdefault(path, np.zeros(len(hashes), dtype=bool))[index[content_hash]] = True
    return out
