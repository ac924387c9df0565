"""``phototag serve``: phototag's own API, probes, batching, backpressure and cancellation, against a real
uvicorn server on a loopback port (:mod:`phototag.serve.testing`) with real HTTP clients.

Models: the bundled offline classifier and detector (the default config), a tiny random CLIP (tiny_models) for
embeddings, and an inline gated analyzer (computes a real brightness from the pixels, but waits on a gate) for
what must be made to happen in a known order: a full queue, a client that hangs up, a passed deadline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from concurrent_scans import install_counting_plugin
from phototag import Analysis, DecodedImage, Device, ModelInfo, Needs, Tag, hookimpl
from phototag.cli import main
from phototag.config import Config, load_config
from phototag.files import hash_file
from phototag.images import photo_dimensions
from phototag.manager import get_plugin_manager, registered
from phototag.pipeline import Pipeline
from phototag.plugins.sidecar import sidecar_path
from phototag.serve.testing import Served, serving
from phototag.types import fingerprint_of

TIMEOUT = httpx.Timeout(120.0)


def make(tmp: Path, **sets: Any) -> Config:
    base = {"state_db": str(tmp / "state.db")}
    base.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in sets.items()})
    return load_config(None, overrides=base, environ={})


def bundled_pm() -> Any:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "classify,detect,sidecar"})
    return pm


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


# -- the bundled models, one server for the module ----------------------------------------------------------


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    config = make(tmp_path_factory.mktemp("serve-bundled"))
    with serving(config, pm=bundled_pm()) as served:
        yield served


def test_multipart_upload_answers_the_sidecar_document_a_scan_writes(
    bundled: Served, photos: Path, tmp_path: Path
) -> None:
    cat = photos / "cat.jpg"
    r = httpx.post(
        f"{bundled.url}/v1/analyze",
        files={"file": ("cat.jpg", cat.read_bytes(), "image/jpeg")},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["schema"] == "phototag/result" and doc["file"] == "cat.jpg"
    assert doc["content_hash"] == hash_file(cat)  # the key scan uses for the same bytes
    assert (doc["dimensions"]["width"], doc["dimensions"]["height"]) == photo_dimensions(cat)
    assert set(doc["analyzers"]) == {"classify", "detect"}
    assert "Cat" in doc["keywords"]

    # a real scan of the same photo writes the same analyses into its JSON sidecar
    config = make(tmp_path, **{"metadata.xmp": "false"})
    with Pipeline.from_config(config, bundled_pm()) as pipeline:
        [outcome] = pipeline.process([cat])
        pipeline.state.close()
    assert outcome.status == "tagged", outcome
    sidecar = json.loads(sidecar_path(cat).read_text())
    assert doc["keywords"] == sidecar["keywords"]
    for name in ("classify", "detect"):
        ours, scanned = doc["analyzers"][name], sidecar["analyzers"][name]
        for key in ("tags", "regions", "model", "fingerprint", "qa"):
            assert ours[key] == scanned[key], (name, key)


def test_json_data_url_and_bare_base64_with_chosen_tasks(bundled: Served, photos: Path) -> None:
    data = (photos / "motorcycle.jpg").read_bytes()
    b64 = base64.b64encode(data).decode()
    answers = []
    for image in (f"data:image/jpeg;base64,{b64}", b64):
        r = httpx.post(
            f"{bundled.url}/v1/analyze", json={"image": image, "tasks": ["classify"]}, timeout=TIMEOUT
        )
        assert r.status_code == 200, r.text
        answers.append(r.json())
    assert list(answers[0]["analyzers"]) == ["classify"]
    one, two = (a["analyzers"]["classify"] for a in answers)
    assert one.pop("seconds") >= 0 and two.pop("seconds") >= 0
    assert one == two and one["tags"]
    multipart = httpx.post(
        f"{bundled.url}/v1/analyze",
        files={"file": ("m.jpg", data, "image/jpeg")},
        data={"tasks": "classify"},
        timeout=TIMEOUT,
    ).json()
    assert multipart["analyzers"]["classify"]["tags"] == answers[0]["analyzers"]["classify"]["tags"]
    assert multipart["content_hash"] == answers[0]["content_hash"]


def test_a_task_no_analyzer_does_names_what_to_configure(bundled: Served, photos: Path) -> None:
    r = httpx.post(
        f"{bundled.url}/v1/analyze",
        files={"file": ("cat.jpg", (photos / "cat.jpg").read_bytes(), "image/jpeg")},
        data={"tasks": "caption"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "model_not_available" and "plugins.caption" in error["message"]


@pytest.mark.parametrize(
    ("name", "body", "code", "words"),
    [
        (
            "notes.jpg",
            b"these are my holiday notes, not a photo\n" * 20,
            "image_not_decodable",
            "not an image",
        ),
        ("empty.jpg", b"", "image_not_decodable", "empty"),
    ],
)
def test_bad_uploads_are_clear_400s(bundled: Served, name: str, body: bytes, code: str, words: str) -> None:
    r = httpx.post(f"{bundled.url}/v1/analyze", files={"file": (name, body, "image/jpeg")}, timeout=TIMEOUT)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and name in error["message"] and words in error["message"]


def test_truncated_image_is_a_clear_400(bundled: Served, photos: Path) -> None:
    data = (photos / "astronaut.jpg").read_bytes()
    r = httpx.post(
        f"{bundled.url}/v1/analyze",
        files={"file": ("astro.jpg", data[: len(data) // 3], "image/jpeg")},
        timeout=TIMEOUT,
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "image_not_decodable" and "truncated" in error["message"]


def test_wrong_content_type_and_malformed_requests(bundled: Served) -> None:
    r = httpx.post(
        f"{bundled.url}/v1/analyze", content=b"\xff\xd8\xff", headers={"content-type": "image/jpeg"}
    )
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    assert "multipart/form-data" in r.json()["error"]["message"]
    r = httpx.post(f"{bundled.url}/v1/analyze", json={"image": "%%% not base64 %%%"})
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]
    r = httpx.post(f"{bundled.url}/v1/analyze", json={"picture": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = httpx.post(
        f"{bundled.url}/v1/analyze", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{bundled.url}/v1/analyze", files={"other": ("a.jpg", b"x", "image/jpeg")})
    assert r.status_code == 400 and "'file'" in r.json()["error"]["message"]
    r = httpx.get(f"{bundled.url}/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_client_file_name_is_only_a_label(bundled: Served, photos: Path, tmp_path: Path) -> None:
    r = httpx.post(
        f"{bundled.url}/v1/analyze",
        files={"file": ("../../etc/passwd.jpg", (photos / "cat.jpg").read_bytes(), "image/jpeg")},
        data={"tasks": "classify"},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    assert r.json()["file"] == "passwd.jpg"


def test_probes_metrics_and_openapi(bundled: Served, photos: Path) -> None:
    health = httpx.get(f"{bundled.url}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = httpx.get(f"{bundled.url}/readyz", timeout=TIMEOUT)
    assert ready.status_code == 200 and ready.json()["analyzers"] == {"classify": None, "detect": None}
    httpx.post(
        f"{bundled.url}/v1/analyze",
        files={"file": ("cat.jpg", (photos / "cat.jpg").read_bytes(), "image/jpeg")},
        timeout=TIMEOUT,
    )
    text = httpx.get(f"{bundled.url}/metrics").text
    assert metric(text, "phototag_requests_total", route="/v1/analyze", method="POST", status="200") >= 1
    assert metric(text, "phototag_request_seconds_count", route="/v1/analyze") >= 1
    assert metric(text, "phototag_batch_size_count", analyzer="classify") >= 1
    assert metric(text, "phototag_model_load_seconds", analyzer="detect") > 0
    assert "phototag_queue_depth" in text
    httpx.get(f"{bundled.url}/x/{'y' * 20}")  # an unmatched path does not become a label
    assert "yyyy" not in httpx.get(f"{bundled.url}/metrics").text

    spec = httpx.get(f"{bundled.url}/openapi.json").json()
    analyze = spec["paths"]["/v1/analyze"]["post"]
    assert set(analyze["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    ok = analyze["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/AnalyzeResult")
    assert {"413", "415", "503"} <= set(analyze["responses"])
    schemas = spec["components"]["schemas"]
    assert {"AnalyzeResult", "AnalyzerOut", "SearchResult"} <= set(schemas)
    as_json = analyze["requestBody"]["content"]["application/json"]["schema"]
    assert {"image", "tasks", "analyzers", "embeddings"} <= set(as_json["properties"])
    assert as_json["required"] == ["image"]
    assert {"/healthz", "/readyz", "/metrics", "/v1/search", "/v1/similar"} <= set(spec["paths"])
    docs = httpx.get(f"{bundled.url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# -- a gated analyzer: order made certain ---------------------------------------------------------------


class Gated:
    """Tags Bright/Dark from the mean luminance, after waiting for ``gate``; records what it analysed."""

    task = "classify"
    needs = Needs(devices=("cpu",))
    input_size = 32

    def __init__(self, name: str = "gated") -> None:
        self.name = name
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []  # content hashes per call

    def model_info(self) -> ModelInfo:
        return ModelInfo("test/gated", "1")

    def fingerprint(self) -> str:
        return fingerprint_of(self.name)

    def load(self, device: Device) -> None:
        pass

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        self.batches.append([d.photo.content_hash for d in images])
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        out = []
        for d in images:
            mean = float(np.asarray(d.image.convert("L"), dtype=np.float32).mean()) / 255
            out.append(Analysis(tags=(Tag("Bright" if mean >= 0.5 else "Dark", 0.9),)))
        return out

    def unload(self) -> None:
        pass


class Plugin:
    def __init__(self, analyzer: Gated) -> None:
        self.analyzer = analyzer

    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        register(self.analyzer)


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[Served, Gated]]:
    analyzer = Gated()
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    config = make(tmp_path, **{"serve.queue_limit": 1, "serve.batch_size": 1, "serve.batch_wait_ms": 0,
                               "serve.deadline_s": 20})  # fmt: skip
    with registered(pm, Plugin(analyzer), "gated-test"), serving(config, pm=pm) as served:
        try:
            yield served, analyzer
        finally:
            analyzer.gate.set()


def wait_until(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def post_in_thread(url: str, data: bytes, name: str, into: dict[str, httpx.Response]) -> threading.Thread:
    def go() -> None:
        into[name] = httpx.post(
            f"{url}/v1/analyze", files={"file": (name, data, "image/jpeg")}, timeout=TIMEOUT
        )

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_full_queue_answers_503_with_retry_after(gated: tuple[Served, Gated], photos: Path) -> None:
    served, analyzer = gated
    answers: dict[str, httpx.Response] = {}
    first = post_in_thread(served.url, (photos / "cat.jpg").read_bytes(), "a.jpg", answers)
    assert analyzer.entered.wait(20)  # a runs (holding the analyzer)
    second = post_in_thread(served.url, (photos / "rocket.jpg").read_bytes(), "b.jpg", answers)
    wait_until(lambda: served.engine._batcher("gated").depth == 1, "b to queue")
    third = httpx.post(
        f"{served.url}/v1/analyze",
        files={"file": ("c.jpg", (photos / "coffee.png").read_bytes(), "image/png")},
    )
    assert third.status_code == 503
    assert third.json()["error"]["code"] == "busy"
    assert int(third.headers["retry-after"]) >= 1
    analyzer.gate.set()
    first.join(30)
    second.join(30)
    assert answers["a.jpg"].status_code == 200 and answers["b.jpg"].status_code == 200
    assert len(analyzer.batches) == 2  # c never ran
    text = httpx.get(f"{served.url}/metrics").text
    assert metric(text, "phototag_rejected_total", analyzer="gated") == 1
    assert metric(text, "phototag_requests_total", route="/v1/analyze", status="503") == 1


def test_client_that_hangs_up_drops_its_queued_work(gated: tuple[Served, Gated], photos: Path) -> None:
    served, analyzer = gated
    answers: dict[str, httpx.Response] = {}
    first = post_in_thread(served.url, (photos / "cat.jpg").read_bytes(), "a.jpg", answers)
    assert analyzer.entered.wait(20)
    # b: a raw HTTP request whose client hangs up while b waits in the queue
    rocket = (photos / "rocket.jpg").read_bytes()
    boundary = "phototagtestboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + rocket
        + f"\r\n--{boundary}--\r\n".encode()
    )
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /v1/analyze HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        wait_until(lambda: served.engine._batcher("gated").depth == 1, "b to queue")
    wait_until(
        lambda: served.engine._batcher("gated").depth == 0, "b to leave the queue when its client left"
    )
    analyzer.gate.set()
    first.join(30)
    assert answers["a.jpg"].status_code == 200
    time.sleep(0.2)  # a dropped request would have run by now
    rocket_hash = hash_file(photos / "rocket.jpg")
    assert all(rocket_hash not in batch for batch in analyzer.batches)
    assert len(analyzer.batches) == 1


def test_deadline_answers_504_and_drops_the_work(tmp_path: Path, photos: Path) -> None:
    analyzer = Gated()
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar"})
    config = make(tmp_path, **{"serve.deadline_s": 0.5, "serve.batch_size": 1})
    with registered(pm, Plugin(analyzer), "gated-test"), serving(config, pm=pm) as served:
        try:
            answers: dict[str, httpx.Response] = {}
            first = post_in_thread(served.url, (photos / "cat.jpg").read_bytes(), "a.jpg", answers)
            assert analyzer.entered.wait(20)
            start = time.monotonic()
            late = httpx.post(
                f"{served.url}/v1/analyze", files={"file": ("b.jpg", (photos / "rocket.jpg").read_bytes())}
            )
            assert late.status_code == 504 and late.json()["error"]["code"] == "deadline"
            assert time.monotonic() - start < 5
        finally:
            analyzer.gate.set()
        first.join(30)
        assert answers["a.jpg"].status_code == 504  # a too: it ran past its deadline while held at the gate
        time.sleep(0.2)
        assert len(analyzer.batches) == 1  # b was dropped before it started


# -- dynamic batching with a tiny CLIP ------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_served(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve-clip")
    config = make(
        tmp,
        **{"plugins.embed.model": str(tiny_model("clip")), "plugins.embed.device": "cpu",
           "serve.batch_size": 16, "serve.batch_wait_ms": 300},
    )  # fmt: skip
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "embed"})
    with serving(config, pm=pm) as served:
        yield served


def test_concurrent_requests_share_batches_and_get_their_own_results(
    clip_served: Served, photos: Path
) -> None:
    files = sorted(p for p in photos.iterdir() if p.suffix in (".jpg", ".png"))
    url = f"{clip_served.url}/v1/analyze"

    def one(client: httpx.Client, path: Path) -> list[float]:
        r = client.post(url, files={"file": (path.name, path.read_bytes())}, data={"embeddings": "true"})
        assert r.status_code == 200, r.text
        return list(r.json()["analyzers"]["embed"]["embedding"]["vector"])

    with httpx.Client(timeout=TIMEOUT) as client:
        alone = {p.name: one(client, p) for p in files}  # one at a time: batches of 1

    async def together() -> list[list[float]]:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:

            async def post(path: Path) -> list[float]:
                r = await client.post(
                    url, files={"file": (path.name, path.read_bytes())}, data={"embeddings": "1"}
                )
                assert r.status_code == 200, r.text
                return list(r.json()["analyzers"]["embed"]["embedding"]["vector"])

            return await asyncio.gather(*(post(p) for p in files * 2))

    vectors = asyncio.run(together())
    for path, vector in zip(files * 2, vectors, strict=True):
        np.testing.assert_allclose(vector, alone[path.name], atol=1e-4, err_msg=path.name)
    text = httpx.get(f"{clip_served.url}/metrics").text
    batches = metric(text, "phototag_batch_size_count", analyzer="embed")
    images = metric(text, "phototag_batch_size_sum", analyzer="embed")
    assert images == 3 * len(files)
    singles = metric(text, "phototag_batch_size_bucket", analyzer="embed", le="1.0")
    assert singles < batches  # some batch gathered more than one request
    assert images - len(files) > batches - len(files)  # the concurrent round averaged more than one a batch


def test_search_and_similar_rank_the_scanned_photos(tmp_path: Path, tiny_model: Any, photos: Path) -> None:
    config = make(
        tmp_path, **{"plugins.embed.model": str(tiny_model("clip")), "plugins.embed.device": "cpu",
                     "metadata.xmp": "false"}
    )  # fmt: skip
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "embed,sidecar"})
    with Pipeline.from_config(config, pm) as pipeline:
        pipeline.process(sorted(photos.iterdir()))
        pipeline.state.close()
    with serving(config, pm=pm) as served:
        cat = photos / "cat.jpg"
        r = httpx.post(
            f"{served.url}/v1/similar", files={"file": ("cat.jpg", cat.read_bytes())}, timeout=TIMEOUT
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results[0]["content_hash"] == hash_file(cat) and results[0]["score"] > 0.999
        assert results[0]["paths"] == [str(cat)]
        by_hash = httpx.post(
            f"{served.url}/v1/similar", json={"content_hash": hash_file(cat), "limit": 3}, timeout=TIMEOUT
        ).json()["results"]
        assert [h["content_hash"] for h in by_hash] == [h["content_hash"] for h in results[:3]]
        scores = [h["score"] for h in results]
        assert scores == sorted(scores, reverse=True)

        found = httpx.get(f"{served.url}/v1/search", params={"q": "a cat", "limit": 4}, timeout=TIMEOUT)
        assert found.status_code == 200, found.text
        hits = found.json()["results"]
        assert len(hits) == 4 and [h["score"] for h in hits] == sorted(
            (h["score"] for h in hits), reverse=True
        )
        # the same ranking as the CLI's: the text vector against every stored embedding
        embedder = served.engine.runtime.get("embed")
        from phototag.plugins.search import rank_by_vector
        from phototag.state import StateDB

        query = np.asarray(embedder.embed_text(["a cat"])[0], dtype=np.float32)  # type: ignore[attr-defined]
        db = StateDB(config.state_db, readonly=True)
        try:
            expected = rank_by_vector(query, db.embeddings(served.engine.fingerprints()["embed"]), 4)
        finally:
            db.close()
        assert [h["content_hash"] for h in hits] == [k for k, _ in expected]


def test_search_without_a_state_db_says_what_to_do(bundled: Served) -> None:
    r = httpx.get(f"{bundled.url}/v1/search", params={"q": "dog"})
    assert r.status_code == 422
    assert "plugins.embed" in r.json()["error"]["message"]


# -- phototag watch --serve -------------------------------------------------------------------------------


@pytest.mark.slow  # starts a daemon process (~12 s of imports on a loaded machine)
def test_watch_serve_shares_one_process_and_one_set_of_models(tmp_path: Path, photos: Path) -> None:
    """The daemon and the API in one process: the counting analyzer (tests/daemon_plugin.py) is loaded once
    and analyses both the photo dropped into the watched folder and the uploaded one."""
    plugin_path = install_counting_plugin(tmp_path / "dist")
    folder = tmp_path / "watched"
    folder.mkdir()
    log = tmp_path / "analyzed.log"
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "state_db": str(tmp_path / "state.db"),
                "metadata": {"xmp": False},
                "watch": {"stability_delay": 0.3, "rescan_interval": 3600},
                "plugins": {"counting": {"log": str(log)}},
            }
        )
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOTAG_", "NOTIFY_", "WATCHDOG_"))}
    env.update({"PYTHONPATH": plugin_path, "PHOTOTAG_PLUGINS": "daemon,sidecar,counting"})
    command = [sys.executable, "-m", "phototag", "watch", "-c", str(config_file), str(folder)]
    out = (tmp_path / "daemon.out").open("wb")
    proc = subprocess.Popen([*command, "--serve", f"127.0.0.1:{port}"], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:

        def listening() -> bool:
            assert proc.poll() is None, (tmp_path / "daemon.out").read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(listening, "the daemon's HTTP service", 60)
        shutil.copy(photos / "cat.jpg", folder / "cat.jpg")
        wait_until(lambda: sidecar_path(folder / "cat.jpg").exists(), "the daemon to tag cat.jpg", 60)
        r = httpx.post(
            f"{url}/v1/analyze", files={"file": ("rocket.jpg", (photos / "rocket.jpg").read_bytes())}
        )
        assert r.status_code == 200, r.text
        assert r.json()["analyzers"]["counting"]["tags"]
        lines = log.read_text().splitlines()
        assert [line for line in lines if line.startswith("load")] == [f"load {proc.pid}"]
        analyzed = [line.split() for line in lines if line.startswith("analyzed")]
        assert {(words[1], words[-1]) for words in analyzed} == {
            (hash_file(folder / "cat.jpg"), str(proc.pid)),
            (hash_file(photos / "rocket.jpg"), str(proc.pid)),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        out.close()
    assert code == 0, (tmp_path / "daemon.out").read_text()
    assert "Traceback" not in (tmp_path / "daemon.out").read_text()


def test_watch_serve_refuses_a_public_address_without_a_key(tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "watched"
    folder.mkdir()
    code = main(["--set", f"state_db={tmp_path / 's.db'}", "watch", str(folder), "--serve", "0.0.0.0:8123"])
    assert code == 2
    assert "refusing to serve 0.0.0.0 without an API key" in capsys.readouterr().err


def test_serve_without_the_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the serve extra were not installed
    assert main(["--set", f"state_db={tmp_path / 's.db'}", "serve"]) == 1
    assert "pip install 'phototag[serve]'" in capsys.readouterr().err
