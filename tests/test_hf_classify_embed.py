"""Zero-shot and fixed-label classification and image embeddings on tiny random transformers models, on real
photos, through the real analyzer classes and the real pipeline (decode, SQLite state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hf_helpers import decoded_samples
from phototag.config import Config, load_config
from phototag.errors import ConfigError, ModelUnavailableError
from phototag.hf.classify import HFClassifier, clear_text_cache
from phototag.hf.embed import HFEmbedder
from phototag.hf.vocabulary import default_vocabulary_path, load_vocabulary
from phototag.models import shared_pool
from phototag.pipeline import Pipeline
from phototag.plugins._dispatch import build_analyzer
from phototag.state import StateDB
from phototag.types import Analyzer, DecodedImage, Device, Tag

CPU = Device("cpu")

VOCABULARY = """
templates: ["a photo of {}.", "a picture of {}."]
labels:
  Animals:
    Pets:
      - Cat: {synonyms: [cat, kitten]}
      - Dog
    Wildlife: [Bird, Horse]
  Vehicles: [Motorcycle, Rocket]
  "Food|Drinks|Coffee": {synonyms: [coffee, espresso]}
  People:
    - Person: {prompt: "a photo of a person."}
"""


@pytest.fixture(scope="module")
def images(sample_photos_master: Path) -> list[DecodedImage]:
    """The six real sample photos, decoded as the pipeline decodes them."""
    return decoded_samples(sample_photos_master, 224)


@pytest.fixture
def vocab_file(tmp_path: Path) -> Path:
    path = tmp_path / "vocabulary.yaml"
    path.write_text(VOCABULARY)
    return path


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(None, overrides={"state_db": str(tmp_path / "state" / "state.db")}, environ={})


def classifier(config: Config, model: Path, **settings: object) -> HFClassifier:
    return HFClassifier("classify", HFClassifier.Settings(model=str(model), **settings), config)


def loaded(analyzer: HFClassifier | HFEmbedder) -> HFClassifier | HFEmbedder:
    analyzer.load(CPU)
    return analyzer


# -- zero-shot -----------------------------------------------------------------------------------------------


def test_zero_shot_tags_follow_the_vocabulary_hierarchy(tiny_model, images, config, vocab_file) -> None:
    c = classifier(config, tiny_model("clip"), vocabulary=vocab_file, top_k=3, threshold=0.0)
    assert isinstance(c, Analyzer)
    assert c.mode() == "zero-shot" and c.scoring() == "softmax"
    assert c.input_size == 32  # from the model's preprocessor_config.json
    loaded(c)
    paths = {label.path for label in c.vocabulary.labels}
    results = c.analyze(images)
    assert len(results) == len(images)
    for analysis, row in zip(results, c.scores(images), strict=True):
        assert len(analysis.tags) == 3  # top_k, nothing filtered at threshold 0
        assert all(tag.path in paths and tag.path[-1] == tag.name for tag in analysis.tags)
        assert [t.score for t in analysis.tags] == sorted((t.score for t in analysis.tags), reverse=True)
        assert row.sum() == pytest.approx(1.0, abs=1e-4)  # softmax over the vocabulary
        assert analysis.tags[0].score == pytest.approx(float(row.max()), abs=1e-4)
    assert Tag("Coffee", 0, ("Food", "Drinks", "Coffee")).path in paths
    c.unload()


def test_thresholds_global_and_per_label(tiny_model, images, config, tmp_path) -> None:
    vocab = tmp_path / "v.txt"
    vocab.write_text(
        "Animals|Cat = cat\nAnimals|Dog\nVehicles|Motorcycle\n# a comment\nPlaces|Beach = beach, sand\n"
    )
    c = loaded(classifier(config, tiny_model("clip"), vocabulary=vocab, top_k=4, threshold=0.0))
    scores = c.scores(images)
    cut = float(np.median(scores))
    strict = loaded(classifier(config, tiny_model("clip"), vocabulary=vocab, top_k=4, threshold=cut))
    for analysis, row in zip(strict.analyze(images), scores, strict=True):
        assert {t.name for t in analysis.tags} == {
            label.name for label, s in zip(strict.vocabulary.labels, row, strict=True) if s >= cut
        }
    # a label's own threshold wins over the global one
    yaml_vocab = tmp_path / "v.yaml"
    yaml_vocab.write_text(
        "- Animals|Cat\n- Animals|Dog\n- Vehicles|Motorcycle: {threshold: 1.0}\n- Places|Beach\n"
    )
    never = loaded(classifier(config, tiny_model("clip"), vocabulary=yaml_vocab, top_k=4, threshold=0.0))
    tags = [t.name for a in never.analyze(images) for t in a.tags]
    assert "Motorcycle" not in tags and len(tags) == 3 * len(images)


def test_siglip_scores_each_label_on_its_own(tiny_model, images, config, tmp_path) -> None:
    """Sigmoid: a label's score does not depend on the other labels; softmax (CLIP) scores do."""
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("Animals|Cat\n")
    large.write_text("Animals|Cat\nAnimals|Dog\nVehicles|Rocket\n")
    one = loaded(classifier(config, tiny_model("siglip"), vocabulary=small, threshold=0.0))
    three = loaded(classifier(config, tiny_model("siglip"), vocabulary=large, threshold=0.0))
    assert one.scoring() == "sigmoid"
    np.testing.assert_allclose(one.scores(images)[:, 0], three.scores(images)[:, 0], atol=1e-5)
    assert not np.allclose(three.scores(images).sum(axis=1), 1.0, atol=1e-3)
    clip_one = loaded(classifier(config, tiny_model("clip"), vocabulary=small, threshold=0.0))
    clip_three = loaded(classifier(config, tiny_model("clip"), vocabulary=large, threshold=0.0))
    np.testing.assert_allclose(clip_one.scores(images)[:, 0], 1.0, atol=1e-6)  # softmax over one label
    assert (clip_three.scores(images)[:, 0] < 0.999).all()
    # forcing softmax on SigLIP is honoured
    forced = loaded(
        classifier(config, tiny_model("siglip"), vocabulary=large, scoring="softmax", threshold=0.0)
    )
    np.testing.assert_allclose(forced.scores(images).sum(axis=1), 1.0, atol=1e-4)


def test_batched_equals_one_at_a_time(tiny_model, images, config, vocab_file) -> None:
    for model in ("clip", "siglip", "vit"):
        c = loaded(classifier(config, tiny_model(model), vocabulary=vocab_file, top_k=3, threshold=0.0))
        batched = c.analyze(images)
        single = [c.analyze([image])[0] for image in images]
        for b, s in zip(batched, single, strict=True):
            assert [t.name for t in b.tags] == [t.name for t in s.tags]
            np.testing.assert_allclose([t.score for t in b.tags], [t.score for t in s.tags], atol=2e-4)
    e = loaded(HFEmbedder("embed", HFEmbedder.Settings(model=str(tiny_model("clip"))), config))
    batched_vectors = np.array([a.embedding for a in e.analyze(images)])
    single_vectors = np.array([e.analyze([image])[0].embedding for image in images])
    np.testing.assert_allclose(batched_vectors, single_vectors, atol=1e-5)


def test_vocabulary_text_embeddings_are_computed_once(tiny_model, config, vocab_file, tmp_path) -> None:
    clear_text_cache()
    first = loaded(classifier(config, tiny_model("clip"), vocabulary=vocab_file))
    assert first.texts_encoded == 19  # 2 templates x (6 names + 2x2 synonyms), plus one verbatim prompt
    second = loaded(classifier(config, tiny_model("clip"), vocabulary=vocab_file))
    assert second.texts_encoded == 0  # memory
    cache_files = list((config.state_db.parent / "cache").glob("text-embeddings-*.npy"))
    assert len(cache_files) == 1
    clear_text_cache()
    third = loaded(classifier(config, tiny_model("clip"), vocabulary=vocab_file))
    assert third.texts_encoded == 0  # disk, next to the state DB
    np.testing.assert_allclose(third._label_vectors.numpy(), first._label_vectors.numpy(), atol=1e-6)
    other_templates = loaded(classifier(config, tiny_model("clip"), vocabulary=vocab_file, templates=("{}",)))
    assert other_templates.texts_encoded > 0  # a different prompt set is a different cache entry
    cache_files[0].write_bytes(b"damaged")
    clear_text_cache()
    assert (
        loaded(classifier(config, tiny_model("clip"), vocabulary=vocab_file)).texts_encoded == 19
    )  # recomputed


# -- fixed labels --------------------------------------------------------------------------------------------


def test_fixed_label_classifier_uses_id2label(tiny_model, images, config, tmp_path) -> None:
    c = loaded(classifier(config, tiny_model("vit"), top_k=4, threshold=0.0))
    assert c.mode() == "fixed" and c.scoring() == "softmax"
    names = {"tabby", "motor scooter", "espresso", "rocket"}  # "tabby, tabby cat" -> "tabby"
    for analysis, row in zip(c.analyze(images), c.scores(images), strict=True):
        assert {t.name for t in analysis.tags} == names
        assert all(t.path == () for t in analysis.tags)
        assert row.sum() == pytest.approx(1.0, abs=1e-4)
        assert analysis.extra["mode"] == "fixed"
    top_one = loaded(classifier(config, tiny_model("vit"), top_k=1, threshold=0.0))
    assert all(len(a.tags) == 1 for a in top_one.analyze(images))
    # with a vocabulary, a classifier's labels land in the user's hierarchy (matched by name or synonym)
    vocab = tmp_path / "map.txt"
    vocab.write_text("Animals|Pets|Cat = tabby\nFood|Drinks|Coffee = espresso\n")
    mapped = loaded(classifier(config, tiny_model("vit"), vocabulary=vocab, top_k=4, threshold=0.0))
    tags = {t.name: t.path for t in mapped.analyze(images[:1])[0].tags}
    assert tags["Cat"] == ("Animals", "Pets", "Cat") and tags["Coffee"] == ("Food", "Drinks", "Coffee")
    assert tags["rocket"] == ()


def test_mode_can_be_forced_and_bad_models_are_config_errors(tiny_model, config) -> None:
    assert classifier(config, tiny_model("clip"), mode="fixed").mode() == "fixed"
    with pytest.raises(ConfigError, match="neither a CLIP/SigLIP-style model"):
        classifier(config, tiny_model("dinov2")).mode()


# -- embeddings ----------------------------------------------------------------------------------------------


def test_clip_embeddings_are_normalised_and_text_lands_in_the_same_space(tiny_model, images, config) -> None:
    e = loaded(HFEmbedder("embed", HFEmbedder.Settings(model=str(tiny_model("clip"))), config))
    assert isinstance(e, Analyzer) and e.kind() == "dual"
    vectors = np.array([a.embedding for a in e.analyze(images)])
    assert vectors.shape == (len(images), 16)  # the projection dimension
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len({tuple(np.round(v, 5)) for v in vectors}) == len(images)  # different photos, different vectors
    dog, cat, again = e.embed_text(["a dog on a beach", "a cat", "a dog on a beach"])
    assert len(dog) == 16 and np.linalg.norm(dog) == pytest.approx(1.0, abs=1e-5)
    assert not np.allclose(dog, cat, atol=1e-3) and np.allclose(dog, again, atol=1e-6)


def test_dinov2_embeds_images_but_not_text(tiny_model, images, config) -> None:
    e = loaded(HFEmbedder("embed", HFEmbedder.Settings(model=str(tiny_model("dinov2"))), config))
    assert e.kind() == "vision"
    vectors = np.array([a.embedding for a in e.analyze(images)])
    assert vectors.shape == (len(images), 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    mean = loaded(
        HFEmbedder("embed", HFEmbedder.Settings(model=str(tiny_model("dinov2")), pooling="mean"), config)
    )
    assert mean.fingerprint() != e.fingerprint()
    assert not np.allclose(np.array([a.embedding for a in mean.analyze(images)]), vectors)
    with pytest.raises(ConfigError, match="cannot search by text"):
        e.embed_text(["a dog"])


def test_classify_and_embed_on_one_clip_share_one_model(tiny_model, images, config, vocab_file) -> None:
    shared_pool().clear()
    loads = shared_pool().loads
    c = loaded(classifier(config, tiny_model("clip"), vocabulary=vocab_file))
    e = loaded(HFEmbedder("embed", HFEmbedder.Settings(model=str(tiny_model("clip"))), config))
    assert shared_pool().loads == loads + 1
    assert c._model is e._model
    loaded(HFEmbedder("embed2", HFEmbedder.Settings(model=str(tiny_model("dinov2"))), config))
    assert shared_pool().loads == loads + 2  # another model is another load
    c.unload()
    assert len(e.analyze(images[:1])[0].embedding or ()) == 16  # the embedder still has it


# -- fingerprints, settings, errors --------------------------------------------------------------------------


def test_fingerprint_follows_settings_model_and_vocabulary(tiny_model, config, vocab_file, tmp_path) -> None:
    base = classifier(config, tiny_model("clip"), vocabulary=vocab_file).fingerprint()
    assert classifier(config, tiny_model("clip"), vocabulary=vocab_file).fingerprint() == base
    assert classifier(config, tiny_model("clip"), vocabulary=vocab_file, top_k=2).fingerprint() != base
    assert classifier(config, tiny_model("clip"), vocabulary=vocab_file, threshold=0.3).fingerprint() != base
    assert classifier(config, tiny_model("siglip"), vocabulary=vocab_file).fingerprint() != base
    other = tmp_path / "other.yaml"
    other.write_text(VOCABULARY.replace("Dog", "Puppy"))
    assert classifier(config, tiny_model("clip"), vocabulary=other).fingerprint() != base


def test_settings_are_validated_through_the_dispatch(tiny_model, tmp_path) -> None:
    config = load_config(
        None,
        overrides={"state_db": str(tmp_path / "s.db"), "plugins.classify.model": str(tiny_model("clip"))},
        environ={},
    )
    analyzer = build_analyzer(
        "classify", config, "bundled-x", {"bundled-x": "no.Such"}, "phototag.hf.classify.HFClassifier"
    )
    assert isinstance(analyzer, HFClassifier) and analyzer.settings.top_k == 5
    bad = load_config(
        None,
        overrides={
            "state_db": str(tmp_path / "s.db"),
            "plugins.classify.model": str(tiny_model("clip")),
            "plugins.classify.top_kk": "3",
        },
        environ={},
    )
    with pytest.raises(ConfigError, match=r"plugins\.classify\.top_kk"):
        build_analyzer("classify", bad, "bundled-x", {}, "phototag.hf.classify.HFClassifier")


def test_missing_model_fails_at_load_not_before(config, tmp_path) -> None:
    c = classifier(config, tmp_path / "not-here")
    fingerprint = c.fingerprint()  # the pipeline asks for this per file: it must not raise
    assert fingerprint and c.model_info().id == str(tmp_path / "not-here")
    assert c.input_size == 224
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        c.load(CPU)


# -- vocabulary files ----------------------------------------------------------------------------------------


def test_default_vocabulary_is_hierarchical_and_sizeable() -> None:
    vocab = load_vocabulary(None)
    assert vocab.source == str(default_vocabulary_path())
    assert 100 <= len(vocab.labels) <= 250
    assert len({label.path for label in vocab.labels}) == len(vocab.labels)
    assert all(len(label.path) >= 2 for label in vocab.labels)
    cat = next(label for label in vocab.labels if label.name == "Cat")
    assert cat.path == ("Animals", "Pets", "Cat") and "kitten" in cat.synonyms


def test_vocabulary_forms_and_texts(tmp_path: Path) -> None:
    vocab = tmp_path / "v.yaml"
    vocab.write_text(VOCABULARY)
    v = load_vocabulary(vocab)
    by_name = {label.name: label for label in v.labels}
    assert by_name["Bird"].path == ("Animals", "Wildlife", "Bird")
    assert by_name["Coffee"].path == ("Food", "Drinks", "Coffee")
    assert by_name["Cat"].texts(v.templates or ()) == (
        "a photo of cat.", "a picture of cat.", "a photo of kitten.", "a picture of kitten.",
    )  # fmt: skip
    assert by_name["Person"].texts(("a photo of {}.",)) == ("a photo of a person.",)
    assert by_name["Dog"].texts(("a photo of {}.",)) == ("a photo of dog.",)
    text = tmp_path / "v.txt"
    text.write_text("Animals|Cat = cat, kitten\nAnimals|Cat = moggy\n\n# comment\nBeach\n")
    t = load_vocabulary(text)
    assert [label.path for label in t.labels] == [("Animals", "Cat"), ("Beach",)]
    assert t.labels[0].synonyms == ("cat", "kitten", "moggy")  # a path listed twice is merged


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("v.yaml", "labels: [Cat]\nthreshold: 2\n", "between 0 and 1"),
        ("v.yaml", "labels: [Cat]\ncolour: red\n", "unknown top-level keys"),
        ("v.yaml", "- Cat: {threshold: nope}\n", "threshold"),
        ("v.yaml", "[unclosed\n", "not valid YAML"),
        ("v.txt", "Animals||Cat\n", "empty part"),
        ("v.txt", "# nothing\n", "no labels"),
    ],
)
def test_bad_vocabulary_files_are_config_errors_naming_the_file(tmp_path, name, content, message) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as e:
        load_vocabulary(path)
    assert str(path) in str(e.value)


def test_missing_vocabulary_file_fails_when_the_analyzer_is_built(config, tiny_model, tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read the vocabulary file"):
        classifier(config, tiny_model("clip"), vocabulary=tmp_path / "nope.yaml")


# -- the real pipeline ---------------------------------------------------------------------------------------


def test_pipeline_tags_and_embeds_real_photos(tiny_model, photos, make_config, vocab_file) -> None:
    config = make_config(threads="1")
    c = classifier(config, tiny_model("clip"), vocabulary=vocab_file, top_k=2, threshold=0.0)
    e = HFEmbedder("embed", HFEmbedder.Settings(model=str(tiny_model("clip"))), config)
    paths = sorted(photos.iterdir())
    state = StateDB(config.state_db)
    with Pipeline(config, [c, e], [], state) as pipeline:
        outcomes = pipeline.process(paths)
        assert [o.status for o in outcomes] == ["tagged"] * len(paths), [o.message for o in outcomes]
        for outcome in outcomes:
            assert outcome.result is not None
            tags = [t for _, t in outcome.result.tags]
            assert len(tags) == 2 and all(len(t.path) >= 2 for t in tags)
        stored = dict(state.embeddings(e.fingerprint()))
        assert len(stored) == len(paths)
        assert all(v.shape == (16,) for v in stored.values())
        assert [o.status for o in pipeline.process(paths)] == ["skipped"] * len(paths)
    state.close()


def test_pipeline_reports_a_missing_model_clearly(photos, make_config, tmp_path) -> None:
    config = make_config()
    c = classifier(config, tmp_path / "gone")
    state = StateDB(config.state_db)
    with Pipeline(config, [c], [], state) as pipeline:
        outcomes = pipeline.process(sorted(photos.iterdir())[:2])
    state.close()
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert all(str(tmp_path / "gone") in o.message and "Traceback" not in o.message for o in outcomes)
