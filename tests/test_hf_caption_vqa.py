"""Captions and visual question answering on real transformers models (tiny, random, built here), real photos.

Every architecture family the backends support is exercised through the analyzer classes (and once through
the real pipeline): BLIP captioning, BLIP VQA, a VisionEncoderDecoder (ViT + GPT-2, like vit-gpt2) and
Idefics3 (the architecture of SmolVLM, a chat model with a chat template). Random weights say gibberish, but
deterministic, input-dependent gibberish: that is what these tests check, together with batching, token
limits, prompts, the answer -> keyword mapping and the errors for missing or unsuitable models.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hf_helpers import CPU, config_with, decoded_samples, make, registered_by, run, sample_paths, scan
from phototag.errors import ConfigError, ModelUnavailableError, PhototagError
from phototag.files import make_photo
from phototag.hf.caption import HFCaptioner
from phototag.hf.vqa import HFVQA, answer_matches, answer_words
from phototag.plugins import caption as caption_plugin
from phototag.plugins import vqa as vqa_plugin
from phototag.plugins.sidecar import sidecar_path
from phototag.recover import runs_from_sidecar
from phototag.serialize import analysis_from_dict, analysis_to_dict, run_from_dict, run_to_dict
from phototag.state import StateDB
from phototag.types import (
    Analysis,
    Analyzer,
    AnalyzerRun,
    Answer,
    DecodedImage,
    ModelInfo,
    Photo,
    PhotoResult,
    Tag,
)
from phototag.xmpdesired import desired_from


@pytest.fixture(scope="module")
def images(sample_photos_master: Path) -> list[DecodedImage]:
    """The six sample photos, decoded by the real decoder (small: the tiny models use 32 px)."""
    return decoded_samples(sample_photos_master, 64)


def captions(analyses: list[Analysis]) -> list[str | None]:
    return [a.caption for a in analyses]


# -- captions ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["blip", "vit_gpt2", "idefics3"])
def test_captions_are_deterministic_input_dependent_and_batch_invariant(
    kind: str, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    analyzer = make(caption_plugin, tmp_path, model=str(tiny_model(kind)), max_new_tokens=6)
    assert isinstance(analyzer, HFCaptioner) and isinstance(analyzer, Analyzer)
    analyzer.load(CPU)
    try:
        batch = captions(analyzer.analyze(images))
        again = captions(analyzer.analyze(images))
        one_by_one = [analyzer.analyze([image])[0].caption for image in images]
    finally:
        analyzer.unload()
    assert all(isinstance(c, str) and c.strip() for c in batch), batch
    assert batch == again == one_by_one
    assert len(set(batch)) > 1, "every photo got the same caption: the image does not reach the model"


@pytest.mark.parametrize("kind", ["blip", "vit_gpt2", "idefics3"])
def test_max_new_tokens_cuts_the_greedy_caption(
    kind: str, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    folder = tiny_model(kind)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    long = make(caption_plugin, tmp_path, model=str(folder), max_new_tokens=8)
    short = make(caption_plugin, tmp_path, model=str(folder), max_new_tokens=3)
    long_caps, short_caps = captions(run(long, images)), captions(run(short, images))

    def ids(text: str | None) -> list[int]:
        return list(tokenizer(text or "", add_special_tokens=False)["input_ids"])

    for full, cut in zip(long_caps, short_caps, strict=True):
        assert len(ids(full)) <= 8 and len(ids(cut)) <= 3
        # greedy decoding: the 3-token caption is the start of the 8-token one, cut at exactly 3 tokens
        assert ids(cut) == ids(full)[:3], (full, cut)


def test_blip_prompt_is_a_prefix_the_caption_continues(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    plain = make(caption_plugin, tmp_path, model=str(tiny_model("blip")), max_new_tokens=5)
    prompted = make(
        caption_plugin, tmp_path, model=str(tiny_model("blip")), max_new_tokens=5, prompt="a photo of"
    )
    without, with_prompt = captions(run(plain, images)), captions(run(prompted, images))
    assert all(c is not None and c.startswith("a photo of ") for c in with_prompt), with_prompt
    assert with_prompt != without
    assert plain.fingerprint() != prompted.fingerprint()


def test_chat_model_prompt_changes_the_caption(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    default = make(caption_plugin, tmp_path, model=str(tiny_model("idefics3")), max_new_tokens=5)
    asked = make(
        caption_plugin,
        tmp_path,
        model=str(tiny_model("idefics3")),
        max_new_tokens=5,
        prompt="is there a cat ?",
    )
    a, b = captions(run(default, images)), captions(run(asked, images))
    assert a != b  # the prompt reaches the model through the chat template


def test_vision_encoder_decoder_refuses_a_prompt(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    analyzer = make(caption_plugin, tmp_path, model=str(tiny_model("vit_gpt2")), prompt="a photo of")
    with pytest.raises(PhototagError, match=r"plugins\.caption\.prompt.*takes no prompt"):
        analyzer.load(CPU)


def test_beam_search_is_deterministic_and_batch_invariant(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    analyzer = make(caption_plugin, tmp_path, model=str(tiny_model("blip")), max_new_tokens=5, num_beams=3)
    analyzer.load(CPU)
    try:
        batch = captions(analyzer.analyze(images[:3]))
        single = [analyzer.analyze([im])[0].caption for im in images[:3]]
    finally:
        analyzer.unload()
    assert batch == single and all(isinstance(c, str) for c in batch)


def test_caption_identity_is_cheap_and_stable(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    folder = str(tiny_model("blip"))
    analyzer = make(caption_plugin, tmp_path, model=folder)
    before = analyzer.fingerprint()
    info = analyzer.model_info()
    assert info.id == folder and info.revision.startswith("local-")
    analyzer.load(CPU)
    try:
        assert analyzer.fingerprint() == before  # loading must not change what results are keyed by
        assert analyzer.model_info() == info
    finally:
        analyzer.unload()
    assert make(caption_plugin, tmp_path, model=folder, device="cpu").fingerprint() == before
    assert make(caption_plugin, tmp_path, model=folder, max_new_tokens=12).fingerprint() != before
    assert make(caption_plugin, tmp_path, model=folder, input_size=200).input_size == 200


def test_caption_plugin_is_off_by_default_and_cheap_when_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert registered_by(caption_plugin, config_with(tmp_path, {})) == []
    assert registered_by(caption_plugin, config_with(tmp_path, {"caption": {"max_new_tokens": 5}})) == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    (analyzer,) = registered_by(caption_plugin, config_with(tmp_path, {"caption": {"enabled": True}}))
    assert analyzer.settings.model == "Salesforce/blip-image-captioning-base"
    assert analyzer.task == "caption" and analyzer.input_size == 384
    analyzer.fingerprint()  # an unavailable model must not make the fingerprint raise
    with pytest.raises(ModelUnavailableError, match="Salesforce/blip-image-captioning-base"):
        analyzer.load(CPU)


def test_unknown_caption_setting_names_the_key(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"caption": {"enabled": True, "max_tokens": 5}})
    with pytest.raises(ConfigError, match=r"plugins\.caption\.max_tokens"):
        registered_by(caption_plugin, config)


# -- missing and unsuitable models ---------------------------------------------------------------------------


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    gone = tmp_path / "no-such-model"
    analyzer = make(caption_plugin, tmp_path, model=str(gone))
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        analyzer.load(CPU)


def test_broken_model_folder_is_a_clear_error(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model("blip"), broken)
    (broken / "model.safetensors").unlink()
    analyzer = make(vqa_plugin, tmp_path, model=str(broken))
    with pytest.raises(ModelUnavailableError, match="no weights"):
        analyzer.load(CPU)
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelUnavailableError, match="not readable JSON"):
        make(vqa_plugin, tmp_path, model=str(broken)).load(CPU)


def test_detection_model_configured_for_captions_is_a_clear_error(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    analyzer = make(caption_plugin, tmp_path, model=str(tiny_model("detr")))
    with pytest.raises(ModelUnavailableError, match=r"DetrForObjectDetection.*not generate text from images"):
        analyzer.load(CPU)


@pytest.mark.parametrize(
    ("kind", "why"), [("blip", "BLIP captioning model"), ("vit_gpt2", "cannot take a question")]
)
def test_models_that_cannot_answer_questions_say_so(
    kind: str, why: str, tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    analyzer = make(vqa_plugin, tmp_path, model=str(tiny_model(kind)))
    with pytest.raises(PhototagError, match=why):
        analyzer.load(CPU)


# -- VQA -----------------------------------------------------------------------------------------------------

QUESTIONS = [
    {"question": "is there a cat ?", "field": "cat"},
    {"question": "what is on the table ?", "field": "table"},
]


def named(analysis: Analysis) -> dict[str, str]:
    """The answers that have a name, as the JSON sidecar's ``answers`` holds them."""
    return {a.name: a.text for a in analysis.answers if a.name is not None}


def answers_of(analyses: list[Analysis], field: str) -> list[str]:
    return [named(a)[field] for a in analyses]


@pytest.mark.parametrize("kind", ["blip_vqa", "idefics3"])
def test_vqa_answers_do_not_depend_on_the_batch(
    kind: str, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    # batch_size 4: each question goes through generate for 4 photos, then 2; Idefics3 photos of different
    # shapes take different numbers of image tokens, so those calls are padded
    config = config_with(
        tmp_path,
        {
            "vqa": {
                "enabled": True,
                "model": str(tiny_model(kind)),
                "questions": QUESTIONS,
                "max_new_tokens": 4,
            }
        },
        batch_size=4,
    )
    (analyzer,) = registered_by(vqa_plugin, config)
    assert isinstance(analyzer, HFVQA)
    analyzer.load(CPU)
    try:
        batch = analyzer.analyze(images)
        single = [analyzer.analyze([im])[0] for im in images]
    finally:
        analyzer.unload()
    for field in ("cat", "table"):
        assert answers_of(batch, field) == answers_of(single, field)
    assert len(set(answers_of(batch, "cat"))) > 1, "every photo got the same answer"
    for a, b in zip(batch, single, strict=True):
        assert [q.question for q in a.answers] == ["is there a cat ?", "what is on the table ?"]
        assert [q.name for q in a.answers] == ["cat", "table"] and not any(q.xmp for q in a.answers)
        for x, y in zip(a.answers, b.answers, strict=True):
            assert x.score is not None and y.score is not None
            assert 0.0 < x.score <= 1.0
            assert x.score == pytest.approx(y.score, abs=2e-3)


def test_answer_maps_to_keyword_only_when_it_matches(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    folder = str(tiny_model("blip_vqa"))
    probe = make(vqa_plugin, tmp_path, model=folder, questions=QUESTIONS[:1], max_new_tokens=4)
    said = answers_of(run(probe, images), "cat")
    target = said[0]
    matching = [answer_matches(a, [target]) for a in said]
    assert matching[0] and not all(matching), f"need photos answered differently: {said}"

    questions = [
        {
            "question": "is there a cat ?",
            "keyword": "Match",
            "parents": ["Answers"],
            "answers": [target.upper()],
        },
        {"question": "is there a cat ?", "keyword": "Never", "answers": ["zebra crossing"]},
        {"question": "is there a cat ?", "field": "raw", "xmp": "XMP-photoshop:Headline"},
    ]
    analyses = run(make(vqa_plugin, tmp_path, model=folder, questions=questions, max_new_tokens=4), images)
    for analysis, answer, should in zip(analyses, said, matching, strict=True):
        names = [t.name for t in analysis.tags]
        assert ("Match" in names) == should, (answer, target)
        assert "Never" not in names
        first, _, last = analysis.answers
        assert [a.text for a in analysis.answers] == [answer] * 3  # the same question, three times
        assert last == Answer(
            "is there a cat ?", answer, last.score, name="raw", xmp="XMP-photoshop:Headline"
        )
        assert (first.name, first.xmp) == (None, None)
        assert analysis.extra == {}
        if should:
            (tag,) = analysis.tags
            assert tag.hierarchy == ("Answers", "Match")
            assert first.score is not None and tag.score == pytest.approx(first.score, abs=1e-4)


def test_answer_matching_rules() -> None:
    assert answer_words("Yes, there is a person.") == ["yes", "there", "is", "a", "person"]
    assert answer_matches("Yes, there is a person.", ["yes"])
    assert answer_matches("yes", ["no", "YES"])
    assert answer_matches("red car parked", ["red car"])
    assert not answer_matches("yesterday", ["yes"])
    assert not answer_matches("no", ["yes"])
    assert not answer_matches("", ["yes"])
    assert not answer_matches("red", ["red car"])


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"questions": [{"question": "Is it sunny?"}]}, "needs a keyword"),
        (
            {"questions": [{"question": "Is it sunny?", "keyword": "Sun", "answers": ["?"]}]},
            "at least one word",
        ),
        ({"questions": [{"question": "Where?", "field": "a b"}]}, "simple name"),
        ({"questions": [{"question": "", "field": "x"}]}, "questions.0.question"),
        ({"prompt": "Answer briefly."}, "must contain {question}"),
        ({"prompt": "{question} {other}"}, "only the {question} placeholder"),
    ],
)
def test_bad_vqa_settings_are_config_errors(section: dict[str, Any], message: str, tmp_path: Path) -> None:
    config = config_with(tmp_path, {"vqa": {"enabled": True, **section}})
    with pytest.raises(ConfigError, match=r"plugins\.vqa") as err:
        registered_by(vqa_plugin, config)
    assert message in str(err.value)


def test_vqa_defaults(tmp_path: Path) -> None:
    assert registered_by(vqa_plugin, config_with(tmp_path, {})) == []
    (analyzer,) = registered_by(vqa_plugin, config_with(tmp_path, {"vqa": {"enabled": True}}))
    assert analyzer.settings.model == "Salesforce/blip-vqa-base"
    assert [q.keyword for q in analyzer.settings.questions] == ["People", "Night"]


@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
def test_paligemma_answers_with_its_own_prefix_and_batch_invariant(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    folder = str(tiny_model("paligemma"))

    def ask(**settings: Any) -> tuple[list[Analysis], list[Analysis]]:
        section = {"enabled": True, "model": folder, "questions": QUESTIONS, "max_new_tokens": 4, **settings}
        (analyzer,) = registered_by(vqa_plugin, config_with(tmp_path, {"vqa": section}, batch_size=4))
        analyzer.load(CPU)
        try:
            want = settings.get("prompt", "answer en {question}")
            assert analyzer._template == want  # chosen from the config's model_type, unless configured
            return analyzer.analyze(images), [analyzer.analyze([im])[0] for im in images]
        finally:
            analyzer.unload()

    batch, single = ask()
    for field in ("cat", "table"):
        assert answers_of(batch, field) == answers_of(single, field)
        assert all("<" not in a for a in answers_of(batch, field))
    assert len({a for field in ("cat", "table") for a in answers_of(batch, field)}) > 1
    # the default is exactly PaliGemma's prefix; a configured prompt replaces it
    explicit, _ = ask(prompt="answer en {question}")
    assert [named(a) for a in explicit] == [named(a) for a in batch]
    other, _ = ask(prompt="{question} Answer in a few words.")
    assert [named(a) for a in other] != [named(a) for a in batch]


# -- the real pipeline ---------------------------------------------------------------------------------------


def test_pipeline_writes_captions_and_answers_to_the_json_sidecar(
    tiny_model: Callable[[str], Path], photos: Path, tmp_path: Path
) -> None:
    plugins = {
        "caption": {"enabled": True, "model": str(tiny_model("blip")), "max_new_tokens": 5},
        "vqa": {
            "enabled": True,
            "model": str(tiny_model("blip_vqa")),
            "questions": QUESTIONS,
            "max_new_tokens": 3,
        },
    }
    summary, second = scan(tmp_path, plugins, "caption,vqa,sidecar", photos, times=2)
    assert summary.tagged == 6 and summary.failed == 0, summary.failures
    assert second.skipped == 6  # fingerprints are stable across the load
    doc = json.loads(sidecar_path(photos / "cat.jpg").read_text(encoding="utf-8"))
    cap, vqa = doc["analyzers"]["caption"], doc["analyzers"]["vqa"]
    assert isinstance(cap["caption"], str) and cap["caption"] and doc["caption"] == cap["caption"]
    assert cap["model"]["id"] == str(tiny_model("blip")) and cap["model"]["revision"].startswith("local-")
    assert set(vqa["answers"]) == {"cat", "table"}
    assert [q["question"] for q in vqa["qa"]] == ["is there a cat ?", "what is on the table ?"]
    assert {q["name"]: q["answer"] for q in vqa["qa"]} == vqa["answers"]
    assert "extra" not in vqa
    assert cap["qa"] == [] and "answers" not in cap


# -- answers to XMP fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("EXIF:Artist", "is in the EXIF group"),
        ("IPTC:Headline", "is in the IPTC group"),
        ("File:Comment", "is in the File group"),
        ("XMP:Headline", "does not name its XMP group"),
        ("Headline", "not an exiftool tag name"),
        ("XMP-dc:Subject", "manages itself"),
        ("XMP-dc:description", "manages itself"),  # exiftool names are case-insensitive
        ("XMP-lr:HierarchicalSubject", "manages itself"),
        ("XMP-digiKam:TagsList", "manages itself"),
        ("XMP-tiff:ImageDescription", "manages itself"),
        ("XMP-mwg-rs:RegionInfo", "manages itself"),
        ("XMP-iptcExt:ImageRegionName", "manages itself"),
        ("XMP-phototag:Caption", "manages itself"),
        ("XMP-dc:all", "not a single XMP tag"),
        ("XMP-dc:Title-fr", "not a single XMP tag"),
        ("XMP-photoshop:Headline\n-XMP-dc:Rights=X", "not a single XMP tag"),
    ],
)
def test_refused_xmp_tags_are_config_errors(tag: str, message: str, tmp_path: Path) -> None:
    questions = [{"question": "Who?", "field": "who"}, {"question": "What is it?", "xmp": tag}]
    config = config_with(tmp_path, {"vqa": {"enabled": True, "questions": questions}})
    with pytest.raises(ConfigError, match=r"plugins\.vqa\.questions\.1\.xmp") as err:
        registered_by(vqa_plugin, config)
    assert message in str(err.value)
    assert "config.yaml" in str(err.value)


def test_xmp_text_fields_are_accepted(tmp_path: Path) -> None:
    tags = ["XMP-photoshop:Headline", "XMP-dc:Title", "XMP-iptcExt:PersonInImage", "XMP-iptcCore:Scene"]
    questions = [{"question": f"q{i}?", "xmp": t} for i, t in enumerate(tags)]
    (analyzer,) = registered_by(
        vqa_plugin, config_with(tmp_path, {"vqa": {"enabled": True, "questions": questions}})
    )
    assert [q.xmp for q in analyzer.settings.questions] == tags


def test_pipeline_writes_answers_to_their_xmp_field(
    tiny_model: Callable[[str], Path], photos: Path, tmp_path: Path, exiftool_path: str
) -> None:
    from phototag.exiftool import Exiftool

    questions = [
        {"question": "what is on the table ?", "field": "table", "xmp": "XMP-photoshop:Headline"},
        {"question": "is there a cat ?", "field": "cat"},
    ]
    plugins = {
        "vqa": {
            "enabled": True,
            "model": str(tiny_model("blip_vqa")),
            "questions": questions,
            "max_new_tokens": 3,
        }
    }
    (summary,) = scan(tmp_path, plugins, "vqa,sidecar,xmp", photos)
    assert summary.tagged == 6 and summary.failed == 0, summary.failures
    written = 0
    with Exiftool(exiftool_path) as et:
        for path in sample_paths(photos):
            doc = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
            answer = doc["analyzers"]["vqa"]["answers"]["table"].strip()
            got = et.read_tags(
                path.with_name(path.name + ".xmp"), "XMP-photoshop:Headline", "XMP-phototag:all"
            )
            assert [a["Question"] for a in got["XMP-phototag:Answers"]] == [q["question"] for q in questions]
            if answer:
                written += 1
                assert got["XMP-photoshop:Headline"] == answer
                assert got["XMP-phototag:Fields"] == [{"Tag": "XMP-photoshop:Headline", "Value": answer}]
            else:
                assert "XMP-photoshop:Headline" not in got
    assert written, "no photo got an answer to write"


# -- one Answer type, and the answers older versions wrote -------------------------------------------------

HEADLINE, PERSON, TITLE = "XMP-photoshop:Headline", "XMP-iptcExt:PersonInImage", "XMP-dc:Title"
VQA_MODEL = ModelInfo("test/vqa", "r1")

ANSWERS = (
    Answer("Is there a person?", "yes", 0.91),  # a keyword question: no name, no field
    Answer("What is on the table?", "a cat", 0.8123, name="table", xmp=HEADLINE),
    Answer("Who is it?", "yes", None, name="who", xmp=PERSON),  # the same text as the first
    Answer("What is its title?", "", 0.1, xmp=TITLE),  # an empty answer is not written
)

# ANSWERS as phototag wrote them before Answer, in the state DB's cache and in JSON sidecars alike: names in
# "answers", every question in extra.qa, XMP fields in extra.xmp (only answers that were not empty)
OLD_RUN: dict[str, Any] = {
    "analyzer": "vqa",
    "task": "vqa",
    "model": {"id": "test/vqa", "revision": "r1"},
    "fingerprint": "fp-vqa",
    "seconds": 0.5,
    "tags": [{"name": "People", "score": 0.91, "path": ["People"]}],
    "regions": [],
    "answers": {"table": "a cat", "who": "yes"},
    "extra": {
        "qa": [
            {"question": "Is there a person?", "answer": "yes", "score": 0.91},
            {"question": "What is on the table?", "answer": "a cat", "score": 0.8123},
            {"question": "Who is it?", "answer": "yes", "score": None},
            {"question": "What is its title?", "answer": "", "score": 0.1},
        ],
        "xmp": {HEADLINE: "a cat", PERSON: "yes"},
        "plugin": "kept",
    },
}
OLD_ANSWERS = (*ANSWERS[:3], replace(ANSWERS[3], xmp=None))  # an empty answer's field was not recorded


def vqa_result(analysis: Analysis) -> PhotoResult:
    photo = Photo(Path("cat.jpg"), 1, 1, "h")
    return PhotoResult(photo, 640, 480, (AnalyzerRun("vqa", "vqa", VQA_MODEL, "fp-vqa", analysis),))


def assert_same_xmp(analysis: Analysis) -> None:
    """``analysis`` asks for the XMP fields and the provenance that ANSWERS ask for, and that phototag wrote
    for them before Answer."""
    got, new = (desired_from(vqa_result(a), "AI", 0.0) for a in (analysis, Analysis(answers=ANSWERS)))
    assert got.fields == new.fields == {HEADLINE: "a cat", PERSON: "yes"}
    assert got.answers_provenance == new.answers_provenance
    provenance = {"Analyzer": "vqa", "Model": "test/vqa", "Revision": "r1"}
    assert got.answers_provenance == [
        {"Question": "Is there a person?", "Answer": "yes", "Score": "0.9100", **provenance},
        {"Question": "What is on the table?", "Answer": "a cat", "Score": "0.8123", **provenance},
        {"Question": "Who is it?", "Answer": "yes", **provenance},
        {"Question": "What is its title?", "Score": "0.1000", **provenance},
    ]


def test_answers_round_trip_through_the_json_form() -> None:
    analysis = Analysis(answers=ANSWERS, extra={"qa": "a plugin's own", "xmp": 1})
    d = json.loads(json.dumps(analysis_to_dict(analysis)))
    assert d["answers"] == {"table": "a cat", "who": "yes"}  # as before: name -> text
    assert d["qa"][1] == {
        "question": "What is on the table?",
        "answer": "a cat",
        "score": 0.8123,
        "name": "table",
        "xmp": HEADLINE,
    }
    assert [q["name"] for q in d["qa"]] == [None, "table", "who", None]
    assert analysis_from_dict(d) == analysis  # a plugin's extra is its own, whatever its keys
    plain = analysis_to_dict(Analysis(caption="a cat"))
    assert plain["qa"] == [] and "answers" not in plain and "extra" not in plain
    assert analysis_from_dict(plain) == Analysis(caption="a cat")
    # a plugin's extra is not read for XMP fields or provenance any more
    stray = desired_from(vqa_result(Analysis(extra={"xmp": {HEADLINE: "x"}, "qa": []})), "AI", 0.0)
    assert stray.fields == {} and stray.answers_provenance == []


def test_old_answers_are_read_as_answers() -> None:
    analysis = run_from_dict(json.loads(json.dumps(OLD_RUN))).analysis
    assert analysis is not None
    assert analysis.answers == OLD_ANSWERS
    assert analysis.extra == {"plugin": "kept"}  # extra.qa and extra.xmp became the answers
    assert_same_xmp(analysis)
    again = analysis_to_dict(analysis)
    assert again["answers"] == OLD_RUN["answers"] and "qa" not in again["extra"]
    assert analysis_from_dict(again) == analysis


def test_old_answers_come_back_from_the_state_db_cache(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.db"):
        pass
    with sqlite3.connect(tmp_path / "s.db") as db:  # a row as an older phototag stored it
        db.execute(
            "INSERT INTO runs (content_hash, analyzer, fingerprint, run, created) VALUES (?,?,?,?,?)",
            ("h1", "vqa", "fp-vqa", json.dumps(OLD_RUN), 0.0),
        )
    db.close()  # the with block commits; it does not close
    with StateDB(tmp_path / "s.db") as state:
        cached = state.cached_run("h1", "vqa", "fp-vqa")
    assert cached is not None and cached.analysis is not None
    assert cached.analysis.answers == OLD_ANSWERS
    assert cached.analysis.tags == (Tag("People", 0.91, ("People",)),)
    assert_same_xmp(cached.analysis)


def test_old_answers_come_back_from_a_json_sidecar(tmp_path: Path) -> None:
    (tmp_path / "cat.jpg").write_bytes(b"bytes")
    photo = make_photo(tmp_path / "cat.jpg")
    doc = {
        "schema": "phototag/result",
        "schema_version": 1,
        "file": "cat.jpg",
        "content_hash": photo.content_hash,
        "analyzers": {"vqa": OLD_RUN},
    }
    sidecar_path(photo.path).write_text(json.dumps(doc), encoding="utf-8")
    runs = runs_from_sidecar(photo.path, photo.content_hash, {"vqa": "fp-vqa"})
    analysis = runs["vqa"].analysis
    assert analysis is not None and analysis.answers == OLD_ANSWERS
    assert_same_xmp(analysis)


def test_old_answers_without_a_question_keep_their_field_and_name() -> None:
    # another analyzer wrote only extra.xmp, or only answers; malformed items were skipped, and still are
    old = {
        "tags": [],
        "regions": [],
        "answers": {"scene": "beach", "bad": 3},
        "extra": {
            "qa": [{"question": "Where?", "answer": "a beach", "score": "high"}, "junk", {"answer": "x"}],
            "xmp": {TITLE: "Sunset", 7: "x", HEADLINE: ["not text"]},
        },
    }
    analysis = analysis_from_dict(old)
    assert analysis.answers == (
        Answer("Where?", "a beach", None),
        Answer("", "beach", name="scene"),
        Answer("", "Sunset", xmp=TITLE),
    )
    want = desired_from(vqa_result(analysis), "AI", 0.0)
    assert want.fields == {TITLE: "Sunset"}
    assert [p["Question"] for p in want.answers_provenance] == ["Where?"]  # as before: only asked questions
    assert analysis_to_dict(analysis)["answers"] == {"scene": "beach"}


@pytest.mark.parametrize(
    ("key", "value"), [("answer", 12), ("question", None), ("name", 3), ("xmp", []), ("score", "high")]
)
def test_a_hand_edited_answer_with_a_wrong_type_is_not_recovered(
    tmp_path: Path, key: str, value: Any
) -> None:
    (tmp_path / "cat.jpg").write_bytes(b"bytes")
    photo = make_photo(tmp_path / "cat.jpg")
    entry = run_to_dict(AnalyzerRun("vqa", "vqa", VQA_MODEL, "fp-vqa", Analysis(answers=ANSWERS)))
    doc = {
        "schema": "phototag/result",
        "schema_version": 1,
        "content_hash": photo.content_hash,
        "analyzers": {"vqa": entry},
    }
    sidecar_path(photo.path).write_text(json.dumps(doc), encoding="utf-8")
    assert sorted(runs_from_sidecar(photo.path, photo.content_hash, {"vqa": "fp-vqa"})) == ["vqa"]
    entry["qa"][1][key] = value
    sidecar_path(photo.path).write_text(json.dumps(doc), encoding="utf-8")
    assert runs_from_sidecar(photo.path, photo.content_hash, {"vqa": "fp-vqa"}) == {}
