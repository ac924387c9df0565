"""The vector index behind ``search``/``similar`` (:mod:`phototag.vectorindex`): exact below a size, HNSW
(usearch) above; kept in step with a real state DB as photos are recorded and forgotten; saved beside it.
Speed is measured in ``bench/index_bench.py``, not here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from phototag.plugins.search import rank_by_vector, rank_stored
from phototag.state import StateDB
from phototag.types import Analysis, AnalyzerRun, ModelInfo, Photo
from phototag.vectorindex import VectorIndex, index_path, key_of


def fake_hash(i: int) -> str:
    return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=16).hexdigest()


def clustered(n: int, dims: int, seed: int) -> np.ndarray:
    """Vectors with neighbours, as embeddings have: clusters in a low-dimensional latent space."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).standard_normal((8, dims))
    centers = np.random.default_rng(98).standard_normal((20, 8))
    latent = centers[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, 8))
    return (latent @ basis + 0.1 * rng.standard_normal((n, dims))).astype(np.float32)


def exact_top(data: np.ndarray, hashes: list[str], q: np.ndarray, k: int) -> set[str]:
    return {h for h, _ in rank_by_vector(q, list(zip(hashes, data, strict=True)), k)}


@pytest.mark.parametrize("exact_below", [10_000, 100])
def test_search_matches_exact_ranking(exact_below: int) -> None:
    data, queries = clustered(1500, 32, 1), clustered(40, 32, 2)
    hashes = [fake_hash(i) for i in range(len(data))]
    index = VectorIndex(32, exact_below=exact_below)
    index.add(hashes, data)
    assert index.is_graph == (exact_below == 100) and len(index) == 1500
    row = {h: i for i, h in enumerate(hashes)}
    hits = 0
    for q in queries:
        found = index.search(q, 10, lambda hs: data[[row[h] for h in hs]])  # re-ranked, as search does
        assert len(found) == 10 and [s for _, s in found] == sorted((s for _, s in found), reverse=True)
        hits += len({h for h, _ in found} & exact_top(data, hashes, q, 10))
    recall = hits / (10 * len(queries))
    assert recall == 1.0 if exact_below == 10_000 else recall >= 0.95
    # the best hit's score is its cosine similarity
    h, score = index.search(data[7], 1)[0]
    assert h == hashes[7] and score == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("exact_below", [10_000, 50])
def test_add_remove_replace_and_sync(exact_below: int) -> None:
    data = clustered(200, 16, 3)
    hashes = [fake_hash(i) for i in range(200)]
    index = VectorIndex(16, exact_below=exact_below)
    index.add(hashes[:100], data[:100])
    index.remove(hashes[:10])
    assert hashes[0] not in index and hashes[10] in index and len(index) == 90
    assert all(h != hashes[3] for h, _ in index.search(data[3], 20))
    # replacing a vector: the new one counts
    index.add([hashes[20]], data[150:151])
    assert index.search(data[150], 1)[0][0] == hashes[20]
    loaded: list[list[str]] = []

    def vectors_of(wanted: list[str]) -> np.ndarray:
        loaded.append(wanted)
        return np.stack([data[hashes.index(h)] for h in wanted])

    added, removed = index.sync(hashes[50:200], vectors_of)
    assert (added, removed) == (100, 40) and index.hashes == set(hashes[50:200])
    assert sorted(h for chunk in loaded for h in chunk) == sorted(hashes[100:200])  # only the new ones loaded
    assert index.sync(hashes[50:200], vectors_of) == (0, 0)
    with pytest.raises(ValueError, match="this index holds 16"):
        index.add([fake_hash(999)], np.ones((1, 8)))
    assert index.search(np.zeros(16), 5) == [] and index.search(np.ones(8), 5) == []


@pytest.mark.parametrize("exact_below", [10_000, 50])
def test_save_and_load(tmp_path: Path, exact_below: int) -> None:
    data = clustered(120, 16, 4)
    hashes = [fake_hash(i) for i in range(120)]
    index = VectorIndex(16, exact_below=exact_below)
    index.add(hashes, data)
    path = tmp_path / "state.db.fp.usearch"
    index.save(path)
    again = VectorIndex.load(path, 16, exact_below=exact_below)
    assert again is not None and again.hashes == set(hashes) and again.is_graph == index.is_graph
    assert [h for h, _ in again.search(data[5], 5)] == [h for h, _ in index.search(data[5], 5)]
    assert VectorIndex.load(path, 32) is None  # another model's dimension: rebuilt by the caller
    assert VectorIndex.load(tmp_path / "missing.usearch", 16) is None
    # a hash list that does not match the index (a crash between the two replaces): refused
    np.save(path.with_name(path.name + ".keys.npy"), np.array(hashes[:10], dtype="U32"))
    assert VectorIndex.load(path, 16, exact_below=exact_below) is None


def test_key_is_the_hash_prefix() -> None:
    assert key_of("8" + "0" * 31) == 0  # the top bit is dropped: keys stay positive int64
    assert key_of("0123456789abcdef" + "f" * 16) == 0x0123456789ABCDEF


def _record(db: StateDB, folder: Path, i: int, vector: np.ndarray) -> str:
    h = fake_hash(i)
    photo = Photo(folder / f"p{i}.jpg", 100, 1, h)
    run = AnalyzerRun("embed", "embed", ModelInfo("m"), "fp", Analysis(embedding=tuple(map(float, vector))))
    db.store_runs(h, [run])
    db.record_done(photo, {"embed": "fp"})
    return h


def test_rank_stored_follows_the_state_db(tmp_path: Path) -> None:
    """Photos recorded after the index was built are found; forgotten ones are not; the index file is kept
    beside the state DB and reused."""
    data = clustered(400, 24, 5)
    db = StateDB(tmp_path / "state.db")
    try:
        hashes = [_record(db, tmp_path, i, data[i]) for i in range(300)]
        exact = [h for h, _ in rank_by_vector(data[0], list(zip(hashes, data, strict=False)), 10)]
        found = rank_stored(db, "fp", data[0], 10, exact_below=100)
        assert len(set(exact) & {h for h, _ in found}) >= 9
        assert index_path(db.path, "fp").exists()
        # a new photo is indexed on the next query; a forgotten one disappears
        new = _record(db, tmp_path, 350, data[350])
        assert rank_stored(db, "fp", data[350], 1, exact_below=100)[0][0] == new
        db.forget(tmp_path / "p0.jpg")
        assert hashes[0] not in {h for h, _ in rank_stored(db, "fp", data[0], 10, exact_below=100)}
        # small libraries: the exact ranking, as before the index
        assert rank_stored(db, "fp", data[1], 5) == rank_by_vector(data[1], db.embeddings("fp"), 5)
    finally:
        db.close()
    reloaded = VectorIndex.load(index_path(tmp_path / "state.db", "fp"), 24, exact_below=100)
    assert reloaded is not None and new in reloaded and hashes[0] not in reloaded


@pytest.mark.parametrize("exact_below", [10_000, 100])
def test_search_many_agrees_with_one_at_a_time(exact_below: int) -> None:
    data = clustered(600, 16, 6)
    hashes = [fake_hash(i) for i in range(600)]
    index = VectorIndex(16, exact_below=exact_below)
    index.add(hashes, data)
    batch = index.search_many(data[:50], 5)
    overlap = [
        len(set(b) & {h for h, _ in index.search(q, 5)}) for b, q in zip(batch, data[:50], strict=True)
    ]
    # each photo finds itself (the graph's int8 distances can tie a photo with close neighbours: nearly all)
    assert sum(hashes[i] in batch[i] for i in range(50)) >= (50 if exact_below == 10_000 else 47)
    assert sum(overlap) >= 0.95 * 5 * 50
    assert VectorIndex(16).search_many(data[:2], 5) == [[], []]


def test_onnxruntime_after_the_graph_does_not_crash() -> None:
    """usearch 2.26's compiled module, imported before onnxruntime, makes importing onnxruntime crash the
    process; the index imports onnxruntime first (the OCR and ONNX backends import it later)."""
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    code = (
        "import numpy as np\n"
        "from phototag.vectorindex import VectorIndex\n"
        "v = VectorIndex(4, exact_below=1)\n"
        "v.add(['ab' * 16, 'cd' * 16], np.eye(2, 4))\n"
        "assert v.is_graph\n"
        "import onnxruntime\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]
