"""The service's safety rules against a real server on a loopback port: API keys, body size, URL fetching
(no SSRF), binding; and the pure rules behind them."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from phototag.cli import main
from phototag.config import Config, load_config
from phototag.errors import ConfigError
from phototag.manager import get_plugin_manager
from phototag.serve.commands import parse_address
from phototag.serve.decode import upload_name
from phototag.serve.errors import ServeError
from phototag.serve.security import address_allowed, api_key, bearer_ok, check_bind, fetch_image
from phototag.serve.testing import Served, serving

KEY = "s3cret-key-for-tests"


def make(tmp: Path, **sets: Any) -> Config:
    base = {"state_db": str(tmp / "state.db")}
    base.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in sets.items()})
    return load_config(None, overrides=base, environ={})


def classify_pm() -> Any:
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "classify"})
    return pm


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with an API key and a 16 MB body limit."""
    config = make(tmp_path_factory.mktemp("serve-sec"), **{"serve.api_key": KEY, "serve.max_body_mb": 16})
    with serving(config, pm=classify_pm()) as served:
        yield served


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- API key ------------------------------------------------------------------------------------------


def test_every_route_but_healthz_and_ping_needs_the_key(locked: Served, photos: Path) -> None:
    cat = (photos / "cat.jpg").read_bytes()
    missing = httpx.post(f"{locked.url}/v1/analyze", files={"file": ("cat.jpg", cat)})
    assert missing.status_code == 401
    assert (
        missing.json()["error"]["code"] == "unauthorized"
        and "no API key" in missing.json()["error"]["message"]
    )
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(f"{locked.url}/v1/analyze", files={"file": ("cat.jpg", cat)}, headers=auth("guess"))
    assert wrong.status_code == 401 and "wrong API key" in wrong.json()["error"]["message"]
    basic = httpx.get(f"{locked.url}/metrics", auth=("user", KEY))
    assert basic.status_code == 401
    for path in ("/metrics", "/readyz", "/openapi.json", "/v1/search?q=x"):
        assert httpx.get(f"{locked.url}{path}").status_code == 401, path
    ok = httpx.post(f"{locked.url}/v1/analyze", files={"file": ("cat.jpg", cat)}, headers=auth(), timeout=120)
    assert ok.status_code == 200 and "Cat" in ok.json()["keywords"]
    assert httpx.get(f"{locked.url}/healthz").status_code == 200
    assert httpx.get(f"{locked.url}/metrics", headers=auth()).status_code == 200


def test_refusals_use_each_client_family_error_shape(locked: Served) -> None:
    openai = httpx.post(f"{locked.url}/v1/chat/completions", json={})
    assert openai.status_code == 401 and openai.json()["error"]["type"] == "authentication_error"
    ollama = httpx.post(f"{locked.url}/api/generate", json={})
    assert ollama.status_code == 401 and isinstance(ollama.json()["error"], str)
    photoprism = httpx.post(f"{locked.url}/api/v1/vision/labels", json={})
    assert photoprism.status_code == 401 and photoprism.json()["code"] == 401
    immich = httpx.post(f"{locked.url}/predict", data={"entries": "{}"})
    assert immich.status_code == 401 and "detail" in immich.json()


def test_bearer_compare() -> None:
    assert bearer_ok(f"Bearer {KEY}", KEY) and bearer_ok(f"bearer  {KEY} ", KEY)
    assert not bearer_ok(None, KEY) and not bearer_ok(KEY, KEY) and not bearer_ok(f"Basic {KEY}", KEY)
    assert not bearer_ok(f"Bearer {KEY}x", KEY) and not bearer_ok("Bearer ", KEY)


def test_api_key_from_config_or_environment(tmp_path: Path) -> None:
    assert api_key(make(tmp_path).serve, {}) is None
    assert api_key(make(tmp_path).serve, {"PHOTOTAG_API_KEY": "from-env"}) == "from-env"
    assert api_key(make(tmp_path, **{"serve.api_key": "cfg"}).serve, {"PHOTOTAG_API_KEY": "env"}) == "cfg"
    # PHOTOTAG_API_KEY is not read as a config override (it would be an unknown key)
    config = load_config(None, overrides={}, environ={"PHOTOTAG_API_KEY": "x"})
    assert config.serve.api_key is None


# -- body size ----------------------------------------------------------------------------------------


def test_declared_30mb_body_gets_413_before_it_is_sent(locked: Served) -> None:
    port = int(locked.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/analyze HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {KEY}\r\nContent-Length: {30 * 1024 * 1024}\r\n\r\n".encode()
            + b'{"image": "'
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["error"]["code"] == "too_large"
    assert b"serve.max_body_mb" in body


def test_streamed_30mb_body_gets_413_and_the_server_goes_on(locked: Served, photos: Path) -> None:
    sent = [0]

    def chunks() -> Iterator[bytes]:
        block = b"A" * (1024 * 1024)
        for _ in range(30):
            sent[0] += len(block)
            yield block

    r = httpx.post(
        f"{locked.url}/v1/analyze",
        content=chunks(),  # no Content-Length: chunked, counted as it arrives
        headers={**auth(), "Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    assert httpx.get(f"{locked.url}/healthz").status_code == 200
    cat = (photos / "cat.jpg").read_bytes()
    ok = httpx.post(f"{locked.url}/v1/analyze", files={"file": ("cat.jpg", cat)}, headers=auth(), timeout=120)
    assert ok.status_code == 200


# -- URLs ---------------------------------------------------------------------------------------------


class _Photos(http.server.BaseHTTPRequestHandler):
    """``/cat.jpg``: the photo; ``/to?url``: a redirect to url; ``/loop``: a redirect to itself."""

    hits: ClassVar[list[str]] = []
    body = b""

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        if self.path.startswith(("/to?", "/loop")):
            self.send_response(302)
            self.send_header("Location", self.path.partition("?")[2] or "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def photo_host(photos: Path) -> Iterator[tuple[int, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving cat.jpg: what an SSRF would reach."""
    _Photos.hits = []
    _Photos.body = (photos / "cat.jpg").read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Photos)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Photos.hits
    finally:
        server.shutdown()
        server.server_close()


def test_image_urls_are_not_fetched_by_default(locked: Served, photo_host: tuple[int, list[str]]) -> None:
    port, hits = photo_host
    r = httpx.post(
        f"{locked.url}/v1/analyze", json={"image": f"http://localhost:{port}/cat.jpg"}, headers=auth()
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "url_fetch_disabled" and "serve.fetch_urls" in error["message"]
    assert hits == []


def test_allow_listed_host_resolving_to_loopback_is_refused(
    tmp_path: Path, photo_host: tuple[int, list[str]]
) -> None:
    port, hits = photo_host
    config = make(tmp_path, **{"serve.fetch_urls": "true", "serve.fetch_allowed_hosts": ["localhost"]})
    with serving(config, pm=classify_pm()) as served:
        refused = httpx.post(f"{served.url}/v1/analyze", json={"image": f"http://localhost:{port}/cat.jpg"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "url_address_refused"
        assert "127.0.0.1" in refused.json()["error"]["message"]
        other = httpx.post(f"{served.url}/v1/analyze", json={"image": f"http://127.0.0.1:{port}/cat.jpg"})
        assert other.status_code == 400 and other.json()["error"]["code"] == "url_host_not_allowed"
        scheme = httpx.post(f"{served.url}/v1/analyze", json={"image": "file:///etc/passwd"})
        assert scheme.status_code == 400 and "base64" in scheme.json()["error"]["message"]
    assert hits == []  # nothing reached the private server


def fetch(url: str, tmp_path: Path, **sets: Any) -> bytes:
    """:func:`fetch_image` with ``localhost`` allow-listed and loopback taken as public (only here: the one way
    to exercise the fetch itself offline)."""
    settings = make(
        tmp_path, **{"serve.fetch_urls": "true", "serve.fetch_allowed_hosts": ["localhost"], **sets}
    )
    return asyncio.run(fetch_image(url, settings.serve, is_public=lambda address: address == "127.0.0.1"))


def test_fetch_follows_redirects_by_hand_and_checks_every_hop(
    tmp_path: Path, photo_host: tuple[int, list[str]], photos: Path
) -> None:
    port, hits = photo_host
    base = f"http://localhost:{port}"
    assert fetch(f"{base}/cat.jpg", tmp_path) == (photos / "cat.jpg").read_bytes()
    assert fetch(f"{base}/to?/cat.jpg", tmp_path) == (photos / "cat.jpg").read_bytes()
    hits.clear()
    with pytest.raises(ServeError) as refused:  # a redirect off the allow-list
        fetch(f"{base}/to?http://127.0.0.1:{port}/cat.jpg", tmp_path)
    assert refused.value.code == "url_host_not_allowed" and hits == [f"/to?http://127.0.0.1:{port}/cat.jpg"]
    hits.clear()
    with pytest.raises(ServeError) as looped:
        fetch(f"{base}/loop", tmp_path)
    assert looped.value.code == "url_too_many_redirects" and len(hits) == 4  # the first and 3 redirects
    with pytest.raises(ServeError) as big:
        fetch(f"{base}/cat.jpg", tmp_path, **{"serve.fetch_max_mb": 0.001})
    assert big.value.status == 413


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True), ("2606:4700:4700::1111", True),
        ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.10", False),
        ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
        ("::1", False), ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False), ("240.0.0.1", False),
    ],
)  # fmt: skip
def test_only_public_addresses_are_fetched(address: str, public: bool) -> None:
    assert address_allowed(address) is public


# -- binding ------------------------------------------------------------------------------------------


def test_binding_rules() -> None:
    check_bind("127.0.0.1", None, False)
    check_bind("::1", None, False)
    check_bind("localhost", None, False)
    check_bind("0.0.0.0", KEY, False)
    check_bind("192.168.1.5", None, True)
    for host in ("0.0.0.0", "::", "192.168.1.5", "nas.local"):
        with pytest.raises(ConfigError, match=r"serve\.api_key"):
            check_bind(host, None, False)


def test_serve_refuses_a_public_address_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PHOTOTAG_API_KEY", raising=False)
    code = main(["--set", f"state_db={tmp_path / 's.db'}", "serve", "--host", "0.0.0.0", "--port", "0"])
    assert code == 2
    assert "refusing to serve 0.0.0.0 without an API key" in capsys.readouterr().err


def test_addresses_and_upload_names() -> None:
    assert parse_address("0.0.0.0:9000", 8000) == ("0.0.0.0", 9000)
    assert parse_address(":9000", 8000) == ("127.0.0.1", 9000)
    assert parse_address("localhost", 8000) == ("localhost", 8000)
    assert parse_address("[::1]:9000", 8000) == ("::1", 9000)
    assert upload_name("../../etc/passwd") == "passwd"
    assert upload_name("C:\\Users\\me\\cat.jpg") == "cat.jpg"
    assert upload_name("a\x00b\nc.jpg") == "a_b_c.jpg"
    assert upload_name("..") == "upload" and upload_name(None) == "upload"
