"""Remote analyzers: run a model plugin on a ``phototag serve`` server (a GPU box) instead of this machine.

A weak machine (a NAS running ``phototag watch``) decodes and downscales each photo as it would for a local
model, and sends the pixels, lossless (PNG), to ``POST /v1/analyzers/{name}`` of the first server that
answers; the server runs the same analyzer through its dynamic batcher and returns each
:class:`~phototag.types.Analysis` in :func:`phototag.serialize.analysis_to_dict`'s exact form. The results are
the local ones: same pixels, same model, no rounding on the way.

``fingerprint()`` and ``model_info()`` are the server's (``GET /v1/analyzers``), equal to the fingerprint the
same analyzer with the same settings has locally, so switching a plugin between local and remote re-runs
nothing; a server with another model or other settings has another fingerprint, and its photos are
analysed again. A batch answered by a server whose fingerprint is not the one recorded for this run fails
(and is retried on the next scan) rather than being recorded under the wrong fingerprint.

Failover: servers are tried in the configured order, the ones that failed recently last. A server that is
down (connection refused, timeout, 5xx) is skipped for :data:`DOWN_SECONDS`; one that is busy (503 with
``Retry-After``) is tried again after that wait, at most ``remote.max_retry_wait`` seconds per batch.
Configuration: ``remote.urls`` for every model plugin, ``plugins.<name>.remote`` for one (``[]``: local).
A remote embed plugin whose server model embeds text (CLIP) also answers ``embed_text`` (``phototag search``)
through ``POST /v1/analyzers/{name}/text``.

Why one module of ~400 lines: the wire form, the failover order and the fingerprint check are one contract with
:mod:`phototag.serve.remote_api`; splitting the client would scatter it.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .config import Config
from .errors import ConfigError, ModelUnavailableError
from .serialize import analysis_from_dict
from .types import Analysis, DecodedImage, Device, ModelInfo, Needs

log = logging.getLogger(__name__)

DOWN_SECONDS = 30.0
"""How long a server that failed is tried only after the others."""
INFO_SECONDS = 300.0
"""How long the servers' analyzer list (fingerprints) is trusted before it is asked again: a server whose
model changed is noticed within this time, without a request per batch."""
LOCAL_NEEDS = Needs(min_ram_mb=64, min_vram_mb=0, devices=("cpu",))
"""What a remote analyzer needs *here*: a CPU to encode pixels. The server's needs are in ``remote_needs``."""


def remote_urls(name: str, config: Config) -> tuple[str, ...]:
    """The servers that run plugin ``name``: ``plugins.<name>.remote`` when set (``[]``: none, run locally),
    else ``remote.urls``. Raises ConfigError for a value that is not a list of http(s) URLs."""
    raw = config.plugins.get(name) or {}
    own = raw.get("remote") if isinstance(raw, Mapping) else None
    key = f"plugins.{name}.remote" if own is not None else "remote.urls"
    urls = own if own is not None else config.remote.urls
    if isinstance(urls, str) or not isinstance(urls, Sequence):
        raise ConfigError(f"should be a list of URLs (for just one: [{urls}])", key, config.where(key))
    out = []
    for url in urls:
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{url!r} is not an http(s) URL of a phototag server (like http://gpu-box:8000)",
                key,
                config.where(key),
            )
        out.append(str(url).rstrip("/"))
    return tuple(out)


@dataclass(frozen=True)
class ServerAnalyzer:
    """One entry of a server's ``GET /v1/analyzers``."""

    url: str
    name: str
    task: str
    fingerprint: str
    model: ModelInfo
    input_size: int
    needs: Needs
    embeds_text: bool = False

    @classmethod
    def parse(cls, url: str, d: Mapping[str, Any]) -> ServerAnalyzer:
        needs = d.get("needs") or {}
        info = d.get("model_info") or {}
        tasks = d.get("tasks") or [d.get("task", "")]
        return cls(
            url=url,
            name=str(d["name"]),
            task=str(tasks[0]),
            fingerprint=str(d["fingerprint"]),
            model=ModelInfo(str(info.get("id", d["name"])), str(info.get("revision", ""))),
            input_size=int(d.get("input_size", 0)),
            needs=Needs(
                int(needs.get("min_ram_mb", 256)),
                int(needs.get("min_vram_mb", 0)),
                tuple(needs.get("devices", ("cuda", "mps", "cpu"))),
            ),
            embeds_text=bool(d.get("embeds_text", False)),
        )


class RemoteError(ModelUnavailableError):
    """No server could run the batch; the message names each server, what went wrong there, and the fix."""


class RemoteAnalyzer:
    """An :class:`~phototag.types.Analyzer` whose model runs on a ``phototag serve`` server.

    ``urls``: the servers, in order. ``sleep`` and ``clock`` are injectable for tests of the waiting logic;
    ``transport`` for an httpx transport (tests, proxies).
    """

    def __init__(
        self,
        name: str,
        urls: Sequence[str],
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retry_wait: float = 60.0,
        task: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not urls:
            raise ValueError("a remote analyzer needs at least one server URL")
        self.name = name
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.needs = LOCAL_NEEDS
        self.max_retry_wait = max_retry_wait
        self._fallback_task = task or name
        self._sleep = sleep
        self._clock = clock
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=5.0), transport=transport
        )
        self._lock = threading.Lock()
        self._info: ServerAnalyzer | None = None
        self._info_at = -INFO_SECONDS
        self._down_until: dict[str, float] = {}

    @classmethod
    def from_config(cls, name: str, urls: Sequence[str], config: Config) -> RemoteAnalyzer:
        r = config.remote
        return cls(name, urls, api_key=r.api_key, timeout=r.timeout, max_retry_wait=r.max_retry_wait)

    # -- identity (the server's) ----------------------------------------------------------------------------

    @property
    def task(self) -> str:
        return self._info.task if self._info is not None else self._fallback_task

    @property
    def input_size(self) -> int:
        """The server analyzer's input size: this machine decodes the photo to it, as it would locally (0
        while no server answered: then this analyzer has no fingerprint and no photo to decode for)."""
        try:
            return self.info().input_size
        except RemoteError:
            return 0

    @property
    def remote_needs(self) -> Needs:
        return self.info().needs

    def fingerprint(self) -> str:
        return self.info().fingerprint

    def model_info(self) -> ModelInfo:
        return self.info().model

    def info(self) -> ServerAnalyzer:
        """The servers' description of this analyzer, asked at most every :data:`INFO_SECONDS` seconds; while
        no server answers, the last answer (so that a server that is down fails the batches it should run,
        with the reason, instead of making the analyzer unknown). Raises :class:`RemoteError` when no server
        ever answered."""
        with self._lock:
            if self._info is not None and self._clock() - self._info_at < INFO_SECONDS:
                return self._info
            try:
                self._info = self._describe()
                self._info_at = self._clock()
            except RemoteError as e:
                if self._info is None:
                    raise
                log.warning("%s; using the last answer (fingerprint %s)", e, self._info.fingerprint)
                self._info_at = self._clock() - INFO_SECONDS + DOWN_SECONDS  # ask again in DOWN_SECONDS
            return self._info

    def _describe(self) -> ServerAnalyzer:
        problems: list[str] = []
        for url in self._order():
            try:
                response = self._http.get(f"{url}/v1/analyzers")
            except httpx.HTTPError as e:
                self._mark_down(url)
                problems.append(f"{url}: {_network_problem(e)}")
                continue
            if response.status_code != 200:
                problems.append(f"{url}: {_status_problem(response, self.name)}")
                if response.status_code >= 500:
                    self._mark_down(url)
                continue
            try:
                entries = response.json()
                found = [e for e in entries if e.get("name") == self.name]
                if not found:
                    names = ", ".join(str(e.get("name")) for e in entries) or "none"
                    problems.append(
                        f"{url}: has no analyzer named {self.name} (it runs: {names}); enable "
                        f"plugins.{self.name} in that server's config"
                    )
                    continue
                return ServerAnalyzer.parse(url, found[0])
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                problems.append(f"{url}: answered GET /v1/analyzers with something else than a phototag "
                                f"server's list ({type(e).__name__}: {e}); is it a phototag server?")  # fmt: skip
        raise RemoteError(self._give_up(problems))

    # -- Analyzer protocol --------------------------------------------------------------------------------

    def load(self, device: Device) -> None:
        """Nothing loads here; check that a server runs this analyzer (the reason, named, if none does)."""
        self.info()

    def unload(self) -> None:
        """Nothing to unload: the model lives on the server."""

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict[str, str | None]:
        """Each server's ``GET /healthz``: None when it answers, else the reason."""
        out: dict[str, str | None] = {}
        for url in self.urls:
            try:
                response = self._http.get(f"{url}/healthz", timeout=5.0)
                out[url] = None if response.status_code == 200 else _status_problem(response, self.name)
            except httpx.HTTPError as e:
                out[url] = _network_problem(e)
        return out

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        """Send the batch to the first server that takes it; the analyses in the images' order."""
        if not images:
            return []
        # the answer fingerprint() last gave (what the pipeline records these results under), not a fresher one
        expected = self._info or self.info()
        files = [("images", (f"{i}.png", _png(im), "image/png")) for i, im in enumerate(images)]
        meta = json.dumps([{"width": im.width, "height": im.height, "format": im.format} for im in images])
        url, response = self._post(f"/v1/analyzers/{self.name}", files=files, data={"meta": meta})
        return self._results(url, response, expected, len(images))

    def embed_text(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """The server's text embeddings (``phototag search``), for an embed analyzer whose model embeds text
        (CLIP, SigLIP); a clear error for one that does not."""
        info = self.info()
        if not info.embeds_text:
            raise ConfigError(
                f"the embed model {info.model.id} on {info.url} cannot embed text; set plugins.{self.name}.model "
                "to a CLIP-family model (e.g. openai/clip-vit-base-patch32) in that server's config and re-scan"
            )
        url, response = self._post(f"/v1/analyzers/{self.name}/text", json={"texts": list(texts)})
        try:
            body = response.json()
            fingerprint, vectors = str(body["fingerprint"]), body["embeddings"]
            out = [tuple(float(x) for x in v) for v in vectors]
        except (ValueError, KeyError, TypeError) as e:
            raise RemoteError(
                f"analyzer {self.name}: {url} answered with something else than embeddings ({e})"
            ) from None
        if fingerprint != info.fingerprint or len(out) != len(texts):
            raise RemoteError(
                f"analyzer {self.name}: {url} runs another model (fingerprint {fingerprint}) than the one the "
                f"photos were embedded with ({info.fingerprint}): configure the same model on every server"
            )
        return out

    def _post(self, path: str, **request: Any) -> tuple[str, httpx.Response]:
        """POST to the first server that answers 200: the next one when one is down or refuses; every server
        busy (503 or 429): again after the shortest ``Retry-After``, up to ``max_retry_wait`` seconds in all."""
        problems: list[str] = []
        waited = 0.0
        while True:
            busy: list[float] = []
            for url in self._order():
                try:
                    response = self._http.post(f"{url}{path}", **request)
                except httpx.HTTPError as e:
                    self._mark_down(url)
                    problems.append(f"{url}: {_network_problem(e)}")
                    continue
                if response.status_code == 200:
                    return url, response
                problems.append(f"{url}: {_status_problem(response, self.name)}")
                if response.status_code in (429, 503):  # busy: its queue is full
                    busy.append(_retry_after(response))
                elif response.status_code >= 500:
                    self._mark_down(url)
            if not busy:
                raise RemoteError(self._give_up(problems))
            wait = min(busy)
            if waited + wait > self.max_retry_wait:
                raise RemoteError(
                    self._give_up(
                        problems, f" (waited {waited:.0f} s for busy servers: remote.max_retry_wait)"
                    )
                )
            log.info("%s: every server is busy; trying again in %.1f s", self.name, wait)
            self._sleep(wait)
            waited += wait
            problems = []

    def _results(
        self, url: str, response: httpx.Response, expected: ServerAnalyzer, n: int
    ) -> list[Analysis]:
        try:
            body = response.json()
            fingerprint = str(body["fingerprint"])
            results = [analysis_from_dict(d) for d in body["results"]]
        except (ValueError, KeyError, TypeError) as e:
            raise RemoteError(
                f"analyzer {self.name}: {url} answered with something else than a phototag server's results "
                f"({type(e).__name__}: {e}); check that the URL is a phototag server of the same version"
            ) from None
        if fingerprint != expected.fingerprint:
            with self._lock:
                self._info_at = -INFO_SECONDS  # ask again before the next batch
            raise RemoteError(
                f"analyzer {self.name}: {url} runs another model or other settings (fingerprint {fingerprint}) "
                f"than {expected.url} (fingerprint {expected.fingerprint}), which this run recorded; these "
                "photos are analysed again on the next scan. Configure the same model on every server in "
                f"plugins.{self.name}.remote / remote.urls"
            )
        if len(results) != n:
            raise RemoteError(f"analyzer {self.name}: {url} returned {len(results)} results for {n} photos")
        return results

    # -- servers ------------------------------------------------------------------------------------------

    def _order(self) -> list[str]:
        """The servers in the configured order, the ones that failed in the last :data:`DOWN_SECONDS` last."""
        now = self._clock()
        return sorted(self.urls, key=lambda u: self._down_until.get(u, 0.0) > now)

    def _mark_down(self, url: str) -> None:
        self._down_until[url] = self._clock() + DOWN_SECONDS

    def _give_up(self, problems: list[str], note: str = "") -> str:
        listed = "; ".join(problems)
        return (
            f"analyzer {self.name}: no remote server could run it{note}: {listed}. Start `phototag serve` "
            f"there (with plugins.{self.name} enabled), fix remote.urls / plugins.{self.name}.remote, or set "
            f"plugins.{self.name}.remote: [] to run it on this machine"
        )


def _png(image: DecodedImage) -> bytes:
    """The pixels, lossless: the server analyses exactly what a local model would have seen."""
    buf = io.BytesIO()
    image.image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:  # an HTTP date: not sent by phototag servers
        return 1.0


def _network_problem(e: httpx.HTTPError) -> str:
    if isinstance(e, httpx.TimeoutException):
        return f"no answer in time ({type(e).__name__}); raise remote.timeout if batches are slow there"
    if isinstance(e, httpx.ConnectError):
        return f"cannot connect ({e}); is `phototag serve` running there and reachable from here?"
    return f"{type(e).__name__}: {e}"


def _status_problem(response: httpx.Response, name: str) -> str:
    try:
        error = response.json().get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = None
    message = message or response.text[:200] or response.reason_phrase
    status = response.status_code
    if status == 401:
        return (
            f"401 {message}: set remote.api_key (or PHOTOTAG_REMOTE__API_KEY) to that server's serve.api_key"
        )
    if status == 404:
        return f"404 {message}: that server does not run analyzer {name}, or is not a phototag server"
    return f"{status} {message}"
