"""The cluster runner (``phototag scan --ray``) on a real Ray cluster: a head and a second node, each a real
``ray start --block`` process on this machine with one CPU and its own resource label (``head_node``,
``second_node``), started once for the module (tests/ray_cluster.py).

Scans run as real ``phototag`` subprocesses (the driver), so that a driver can be killed, and so that this test
process never joins the cluster. The real default classify model (offline EfficientNet) and the JSON sidecar
writer run everywhere; results are compared with a local scan of a copy of the same photos.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_photos import make_variants
from phototag.cluster.remote import WriterWorker, check_paths
from phototag.cluster.sizing import DECODE_CPUS, plan_actors, plan_writers
from phototag.config import load_config
from phototag.extras import MissingExtra
from phototag.files import make_photo
from phototag.types import Analysis, AnalyzerRun, ModelInfo, PhotoResult, Tag
from ray_cluster import VENV_BIN, Cluster, ray_cluster

ray = pytest.importorskip("ray")

ENV = {**os.environ, "PHOTOTAG_PLUGINS": "classify,sidecar", "RAY_USAGE_STATS_ENABLED": "0"}
try:  # Ray Client (ray://) needs ray[client]: grpcio
    import grpc  # noqa: F401

    HAS_CLIENT = True
except ImportError:
    HAS_CLIENT = False


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with ray_cluster({"head_node": 1.0}, {"second_node": 1.0}, env=ENV, client=HAS_CLIENT) as c:
        yield c


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cluster-photos")
    make_variants(folder, 200, side=160)
    return folder


def _copy(master: Path, dest: Path, count: int) -> list[Path]:
    made = []
    for path in sorted(master.rglob("*.jpg"))[:count]:
        out = dest / path.relative_to(master)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
        made.append(out)
    return made


def _config(where: Path) -> Path:
    config = where / "config.yaml"
    config.write_text(f"state_db: {where / 'state.db'}\nbatch_size: 8\n")
    return config


def _scan(folder: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = [
        str(VENV_BIN / "phototag"),
        "scan",
        str(folder),
        "--json",
        "-c",
        str(_config(folder.parent)),
        *extra,
    ]
    return subprocess.run(args, env=env or ENV, capture_output=True, text=True, timeout=600)


def _outcomes(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _sidecar(photo: Path) -> dict[str, object]:
    """The JSON sidecar minus what differs between two runs of the same models (timings, time of writing)."""
    doc = json.loads(Path(f"{photo}.phototag.json").read_text())
    doc.pop("written")
    for run in doc["analyzers"].values():
        run.pop("seconds")
    return doc


# -- pure parts, no cluster -----------------------------------------------------------------------------------


def test_actors_leave_cpus_for_decode_tasks() -> None:
    nodes = [
        {"NodeID": "gpu", "Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
        {"NodeID": "cpu", "Alive": True, "Resources": {"CPU": 16.0}},
        {"NodeID": "tiny", "Alive": True, "Resources": {"CPU": 1.0}},
        {"NodeID": "dead", "Alive": False, "Resources": {"CPU": 64.0}},
    ]
    specs = plan_actors(nodes, cpus_per_actor=4)
    by_node: dict[str, list[float]] = {}
    for spec in specs:
        by_node.setdefault(spec.node_id, []).append(spec.num_cpus)
    assert [s.num_gpus for s in specs if s.node_id == "gpu"] == [1.0, 1.0]  # one actor per GPU
    assert len(by_node["cpu"]) == 4  # one per 4 CPUs
    assert "dead" not in by_node
    for node in nodes[:3]:  # every node keeps at least one decode task's share free of actors
        cpus = node["Resources"]["CPU"]  # type: ignore[index]
        assert cpus - sum(by_node[str(node["NodeID"])]) >= DECODE_CPUS - 1e-9
    # writers where the analysing nodes are: one per 4 CPUs, at least one; none on a node that analyses nothing
    nodes.append({"NodeID": "nocpu", "Alive": True, "Resources": {"CPU": 0.0}})
    assert plan_writers(nodes, specs) == {"gpu": 4, "cpu": 4, "tiny": 1}


def test_storage_check_names_the_unreadable_photo(tmp_path: Path) -> None:
    there = tmp_path / "a.jpg"
    there.write_bytes(b"x")
    host, missing = check_paths([str(there), str(tmp_path / "gone.jpg")])
    assert host == socket.gethostname()
    assert len(missing) == 1 and "gone.jpg" in missing[0] and "No such file" in missing[0]


def test_without_ray_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from phototag.cluster.runner import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when it is not installed
    with pytest.raises(MissingExtra, match=r"pip install 'phototag\[ray\]'"):
        connect("auto")


def test_a_small_scan_stays_local_and_says_so(master: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _copy(master, photos, 5)
    # an address nothing listens on: below the crossover Ray is never contacted
    done = _scan(photos, "--ray", "ray://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert "using the local runner" in done.stderr
    assert sorted(o["status"] for o in _outcomes(done.stdout)) == ["tagged"] * 5


def test_the_writer_actor_writes_idempotently_and_never_over_a_changed_photo(
    master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer actor's class, in this process (Ray only moves it): real JSON sidecar and XMP (exiftool)
    writers. Writing a batch twice (a retry after the actor died) gives the same files; a photo that changed
    after it was planned is not written, and what came back names that for the driver to record."""
    monkeypatch.setenv("PHOTOTAG_PLUGINS", "sidecar,xmp")
    same, changed = _copy(master, tmp_path / "photos", 2)
    config = load_config(None, overrides={"state_db": str(tmp_path / "state.db")}, environ={})
    run = AnalyzerRun(
        "classify", "classify", ModelInfo("m"), "f", Analysis((Tag("Cat", 0.9, ("Animals", "Cat")),))
    )
    results = [PhotoResult(make_photo(p), 160, 120, (run,)) for p in (same, changed)]
    with changed.open("ab") as f:  # another program changes it after it was planned
        f.write(b"\0")
    worker = WriterWorker(config)
    try:
        assert set(worker.describe()["fingerprints"]) == {"writer:sidecar", "writer:xmp"}  # type: ignore[arg-type]
        first = worker.write(results)
        files = {p: p.read_bytes() for p in (Path(f"{same}.phototag.json"), Path(f"{same}.xmp"))}
        second = worker.write(results)
    finally:
        worker.close()
    assert [w.status for w in first] == ["written", "changed"]
    assert first[0] == second[0] and sorted(first[0].outputs) == [
        f"{same.name}.phototag.json",
        f"{same.name}.xmp",
    ]
    assert first[0].photo == results[0].photo  # sidecar mode: the photo itself untouched
    assert first[1].photo is not None and first[1].photo.size == results[1].photo.size + 1
    for path, before in files.items():  # written again, the same (the JSON's time of writing aside)
        if path.suffix == ".json":
            assert {**json.loads(path.read_text()), "written": 0} == {**json.loads(before), "written": 0}
        else:
            assert path.read_bytes() == before
    assert sorted(p.name for p in changed.parent.iterdir() if p.name.startswith(changed.stem)) == [
        changed.name
    ]


# -- on the cluster ---------------------------------------------------------------------------------------------


def test_scan_on_ray_matches_local_and_reports_corrupt_photos(
    cluster: Cluster, master: Path, tmp_path: Path
) -> None:
    on_ray, local = tmp_path / "ray" / "photos", tmp_path / "local" / "photos"
    photos = _copy(master, on_ray, 40)
    _copy(master, local, 40)
    # two bad files among the good ones of one folder (one batch of 8 holds them and good photos)
    folder = photos[0].parent
    truncated = folder / "p00000b.jpg"
    truncated.write_bytes(photos[0].read_bytes()[:600])
    text = folder / "p00001b.jpg"
    text.write_text("not a photo\n")

    dry = _scan(on_ray, "--ray", cluster.address, "--ray-always", "--dry-run")  # analyses, writes nothing
    assert sorted(str(o["status"]) for o in _outcomes(dry.stdout)) == ["dry-run"] * 40 + ["failed"] * 2
    assert not list(on_ray.rglob("*.json")) and not (on_ray.parent / "state.db").exists()

    done = _scan(on_ray, "--ray", cluster.address, "--ray-always")
    outcomes = {Path(str(o["path"])).name: o for o in _outcomes(done.stdout)}
    assert done.returncode == 1, done.stderr  # the two bad files failed
    assert len(outcomes) == 42
    for bad in (truncated, text):
        assert outcomes[bad.name]["status"] == "failed"
        assert bad.name in str(outcomes[bad.name]["message"])
    assert sorted(p.name for p in photos) == sorted(n for n, o in outcomes.items() if o["status"] == "tagged")
    assert "2 failed" in done.stderr and "40 tagged" in done.stderr

    here = _scan(local)
    assert here.returncode == 0, here.stderr
    for photo in photos:
        assert _sidecar(photo) == _sidecar(local / photo.relative_to(on_ray))

    again = _scan(on_ray, "--ray", cluster.address, "--ray-always")  # the state DB: nothing done twice
    statuses = sorted(str(o["status"]) for o in _outcomes(again.stdout))
    assert statuses == ["failed"] * 2 + ["skipped"] * 40


@pytest.mark.slow
def test_two_hundred_photos_tagged_once_as_locally(cluster: Cluster, master: Path, tmp_path: Path) -> None:
    on_ray, local = tmp_path / "ray" / "photos", tmp_path / "local" / "photos"
    photos = _copy(master, on_ray, 200)
    _copy(master, local, 200)
    done = _scan(on_ray, "--ray", cluster.address, "--ray-always")
    assert done.returncode == 0, done.stderr
    paths = [str(o["path"]) for o in _outcomes(done.stdout) if o["status"] == "tagged"]
    assert sorted(paths) == sorted(map(str, photos))  # each once
    assert _scan(local).returncode == 0
    for photo in photos:
        assert _sidecar(photo) == _sidecar(local / photo.relative_to(on_ray))


@pytest.mark.slow
def test_a_model_and_a_writer_actor_killed_mid_run_are_replaced(
    cluster: Cluster, master: Path, tmp_path: Path
) -> None:
    photos = _copy(master, tmp_path / "photos", 200)
    args = [str(VENV_BIN / "phototag"), "scan", str(tmp_path / "photos"), "--json", "-c", str(_config(tmp_path)),
            "--ray", cluster.address, "--ray-always"]  # fmt: skip
    driver = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert driver.stdout is not None
    lines = [driver.stdout.readline() for _ in range(16)]  # the run is under way
    victims = [cluster.workers("ModelWorker"), cluster.workers("WriterWorker")]
    assert victims[0], "no model actor process found"
    assert victims[1], "no writer actor process found: the workers must write"
    for pids in victims:
        os.kill(pids[0], signal.SIGKILL)
    rest, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    outcomes = _outcomes("".join(lines) + rest)
    assert sorted(str(o["path"]) for o in outcomes) == sorted(map(str, photos))
    assert {o["status"] for o in outcomes} == {"tagged"}
    assert victims[0][0] not in cluster.workers("ModelWorker")
    assert victims[1][0] not in cluster.workers("WriterWorker")
    for photo in photos:
        assert _sidecar(photo)["keywords"] is not None


@pytest.mark.slow
def test_a_killed_driver_resumes_with_nothing_done_twice(
    cluster: Cluster, master: Path, tmp_path: Path
) -> None:
    photos = _copy(master, tmp_path / "photos", 200)
    args = [str(VENV_BIN / "phototag"), "scan", str(tmp_path / "photos"), "--json", "-c", str(_config(tmp_path)),
            "--ray", cluster.address, "--ray-always"]  # fmt: skip
    driver = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert driver.stdout is not None
    first = [json.loads(driver.stdout.readline()) for _ in range(40)]
    driver.kill()
    driver.wait()
    tagged_first = {str(o["path"]) for o in first if o["status"] == "tagged"}
    assert len(tagged_first) == 40

    again = _scan(tmp_path / "photos", "--ray", cluster.address, "--ray-always")
    assert again.returncode == 0, again.stderr
    second = _outcomes(again.stdout)
    tagged_second = {str(o["path"]) for o in second if o["status"] == "tagged"}
    skipped = {str(o["path"]) for o in second if o["status"] == "skipped"}
    assert sorted(str(o["path"]) for o in second) == sorted(map(str, photos))  # each photo once
    assert tagged_second | skipped == set(map(str, photos))
    assert tagged_first <= skipped  # reported before the kill: not done again
    assert not tagged_first & tagged_second
    # the kill may fall between recording a batch and printing it: those are skipped now, never redone
    assert len(tagged_second) >= len(photos) - len(tagged_first) - 8 * 4
    for photo in photos:
        assert _sidecar(photo)["keywords"] is not None


@pytest.mark.skipif(not HAS_CLIENT, reason="Ray Client (ray://) needs ray[client]: pip install grpcio")
def test_a_scan_through_ray_client_matches_local(cluster: Cluster, master: Path, tmp_path: Path) -> None:
    """``--ray ray://HOST:PORT``: the driver talks to the cluster through the head's Ray Client server."""
    assert cluster.client_address is not None
    on_ray, local = tmp_path / "ray" / "photos", tmp_path / "local" / "photos"
    photos = _copy(master, on_ray, 8)
    _copy(master, local, 8)
    # Ray Client gives up after 3 tries of 5, 10, 20 s; the head starts a server process per client, which on
    # this busy 2-core machine once took longer than that: wait up to 15 + 30 + 30 s
    env = {**ENV, "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "15"}
    done = _scan(on_ray, "--ray", cluster.client_address, "--ray-always", env=env)
    assert done.returncode == 0, done.stderr
    outcomes = _outcomes(done.stdout)
    assert sorted(str(o["path"]) for o in outcomes) == sorted(map(str, photos))
    assert {o["status"] for o in outcomes} == {"tagged"}
    assert _scan(local).returncode == 0
    for photo in photos:
        assert _sidecar(photo) == _sidecar(local / photo.relative_to(on_ray))


@pytest.mark.slow
def test_token_auth_cluster_takes_the_token_and_refuses_a_wrong_one(master: Path, tmp_path: Path) -> None:
    """A cluster started with token auth (RAY_AUTH_MODE=token): a driver with its token scans; one with another
    token gets an error that says what to give it."""
    import secrets

    token = secrets.token_hex(32)
    with_token = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    photos = _copy(master, tmp_path / "photos", 8)
    with ray_cluster({"head_node": 1.0}, env=with_token) as secured:
        done = _scan(tmp_path / "photos", "--ray", secured.address, "--ray-always", env=with_token)
        assert done.returncode == 0, done.stderr
        assert sorted(str(o["path"]) for o in _outcomes(done.stdout)) == sorted(map(str, photos))
        (tmp_path / "state.db").unlink()
        wrong = {**with_token, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        refused = _scan(tmp_path / "photos", "--ray", secured.address, "--ray-always", "--force", env=wrong)
        assert refused.returncode != 0
        last = refused.stderr.strip().splitlines()[-1]  # Ray's own retry lines come before ours
        assert last.startswith(f"error: cannot connect to the Ray cluster at '{secured.address}'"), last
        assert "RAY_AUTH_TOKEN" in last
