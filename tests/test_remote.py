"""Remote analyzers: a scan whose models run on a real ``phototag serve`` on a loopback port.

Real server (uvicorn in a thread, :func:`phototag.serve.testing.running_server`), real httpx client, the
bundled offline models on both sides, real exiftool and SQLite. Busy servers are a real HTTP proxy in front of
the real server that answers 503 with Retry-After before passing requests on; dead servers are closed ports.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from phototag.config import Config
from phototag.errors import ConfigError
from phototag.manager import get_plugin_manager
from phototag.outcomes import Outcome
from phototag.pipeline import Pipeline
from phototag.registration import register_plugins
from phototag.remote import RemoteAnalyzer, RemoteError, remote_urls
from phototag.serialize import analysis_from_dict, analysis_to_dict
from phototag.serve.testing import running_server
from phototag.types import Analysis, Answer, Region, Tag

PLUGINS = "classify,detect,embed,xmp,sidecar"
"""Faces (Haar at 640 px) left out: the slowest model adds time, not coverage (remote is model-agnostic)."""
SERVER_SETS = {"plugins.faces.enabled": "false"}


def server_pm() -> Any:
    """The servers' plugins: the model plugins these tests use, whatever else is installed."""
    manager, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "classify,detect,embed"})
    return manager


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real phototag server for the module: the bundled classify, detect and embed models."""
    from phototag.config import load_config

    state = tmp_path_factory.mktemp("server") / "state.db"
    config = load_config(None, overrides={"state_db": str(state), **SERVER_SETS}, environ={})
    with running_server(config, pm=server_pm()) as url:
        yield url


@pytest.fixture
def pm():  # type: ignore[no-untyped-def]
    manager, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": PLUGINS})
    return manager


@pytest.fixture
def three(photos: Path) -> list[Path]:
    keep = ["cat.jpg", "motorcycle.jpg", "grace_hopper.jpg"]
    for p in photos.iterdir():
        if p.name not in keep:
            p.unlink()
    return [photos / k for k in keep]


def dead_url() -> str:
    """A loopback port nobody listens on (bound, then closed): connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def scan(config: Config, pm: Any, paths: list[Path]) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    with Pipeline.from_config(config, pm) as pipeline:
        pipeline.run(paths, on_outcome=lambda o: outcomes.__setitem__(o.path.name, o))
        pipeline.state.close()
    return outcomes


def sidecar(photo: Path) -> dict[str, Any]:
    """The JSON sidecar without the timings (the only thing that may differ between two runs)."""
    doc = json.loads(photo.with_name(photo.name + ".phototag.json").read_text())
    for run in doc["analyzers"].values():
        run.pop("seconds", None)
    doc.pop("written", None)  # when it was written
    return doc


def xmp(photo: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["exiftool", "-j", "-struct", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject", "-XMP-iptcExt:ImageRegion",
         "-XMP-mwg-rs:RegionInfo", str(photo.with_name(photo.name + ".xmp"))],
        capture_output=True, check=True,
    )  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)[0]
    doc.pop("SourceFile")
    return doc


# -- the wire form ------------------------------------------------------------------------------------------------


def test_exact_wire_form_round_trips() -> None:
    import numpy as np

    vector = tuple(float(x) for x in np.random.default_rng(1).standard_normal(64).astype(np.float32))
    analysis = Analysis(
        tags=(Tag("Cat", 0.123456789012), Tag("Tabby", 1 / 3, ("Animals", "Cat", "Tabby"))),
        regions=(Region("dog", 0.9876543219, 0.1 / 3, 0.2, 0.3333333333333, 0.4, "object"),),
        caption="a cat",
        answers=(Answer("Is it night?", "no", 0.7000000001, name="night", xmp="XMP-photoshop:Headline"),),
        embedding=vector,
        extra={"scores": [0.1, 0.25]},
    )
    wire = json.loads(json.dumps(analysis_to_dict(analysis, exact=True)))
    assert analysis_from_dict(wire) == analysis
    # the sidecar form still rounds (unchanged)
    assert analysis_to_dict(analysis)["tags"][0]["score"] == 0.123457


# -- configuration ------------------------------------------------------------------------------------------------


def test_config_picks_plugin_urls_then_global_and_rejects_non_urls(
    make_config: Callable[..., Config],
) -> None:
    config = make_config(**{"remote.urls": "[http://gpu:8000/]", "plugins.detect.remote": "[]",
                            "plugins.embed.remote": "[http://other:8000]"})  # fmt: skip
    assert remote_urls("classify", config) == ("http://gpu:8000",)
    assert remote_urls("detect", config) == ()
    assert remote_urls("embed", config) == ("http://other:8000",)
    with pytest.raises(
        ConfigError, match=r"plugins\.classify\.remote.*'gpu-box:8000' is not an http\(s\) URL"
    ):
        remote_urls("classify", make_config(**{"plugins.classify.remote": "[gpu-box:8000]"}))


def test_plugin_with_urls_registers_a_remote_analyzer(make_config: Callable[..., Config], pm: Any) -> None:
    found = register_plugins(make_config(**{"plugins.classify.remote": "[http://gpu:8000]"}), pm)
    kinds = {a.name: type(a).__name__ for a in found.analyzers}
    assert kinds["classify"] == "RemoteAnalyzer" and kinds["detect"] != "RemoteAnalyzer"


# -- against a real server ----------------------------------------------------------------------------------------


def test_server_fingerprint_equals_local(server: str, make_config: Callable[..., Config], pm: Any) -> None:
    local = {a.name: a for a in register_plugins(make_config(), pm).analyzers}
    for name in ("classify", "detect", "embed"):
        remote = RemoteAnalyzer(name, [server])
        assert remote.fingerprint() == local[name].fingerprint()
        assert remote.model_info() == local[name].model_info()
        assert remote.task == local[name].task and remote.input_size == local[name].input_size
        assert remote.health() == {server: None}
        remote.close()


def test_remote_scan_is_identical_to_local_and_switching_reruns_nothing(
    server: str, three: list[Path], tmp_path: Path, make_config: Callable[..., Config], pm: Any
) -> None:
    other = tmp_path / "remote"
    shutil.copytree(three[0].parent, other)
    local_config = make_config()
    remote_config = make_config(**{"remote.urls": f"[{server}]", "state_db": str(tmp_path / "remote.db")})

    local = scan(local_config, pm, three)
    remote = scan(remote_config, pm, [other / p.name for p in three])
    assert {o.status for o in local.values()} == {o.status for o in remote.values()} == {"tagged"}
    for photo in three:
        assert sidecar(other / photo.name) == sidecar(photo), photo.name
        assert xmp(other / photo.name) == xmp(photo), photo.name
    assert "Cat" in sidecar(other / "cat.jpg")["keywords"]
    assert sidecar(other / "motorcycle.jpg")["analyzers"]["detect"]["regions"]

    # local results, now remote: nothing runs again; and the other way round
    remote_on_local_db = make_config(**{"remote.urls": f"[{server}]"})
    local_on_remote_db = make_config(state_db=str(tmp_path / "remote.db"))
    assert {o.status for o in scan(remote_on_local_db, pm, three).values()} == {"skipped"}
    assert {o.status for o in scan(local_on_remote_db, pm, [other / p.name for p in three]).values()} == {
        "skipped"
    }


def test_failover_to_the_next_server(
    server: str, three: list[Path], make_config: Callable[..., Config], pm: Any
) -> None:
    dead = dead_url()
    config = make_config(**{"remote.urls": f"[{dead}, {server}]"})
    outcomes = scan(config, pm, three)
    assert {o.status for o in outcomes.values()} == {"tagged"}
    assert "Cat" in sidecar(three[0])["keywords"]
    remote = RemoteAnalyzer("classify", [dead, server])
    health = remote.health()
    assert health[server] is None and "cannot connect" in str(health[dead])
    remote.close()


class BusyProxy:
    """A real HTTP proxy in front of ``upstream`` that answers the first ``busy`` analysis requests with 503 and
    ``Retry-After: 1``, as a phototag server with a full queue does, and passes everything else on."""

    def __init__(self, upstream: str, busy: int) -> None:
        self.upstream, self.busy, self.refused = upstream, busy, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and proxy.refused < proxy.busy:
                    proxy.refused += 1
                    payload = b'{"error":{"code":"busy","message":"the queue of classify is full"}}'
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                }
                r = httpx.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                self.send_response(r.status_code)
                self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = _relay

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> BusyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_busy_server_is_retried_after_retry_after(server: str, three: list[Path]) -> None:
    from phototag.testing import decoded

    waits: list[float] = []
    images = [decoded(p, 300) for p in three]
    expected = RemoteAnalyzer("classify", [server]).analyze(images)
    with BusyProxy(server, busy=2) as proxy:
        remote = RemoteAnalyzer("classify", [proxy.url], sleep=lambda s: waits.append(s))
        assert remote.analyze(images) == expected
        assert proxy.refused == 2 and waits == [1.0, 1.0]
        # waiting is bounded: more refusals than remote.max_retry_wait allows -> a clear error
        proxy.refused, proxy.busy = 0, 100
        bounded = RemoteAnalyzer("classify", [proxy.url], max_retry_wait=3, sleep=lambda s: waits.append(s))
        with pytest.raises(RemoteError, match=r"waited 3 s for busy servers: remote.max_retry_wait.*503"):
            bounded.analyze(images)
        remote.close()
        bounded.close()


def test_all_servers_dead_fails_those_photos_clearly_and_the_run_goes_on(
    server: str, three: list[Path], make_config: Callable[..., Config], pm: Any
) -> None:
    dead1, dead2 = dead_url(), dead_url()
    config = make_config(**{"plugins.classify.remote": f"[{dead1}, {dead2}]"})
    outcomes = scan(config, pm, three)
    assert {o.status for o in outcomes.values()} == {"failed"}
    message = outcomes["cat.jpg"].message
    assert dead1 in message and dead2 in message and "cannot connect" in message
    assert "phototag serve" in message and "plugins.classify.remote: []" in message
    # the local analyzers' results were written and recorded
    doc = sidecar(three[1])
    assert doc["analyzers"]["detect"]["regions"] and "error" in doc["analyzers"]["classify"]
    # the server comes back: only classify runs on the next scan
    fixed = make_config(**{"plugins.classify.remote": f"[{dead1}, {server}]"})
    assert {o.status for o in scan(fixed, pm, three).values()} == {"tagged"}
    assert "Cat" in sidecar(three[0])["keywords"]


def test_server_dies_mid_run(
    three: list[Path], tmp_path: Path, make_config: Callable[..., Config], pm: Any
) -> None:
    from phototag.config import load_config

    server_config = load_config(
        None, overrides={"state_db": str(tmp_path / "s.db"), "plugins.detect.enabled": "false",
                         "plugins.embed.enabled": "false", **SERVER_SETS}, environ={},
    )  # fmt: skip
    with running_server(server_config, pm=server_pm()) as url:
        config = make_config(batch_size="1", **{"plugins.classify.remote": f"[{url}]"})
        pipeline = Pipeline.from_config(config, pm)
        first = pipeline.process(three[:1])
        now = [0.0]
        watcher = RemoteAnalyzer("classify", [url], clock=lambda: now[0])
        known = watcher.fingerprint()
    assert first[0].status == "tagged"
    rest = pipeline.process(three[1:])
    pipeline.close()
    pipeline.state.close()
    assert [o.status for o in rest] == ["failed", "failed"]
    assert url in rest[0].message and "no remote server could run it" in rest[0].message
    now[0] += 3600  # long after the servers' answer went stale: asked again, no answer, the last one stands
    assert watcher.fingerprint() == known
    watcher.close()
    assert sidecar(three[1])["analyzers"]["detect"]["regions"]  # detect ran here and was written


def test_server_rejects_bad_requests_clearly(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        r = client.post("/v1/analyzers/classify", files=[("images", ("x.png", b"not an image", "image/png"))])
        assert r.status_code == 400 and r.json()["error"]["code"] == "image_not_decodable"
        r = client.post("/v1/analyzers/ocr", files=[("images", ("x.png", b"x", "image/png"))])
        assert r.status_code == 422 and "plugins.ocr" in r.json()["error"]["message"]
        r = client.post("/v1/analyzers/classify", json={"images": []})
        assert r.status_code == 400 and "multipart" in r.json()["error"]["message"]
    with pytest.raises(RemoteError, match=r"has no analyzer named ocr.*enable plugins\.ocr"):
        RemoteAnalyzer("ocr", [server]).fingerprint()


def test_wrong_api_key_names_the_setting(tmp_path: Path) -> None:
    from phototag.config import load_config

    config = load_config(
        None, overrides={"state_db": str(tmp_path / "s.db"), "serve.api_key": "right", "plugins.detect.enabled":
                         "false", "plugins.embed.enabled": "false", **SERVER_SETS}, environ={},
    )  # fmt: skip
    with running_server(config, pm=server_pm()) as url:
        with pytest.raises(RemoteError, match=r"401 .*set remote.api_key"):
            RemoteAnalyzer("classify", [url], api_key="wrong").fingerprint()
        assert RemoteAnalyzer("classify", [url], api_key="right").fingerprint()


def test_failover_to_a_server_with_other_settings_is_refused(
    server: str, three: list[Path], tmp_path: Path
) -> None:
    """Results are recorded under the fingerprint the run started with: a server whose classifier has another
    threshold (another fingerprint) must not answer for it."""
    from phototag.config import load_config
    from phototag.testing import decoded

    other = load_config(
        None, overrides={"state_db": str(tmp_path / "s.db"), "plugins.classify.threshold": "0.5",
                         "plugins.detect.enabled": "false", "plugins.embed.enabled": "false", **SERVER_SETS},
        environ={},
    )  # fmt: skip
    with running_server(other, pm=server_pm()) as first:
        remote = RemoteAnalyzer("classify", [first, server])
        recorded = remote.fingerprint()
        assert recorded != RemoteAnalyzer("classify", [server]).fingerprint()
    with pytest.raises(RemoteError, match="runs another model or other settings") as caught:
        remote.analyze([decoded(three[0], 300)])
    assert server in str(caught.value) and first in str(caught.value)
    remote.close()


def test_search_through_a_remote_clip(
    server: str,
    tiny_model: Any,
    photos: Path,
    tmp_path: Path,
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NAS whose embed plugin runs on the server can still `phototag search`: the text tower is the server's,
    with the same vectors as locally; a server embedder that cannot embed text says so."""
    from phototag.cli import main
    from phototag.config import load_config
    from phototag.types import Device, TextEmbedder

    with pytest.raises(ConfigError, match=r"cannot embed text.*CLIP-family"):
        RemoteAnalyzer("embed", [server]).embed_text(["a cat"])  # the bundled EfficientNet features
    clip = str(tiny_model("clip"))
    server_config = load_config(
        None, overrides={"state_db": str(tmp_path / "s.db"), "plugins.embed.model": clip,
                         "plugins.classify.enabled": "false", "plugins.detect.enabled": "false", **SERVER_SETS},
        environ={},
    )  # fmt: skip
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "embed"})
    [local] = register_plugins(make_config(**{"plugins.embed.model": clip}), pm).analyzers
    assert isinstance(local, TextEmbedder)
    local.load(Device("cpu"))
    with running_server(server_config, pm=server_pm()) as url:
        remote = RemoteAnalyzer("embed", [url])
        assert remote.fingerprint() == local.fingerprint()
        assert remote.embed_text(["a cat", "a rocket"]) == local.embed_text(["a cat", "a rocket"])
        sets = ["--set", f"plugins.embed.remote=[{url}]", "--set", "plugins.classify.enabled=false",
                "--set", "plugins.detect.enabled=false", "--set", "plugins.faces.enabled=false",
                "--set", f"state_db={tmp_path / 'nas.db'}"]  # fmt: skip
        monkeypatch.setenv("PHOTOTAG_PLUGINS", "embed,sidecar,search")  # the CLI's plugins: no others
        assert main([*sets, "scan", str(photos)]) == 0
        capsys.readouterr()
        assert main([*sets, "search", "a cat", "--json"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # JSON lines, best first
    names = {p.name for p in photos.iterdir()}
    assert len(found) == 6 and all(Path(r["path"]).name in names for r in found)
