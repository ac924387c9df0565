"""Your own words about photos (issue 19): per-request labels, text-image scores and questions, with tiny random
CLIP, SigLIP and BLIP-VQA models, through :mod:`phototag.adhoc`, the real CLI (``phototag.cli.main`` with the
builtin plugins) and a real server on a loopback port (``/v1/classify``, ``/v1/similarity``, ``/v1/ask``)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from phototag import adhoc
from phototag.cli import main
from phototag.config import Config, load_config
from phototag.files import make_photo
from phototag.hf.classify import HFClassifier
from phototag.hf.embed import HFEmbedder
from phototag.images import decode
from phototag.manager import collect, get_plugin_manager
from phototag.runtime import AnalyzerRuntime
from phototag.serve.testing import Served, running_server, serving
from phototag.types import DecodedImage

NAMES = ["cat.jpg", "coffee.png", "rocket.jpg", "astronaut.jpg"]
LABELS = ["cat", "dog", "a cup of coffee", "a rocket", "an astronaut", "a beach"]
OFF = {"detect": {"enabled": False}, "faces": {"enabled": False}}


# -- setup: tiny models and config files, once per module ---------------------------------------------------


def write_config(folder: Path, plugins: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    # a wide batching window, so that concurrent requests surely meet in one image-tower batch
    serve = {"batch_wait_ms": 150}
    doc = {
        "state_db": str(folder / "state.db"),
        "device": "cpu",
        "serve": serve,
        "plugins": {**OFF, **plugins},
    }
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def configs(tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Config files: ``clip`` (classify + embed CLIP, BLIP-VQA), ``siglip`` (classify SigLIP, no embed: the
    classifier serves similarity too), ``default`` (the bundled fixed-label ImageNet classifier, no VQA)."""
    root = tmp_path_factory.mktemp("adhoc")
    clip, siglip, vqa = tiny_model("clip"), tiny_model("siglip"), tiny_model("blip_vqa")
    return {
        "clip": write_config(
            root / "clip",
            {
                "classify": {"model": str(clip)},
                "embed": {"model": str(clip)},
                "vqa": {"enabled": True, "model": str(vqa)},
            },
        ),
        "siglip": write_config(
            root / "siglip", {"classify": {"model": str(siglip)}, "embed": {"enabled": False}}
        ),
        "default": write_config(root / "default", {"embed": {"enabled": False}}),
    }


def runtime_for(config_file: Path) -> AnalyzerRuntime:
    """The runtime the front ends build: every analyzer the builtin plugins register for the config."""
    config = load_config(config_file, environ={})
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "classify,embed,vqa"})

    def fail(plugin: str, e: Exception) -> None:
        raise e

    return AnalyzerRuntime(config, [a for _, a in collect(pm, "register_analyzers", fail, config=config)])


@pytest.fixture(scope="module")
def clip_rt(configs: dict[str, Path]) -> Iterator[AnalyzerRuntime]:
    runtime = runtime_for(configs["clip"])
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def siglip_rt(configs: dict[str, Path]) -> Iterator[AnalyzerRuntime]:
    runtime = runtime_for(configs["siglip"])
    yield runtime
    runtime.close()


def decoded(config: Config, folder: Path, names: list[str], size: int) -> list[DecodedImage]:
    return [decode(make_photo(folder / n), size, config.image) for n in names]


@pytest.fixture(scope="module")
def clip_images(clip_rt: AnalyzerRuntime, sample_photos_master: Path) -> list[DecodedImage]:
    return decoded(clip_rt.config, sample_photos_master, NAMES, adhoc.input_size(clip_rt, "classify"))


def scores_of(result: adhoc.Classified) -> dict[str, float]:
    return {s.label: s.score for s in result.labels}


# -- classify -------------------------------------------------------------------------------------------------


def test_clip_classify_ranks_labels_by_softmax_and_matches_the_vocabulary_path(
    clip_rt: AnalyzerRuntime, clip_images: list[DecodedImage], tmp_path: Path
) -> None:
    results = adhoc.classify(clip_rt, clip_images, LABELS, cache=adhoc.TextVectorCache())
    assert len(results) == len(clip_images)
    for result in results:
        scores = [s.score for s in result.labels]
        assert scores == sorted(scores, reverse=True)  # best first
        assert sorted(s.label for s in result.labels) == sorted(LABELS)
        assert sum(scores) == pytest.approx(1.0, abs=1e-4)  # CLIP: a softmax over the labels
        assert result.activation == "softmax" and result.analyzer == "classify"
    assert len({r.labels[0].label for r in results} | {tuple(scores_of(r).values()) for r in results}) > 1
    # the default templates are the classifier's (here the bundled vocabulary's prompt ensemble)
    classifier = clip_rt.get("classify")
    assert isinstance(classifier, HFClassifier) and len(classifier.templates) == 3
    explicit = adhoc.classify(clip_rt, clip_images, LABELS, list(classifier.templates))
    assert [r.labels for r in explicit] == [r.labels for r in results]
    # the same labels as a configured vocabulary score the same through the classify backend itself
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"{label}\n" for label in LABELS))
    templates = ("a photo of {}.", "a picture of a {}")
    results = adhoc.classify(clip_rt, clip_images, LABELS, templates)
    settings = HFClassifier.Settings(model=classifier.settings.model, vocabulary=vocab, templates=templates)
    own = HFClassifier("classify", settings, clip_rt.config)
    own.load(clip_rt.place("classify"))
    try:
        expected = own.scores(clip_images)
    finally:
        own.unload()
    for result, row in zip(results, expected, strict=True):
        got = scores_of(result)
        np.testing.assert_allclose([got[label] for label in LABELS], row, atol=1e-5)


def test_scores_change_with_the_labels_and_templates(
    clip_rt: AnalyzerRuntime, clip_images: list[DecodedImage]
) -> None:
    image = clip_images[:1]
    [a] = adhoc.classify(clip_rt, image, ["cat", "dog"])
    [b] = adhoc.classify(clip_rt, image, ["cat", "a red car"])
    [c] = adhoc.classify(clip_rt, image, ["cat", "dog"], templates=["a blurry picture of {}"])
    assert scores_of(a)["cat"] != pytest.approx(scores_of(b)["cat"], abs=1e-6)
    assert scores_of(a)["cat"] != pytest.approx(scores_of(c)["cat"], abs=1e-6)
    [forced] = adhoc.classify(clip_rt, image, ["cat", "dog"], activation="sigmoid")
    assert forced.activation == "sigmoid" and sum(scores_of(forced).values()) != pytest.approx(1.0)


def test_batch_results_equal_single_results(
    clip_rt: AnalyzerRuntime, clip_images: list[DecodedImage]
) -> None:
    batch = adhoc.classify(clip_rt, clip_images, LABELS)
    for image, together in zip(clip_images, batch, strict=True):
        [alone] = adhoc.classify(clip_rt, [image], LABELS)
        assert [s.label for s in alone.labels] == [s.label for s in together.labels]
        np.testing.assert_allclose(
            [s.score for s in alone.labels], [s.score for s in together.labels], atol=1e-5
        )


def test_siglip_scores_each_label_alone_with_a_sigmoid(
    siglip_rt: AnalyzerRuntime, sample_photos_master: Path
) -> None:
    images = decoded(
        siglip_rt.config, sample_photos_master, NAMES[:2], adhoc.input_size(siglip_rt, "classify")
    )
    one = adhoc.classify(siglip_rt, images, ["cat"])
    many = adhoc.classify(siglip_rt, images, LABELS)
    for a, b in zip(one, many, strict=True):
        assert a.activation == b.activation == "sigmoid"
        assert scores_of(a)["cat"] == pytest.approx(
            scores_of(b)["cat"], abs=1e-5
        )  # independent of the others
        assert 0.0 < scores_of(a)["cat"] < 1.0
    assert sum(scores_of(many[0]).values()) != pytest.approx(1.0, abs=1e-3)
    [soft] = adhoc.classify(siglip_rt, images[:1], LABELS, activation="softmax")
    assert sum(scores_of(soft).values()) == pytest.approx(1.0, abs=1e-4)


def test_repeated_labels_are_encoded_once(clip_rt: AnalyzerRuntime, clip_images: list[DecodedImage]) -> None:
    cache = adhoc.TextVectorCache(size=8)
    classifier = clip_rt.get("classify")
    assert isinstance(classifier, HFClassifier)
    one = ["a photo of {}."]
    first = adhoc.classify(clip_rt, clip_images[:1], ["cat", "dog"], one, cache=cache)
    encoded = classifier.texts_encoded
    again = adhoc.classify(clip_rt, clip_images[:1], ["dog", "cat"], one, cache=cache)
    assert classifier.texts_encoded == encoded and cache.hits == 2 and cache.misses == 2
    assert scores_of(first[0]) == pytest.approx(scores_of(again[0]), abs=1e-6)
    adhoc.classify(clip_rt, clip_images[:1], [f"label {i}" for i in range(10)], one, cache=cache)
    assert classifier.texts_encoded == encoded + 10 and len(cache._items) == 8  # bounded: oldest dropped


def test_bad_labels_and_templates_are_refused(
    clip_rt: AnalyzerRuntime, clip_images: list[DecodedImage]
) -> None:
    for labels, templates, match in [
        ([], None, "no labels"),
        (["cat", " "], None, "empty label"),
        (["cat", "cat"], None, "given twice"),
        (["cat"], ["a photo of a cat"], "must contain"),
        (["cat"], ["a {0} of {}"], "only the"),
    ]:
        with pytest.raises(adhoc.BadInput, match=match):
            adhoc.classify(clip_rt, clip_images[:1], labels, templates)


def test_fixed_label_classifier_names_what_to_configure(configs: dict[str, Path]) -> None:
    runtime = runtime_for(configs["default"])
    with pytest.raises(adhoc.NotConfigured) as e:
        adhoc.classify(runtime, [], ["cat"])
    message = str(e.value)
    assert "efficientnet-lite0 is fixed-label" in message
    assert "plugins.classify.model: openai/clip-vit-base-patch32" in message
    with pytest.raises(adhoc.NotConfigured, match=r"plugins\.vqa\.enabled: true"):
        adhoc.ask(runtime, None, "what is this?")  # type: ignore[arg-type]
    with pytest.raises(adhoc.NotConfigured, match="CLIP/SigLIP-family"):
        adhoc.similarity(runtime, None, ["a cat"])  # type: ignore[arg-type]


# -- similarity -----------------------------------------------------------------------------------------------


def test_similarity_is_the_cosine_of_the_embed_models_vectors(
    clip_rt: AnalyzerRuntime, clip_images: list[DecodedImage]
) -> None:
    texts = ["a cat", "a red car", "a cup of coffee"]
    scored = adhoc.similarity(clip_rt, clip_images[0], texts)
    assert scored.analyzer == "embed" and len(scored.scores) == 3
    assert len(set(scored.scores)) == 3  # scores change with the texts
    # computed independently: the embed analyzer's own text and image vectors
    config = clip_rt.config
    embedder = HFEmbedder("embed", HFEmbedder.Settings(model=clip_rt.get("embed").settings.model), config)  # type: ignore[attr-defined]
    embedder.load(clip_rt.place("embed"))
    try:
        image = embedder.image_vectors(clip_images[:1]).numpy()[0]
        expected = [float(np.asarray(v) @ image) for v in embedder.embed_text(texts)]
    finally:
        embedder.unload()
    np.testing.assert_allclose(scored.scores, expected, atol=1e-5)
    assert all(-1.0 <= s <= 1.0 for s in scored.scores)


def test_pair_batches_equal_single_pairs(clip_rt: AnalyzerRuntime, clip_images: list[DecodedImage]) -> None:
    queries = ["a cat", "coffee", "a rocket", "a cat"]
    pairs = list(zip(queries, clip_images, strict=True))
    batch = adhoc.pair_similarity(clip_rt, pairs)
    singles = [adhoc.pair_similarity(clip_rt, [pair]).scores[0] for pair in pairs]
    np.testing.assert_allclose(batch.scores, singles, atol=1e-5)
    # the classifier's towers serve similarity where no CLIP embed model is configured
    other = adhoc.pair_similarity(clip_rt, pairs, analyzer="classify")
    assert other.analyzer == "classify"
    np.testing.assert_allclose(other.scores, batch.scores, atol=1e-5)  # same model, same vectors


def test_siglip_similarity_through_the_classifier(
    siglip_rt: AnalyzerRuntime, sample_photos_master: Path
) -> None:
    [image] = decoded(siglip_rt.config, sample_photos_master, ["cat.jpg"], 32)
    scored = adhoc.similarity(siglip_rt, image, ["a cat", "a dog"])
    assert scored.analyzer == "classify" and scored.scores[0] != scored.scores[1]


# -- ask ------------------------------------------------------------------------------------------------------


def test_ask_answers_like_a_configured_question(clip_rt: AnalyzerRuntime, sample_photos_master: Path) -> None:
    size = adhoc.input_size(clip_rt, "ask")
    [image] = decoded(clip_rt.config, sample_photos_master, ["cat.jpg"], size)
    answered = adhoc.ask(clip_rt, image, "what animal is this?")
    assert answered.analyzer == "vqa" and answered.question == "what animal is this?"
    assert answered.answer and answered.score is not None and 0.0 < answered.score <= 1.0
    # the same question through the VQA analyzer's own path (configured questions) gives the same answer
    vqa = clip_rt.get("vqa")
    with adhoc.loaded(clip_rt, "vqa"):
        [[generated]] = vqa.ask([image], ["what animal is this?"])  # type: ignore[attr-defined]
    assert generated.text == answered.answer
    with pytest.raises(adhoc.BadInput, match="empty question"):
        adhoc.ask(clip_rt, image, "  ")


# -- the CLI --------------------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_classify_json_and_a_photo_that_is_not_an_image(
    configs: dict[str, Path],
    photos: Path,
    capsys: pytest.CaptureFixture[str],
    clip_rt: AnalyzerRuntime,
    clip_images: list[DecodedImage],
) -> None:
    bad = photos / "notes.jpg"
    bad.write_text("this is not an image")
    args = ["-c", str(configs["clip"]), "classify", *(str(photos / n) for n in NAMES), str(bad)]
    code, out, err = cli(capsys, *args, "--labels", "cat,dog", "--labels", "a rocket", "--json")
    assert code == 1  # one photo failed; the others are answered
    assert f"{bad}" in err and "notes.jpg" in err
    docs = [json.loads(line) for line in out.splitlines()]
    assert [Path(d["path"]).name for d in docs] == NAMES
    direct = adhoc.classify(clip_rt, clip_images, ["cat", "dog", "a rocket"])
    for doc, result in zip(docs, direct, strict=True):
        assert [x["label"] for x in doc["labels"]] == [s.label for s in result.labels]
        np.testing.assert_allclose(
            [x["score"] for x in doc["labels"]], [s.score for s in result.labels], atol=1e-4
        )
        assert doc["activation"] == "softmax"
    code, out, _ = cli(capsys, *args[:-1], "-l", "cat,dog", "-t", "a blurry photo of {}")
    assert code == 0 and out.splitlines()[0] == str(photos / NAMES[0])
    assert out.splitlines()[1].split()[1] in ("cat", "dog")


def test_cli_score_and_ask(
    configs: dict[str, Path], photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ["-c", str(configs["clip"])]
    paths = [str(photos / n) for n in NAMES]
    code, out, _ = cli(capsys, *config, "score", "--query", "a red car", "--query", "a cat", *paths, "--json")
    assert code == 0
    docs = [json.loads(line) for line in out.splitlines()]
    assert [(Path(d["path"]).name, d["query"]) for d in docs] == [
        (n, q) for n in NAMES for q in ("a red car", "a cat")
    ]
    assert len({d["score"] for d in docs}) > 2
    code, out, _ = cli(capsys, *config, "score", "--query", "a red car", paths[0])
    assert code == 0 and out.split()[1] == paths[0]
    assert float(out.split()[0]) == pytest.approx(docs[0]["score"], abs=1e-3)

    code, out, _ = cli(capsys, *config, "ask", paths[0], "what animal is this?", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["question"] == "what animal is this?" and doc["answer"] and doc["path"] == paths[0]
    code, plain, _ = cli(capsys, *config, "ask", paths[0], "what animal is this?")
    assert code == 0 and plain.strip() == doc["answer"]


def test_cli_errors_exit_2_naming_what_to_configure(
    configs: dict[str, Path], photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = str(photos / "cat.jpg")
    code, _, err = cli(capsys, "-c", str(configs["default"]), "classify", photo, "--labels", "cat,dog")
    assert (
        code == 2 and "fixed-label" in err and "plugins.classify.model: openai/clip-vit-base-patch32" in err
    )
    code, _, err = cli(capsys, "-c", str(configs["default"]), "ask", photo, "is it a cat?")
    assert code == 2 and "plugins.vqa.enabled: true" in err
    code, _, err = cli(capsys, "-c", str(configs["clip"]), "classify", photo, "--labels", "cat,cat")
    assert code == 2 and "given twice" in err
    code, _, err = cli(capsys, "-c", str(configs["clip"]), "ask", str(photos / "missing.jpg"), "what?")
    assert code == 1 and "missing.jpg" in err
    bad = photos / "bad.yaml"
    bad.write_text("device: cpu\nbatch_size: lots\n")
    for command in (
        ["classify", photo, "-l", "cat"],
        ["score", "--query", "a cat", photo],
        ["ask", photo, "what?"],
    ):
        code, _, err = cli(capsys, *command, "-q", "--config", str(bad))  # global options after the command
        assert code == 2 and f"{bad}:2: batch_size" in err, err


# -- HTTP -----------------------------------------------------------------------------------------------------


def data_url(path: Path) -> str:
    kind = "png" if path.suffix == ".png" else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def clip_served(configs: dict[str, Path]) -> Iterator[Served]:
    config = load_config(configs["clip"], environ={})
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "classify,embed,vqa"})
    with serving(config, pm=pm) as served:
        yield served


@pytest.fixture(scope="module")
def clip_server(clip_served: Served) -> str:
    return clip_served.url


@pytest.fixture(scope="module")
def default_server(configs: dict[str, Path]) -> Iterator[str]:
    config = load_config(configs["default"], environ={})
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "classify,embed,vqa"})
    with running_server(config, pm=pm) as url:
        yield url


def test_http_classify_matches_the_library_and_batches(
    clip_server: str,
    sample_photos_master: Path,
    clip_rt: AnalyzerRuntime,
    clip_images: list[DecodedImage],
) -> None:
    refs = [data_url(sample_photos_master / n) for n in NAMES]
    with httpx.Client(base_url=clip_server, timeout=60) as client:
        one = client.post("/v1/classify", json={"image": refs[0], "labels": LABELS})
        assert one.status_code == 200, one.text
        body = one.json()
        assert body["activation"] == "softmax" and body["analyzer"] == "classify" and "results" not in body
        scores = [x["score"] for x in body["labels"]]
        assert scores == sorted(scores, reverse=True)
        many = client.post("/v1/classify", json={"images": refs, "labels": LABELS})
        assert many.status_code == 200, many.text
        results = many.json()["results"]
        other = client.post(
            "/v1/classify", json={"image": refs[0], "labels": LABELS, "templates": ["a drawing of {}"]}
        ).json()
    direct = adhoc.classify(clip_rt, clip_images, LABELS)
    assert [x["label"] for x in body["labels"]] == [s.label for s in direct[0].labels]
    for got, want in zip(results, direct, strict=True):
        assert [x["label"] for x in got["labels"]] == [s.label for s in want.labels]
        np.testing.assert_allclose(
            [x["score"] for x in got["labels"]], [s.score for s in want.labels], atol=1e-5
        )
    np.testing.assert_allclose(scores, [x["score"] for x in results[0]["labels"]], atol=1e-5)
    assert other["labels"] != body["labels"]


def test_http_concurrent_requests_share_image_tower_batches(
    clip_served: Served,
    sample_photos_master: Path,
    clip_rt: AnalyzerRuntime,
    clip_images: list[DecodedImage],
) -> None:
    refs = [data_url(sample_photos_master / n) for n in NAMES]
    registry = clip_served.engine.metrics.registry
    which = {"analyzer": "classify:vectors"}

    def batches() -> tuple[float, float]:
        count = registry.get_sample_value("phototag_batch_size_count", which) or 0.0
        return count, registry.get_sample_value("phototag_batch_size_sum", which) or 0.0

    async def eight() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=clip_served.url, timeout=60) as client:
            body = [{"image": refs[i % 4], "labels": LABELS} for i in range(8)]
            return await asyncio.gather(*(client.post("/v1/classify", json=b) for b in body))

    calls, images = batches()
    responses = asyncio.run(eight())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    calls, images = batches()[0] - calls, batches()[1] - images
    assert images == 8 and calls < 8  # gathered: fewer forward passes than requests
    direct = adhoc.classify(clip_rt, clip_images, LABELS)
    for i, r in enumerate(responses):  # and each answer is its single-request answer
        got = r.json()["labels"]
        assert [x["label"] for x in got] == [s.label for s in direct[i % 4].labels]
        np.testing.assert_allclose(
            [x["score"] for x in got], [s.score for s in direct[i % 4].labels], atol=1e-5
        )


def test_http_concurrent_questions_share_batches(clip_served: Served, sample_photos_master: Path) -> None:
    """Concurrent /v1/ask requests meet in batches (the images that share a question in one model call), and
    each answer is the one the same request gets alone."""
    refs = [data_url(sample_photos_master / n) for n in NAMES]
    bodies = [
        {"image": refs[i % 4], "question": "what is this?" if i < 4 else "is it red?"} for i in range(6)
    ]
    registry = clip_served.engine.metrics.registry
    which = {"analyzer": "vqa:ask"}

    def batches() -> tuple[float, float]:
        count = registry.get_sample_value("phototag_batch_size_count", which) or 0.0
        return count, registry.get_sample_value("phototag_batch_size_sum", which) or 0.0

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=clip_served.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/ask", json=b) for b in bodies))

    calls, pairs = batches()
    responses = asyncio.run(together())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    calls, pairs = batches()[0] - calls, batches()[1] - pairs
    assert pairs == 6 and calls < 6  # gathered: fewer batches than requests
    with httpx.Client(base_url=clip_served.url, timeout=60) as client:
        alone = [client.post("/v1/ask", json=b).json() for b in bodies]
    assert [r.json()["answer"] for r in responses] == [a["answer"] for a in alone]
    assert [r.json()["question"] for r in responses] == [b["question"] for b in bodies]


def test_http_similarity_texts_and_pairs(clip_server: str, sample_photos_master: Path) -> None:
    refs = {n: data_url(sample_photos_master / n) for n in NAMES}
    texts = ["a cat", "a red car", "coffee"]
    with httpx.Client(base_url=clip_server, timeout=60) as client:
        r = client.post("/v1/similarity", json={"image": refs["cat.jpg"], "texts": texts})
        assert r.status_code == 200, r.text
        by_text = r.json()
        pairs = [{"query": t, "image": refs["cat.jpg"]} for t in texts] + [
            {"query": "a cat", "image": refs["rocket.jpg"]}
        ]
        by_pair = client.post("/v1/similarity", json={"pairs": pairs}).json()
        single = client.post("/v1/similarity", json={"pairs": pairs[-1:]}).json()
    assert (
        by_text["metric"] == "cosine" and by_text["analyzer"] == "embed" and len(set(by_text["scores"])) == 3
    )
    np.testing.assert_allclose(by_pair["scores"][:3], by_text["scores"], atol=1e-5)
    np.testing.assert_allclose(by_pair["scores"][3:], single["scores"], atol=1e-5)
    assert by_pair["scores"][3] != pytest.approx(by_pair["scores"][0], abs=1e-6)


def test_http_ask(clip_server: str, sample_photos_master: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with httpx.Client(base_url=clip_server, timeout=60) as client:
        r = client.post(
            "/v1/ask",
            json={"image": data_url(sample_photos_master / "cat.jpg"), "question": "what animal is this?"},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] and body["analyzer"] == "vqa" and body["question"] == "what animal is this?"


def test_http_errors(clip_server: str, default_server: str, sample_photos_master: Path) -> None:
    ref = data_url(sample_photos_master / "cat.jpg")
    with httpx.Client(base_url=default_server, timeout=60) as client:
        r = client.post("/v1/classify", json={"image": ref, "labels": ["cat", "dog"]})
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "model_not_available"
        assert "fixed-label" in error["message"] and "plugins.classify.model" in error["message"]
        r = client.post("/v1/ask", json={"image": ref, "question": "a cat?"})
        assert r.status_code == 422 and "plugins.vqa.enabled" in r.json()["error"]["message"]
        r = client.post("/v1/similarity", json={"image": ref, "texts": ["a cat"]})
        assert r.status_code == 422 and "plugins.embed.model: openai/clip" in r.json()["error"]["message"]
    not_image = base64.b64encode(b"this is not an image at all").decode()
    with httpx.Client(base_url=clip_server, timeout=60) as client:
        r = client.post("/v1/classify", json={"image": not_image, "labels": ["cat"]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "image_not_decodable", r.text
        assert "image" in r.json()["error"]["message"]
        r = client.post("/v1/classify", json={"image": ref, "labels": ["cat", "cat"]})
        assert r.status_code == 400 and "given twice" in r.json()["error"]["message"]
        r = client.post("/v1/classify", json={"image": ref, "images": [ref], "labels": ["cat"]})
        assert r.status_code == 400 and "either image or images" in r.json()["error"]["message"]
        r = client.post("/v1/similarity", json={"texts": ["a cat"]})
        assert r.status_code == 400
        r = client.post("/v1/classify", json={"image": ref, "labels": ["cat"], "model": "nope"})
        assert r.status_code == 404 and "no analyzer named 'nope'" in r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "model_not_found"


def test_openapi_documents_the_routes(clip_server: str) -> None:
    schema = httpx.get(f"{clip_server}/openapi.json", timeout=30).json()
    for path in ("/v1/classify", "/v1/similarity", "/v1/ask"):
        assert "post" in schema["paths"][path]
    components = schema["components"]["schemas"]
    assert {"ClassifyRequest", "ClassifyResponse", "SimilarityRequest", "AskRequest"} <= set(components)
    assert "labels" in components["ClassifyRequest"]["properties"]
