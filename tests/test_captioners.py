"""Kosmos-2, PaliGemma and Florence-2 caption out of the box, and their grounded phrases become regions.

Tiny random models of each architecture, built from their transformers configs with offline tokenizers and the
real processors (``tiny_models.build_tiny_kosmos2`` and friends), go through the caption analyzer and through
``phototag scan`` with nothing configured but the model. Random weights say gibberish; what is checked is that
each family gets its own task prefix from its config, that its output is read without markup, that located
phrases become object regions in XMP and JSON, and that batching changes nothing. The reading of grounded output
is also checked on fixed strings, so it does not depend on what a random model happens to say.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from hf_helpers import CPU, config_with, decoded_samples, make, registered_by, sample_paths
from phototag.cli import main
from phototag.errors import ConfigError, ModelUnavailableError, PhototagError
from phototag.hf.caption import (
    CHAT_DETAILED_PROMPT,
    CHAT_PROMPT,
    HFCaptioner,
    RegionTask,
    _regions,
    caption_defaults,
)
from phototag.hf.generation import (
    ARCHITECTURES,
    FLORENCE_REGION_TASKS,
    Generated,
    Phrase,
    florence2_read,
    florence2_task,
    kosmos2_read,
    strip_markup,
    visible_window,
)
from phototag.hf.vqa import question_template
from phototag.plugins import caption as caption_plugin
from phototag.types import Analysis, DecodedImage, Region, fingerprint_of

FLORENCE = importlib.util.find_spec("transformers.models.florence2") is not None
needs_florence = pytest.mark.skipif(
    not FLORENCE, reason="this transformers has no native Florence-2 (Florence2ForConditionalGeneration)"
)
ARCHS = ["kosmos2", "paligemma", pytest.param("florence2", marks=needs_florence)]
MARKUP = ("<", ">", "patch_index", "loc_", "loc0", "seg0")
# PaliGemma's processor builds training labels with np.array(..., copy=False) semantics numpy 2 warns about
PALIGEMMA_NUMPY = "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
pytestmark = pytest.mark.filterwarnings(PALIGEMMA_NUMPY)


@pytest.fixture(scope="module")
def images(sample_photos_master: Path) -> list[DecodedImage]:
    """The six sample photos, decoded by the real decoder (small: the tiny models use 32 px)."""
    return decoded_samples(sample_photos_master, 64)


def exif(path: Path) -> dict[str, Any]:
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", str(path)], capture_output=True, check=True)
    return dict(json.loads(out.stdout)[0])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def no_markup(text: str) -> bool:
    return not any(m in text for m in MARKUP)


# -- the defaults, from the config ---------------------------------------------------------------------------


def test_defaults_are_one_table_keyed_by_model_type() -> None:
    def defaults(model_type: str, **kw: Any) -> Any:
        return caption_defaults(SimpleNamespace(model_type=model_type), **kw)

    assert defaults("kosmos-2").prompt == "<grounding>An image of"
    assert defaults("kosmos-2", detail=True).prompt == "<grounding>Describe this image in detail:"
    assert defaults("paligemma").prompt == "caption en"
    assert defaults("paligemma", detail=True).prompt == "describe en"
    assert defaults("florence2").prompt == "<CAPTION>"
    assert defaults("florence2", detail=True).prompt == "<MORE_DETAILED_CAPTION>"
    # the task prefixes win over a chat template
    assert defaults("paligemma", chat=True).prompt == "caption en"
    # regions: free with Kosmos-2's grounded captions (on), a second pass for Florence-2 (off unless set)
    assert (defaults("kosmos-2").regions, defaults("kosmos-2").region_pass) == (True, False)
    assert (defaults("florence2").regions, defaults("florence2").grounds) == (False, True)
    assert defaults("florence2").region_pass
    assert not defaults("paligemma").grounds and not defaults("paligemma").regions
    # everything else: a chat instruction, or no prompt at all
    assert defaults("idefics3", chat=True).prompt == CHAT_PROMPT
    assert defaults("idefics3", chat=True, detail=True).prompt == CHAT_DETAILED_PROMPT
    assert defaults("blip").prompt == "" and not defaults("blip", detail=True).detailed
    assert set(ARCHITECTURES) == {"kosmos-2", "paligemma", "florence2"}
    assert set(FLORENCE_REGION_TASKS) == set(RegionTask.__args__)  # type: ignore[attr-defined]


def test_vqa_questions_get_the_models_prefix_unless_configured() -> None:
    paligemma = SimpleNamespace(model_type="paligemma")
    assert question_template(paligemma) == "answer en {question}"
    assert question_template(paligemma, "{question} Answer briefly.") == "{question} Answer briefly."
    assert question_template(SimpleNamespace(model_type="kosmos-2")).startswith("<grounding>Question:")
    assert question_template(SimpleNamespace(model_type="blip")) == "{question}"


@pytest.mark.parametrize(
    ("kind", "prompt", "regions"),
    [
        ("kosmos2", "<grounding>An image of", True),
        ("paligemma", "caption en", False),
        pytest.param("florence2", "<CAPTION>", False, marks=needs_florence),
    ],
)
def test_a_renamed_model_keeps_its_familys_defaults(
    kind: str, prompt: str, regions: bool, tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    # the folder's name says BLIP: only the config counts
    renamed = tmp_path / "blip-image-captioning-base"
    shutil.copytree(tiny_model(kind), renamed)
    analyzer = make(caption_plugin, tmp_path, model=str(renamed))
    assert isinstance(analyzer, HFCaptioner)
    analyzer.load(CPU)
    try:
        assert (analyzer._prompt, analyzer._regions) == (prompt, regions)
        assert analyzer._region_task is None
    finally:
        analyzer.unload()


def test_task_prefix_wins_over_a_chat_template(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    from transformers import AutoProcessor

    from tiny_models import TINY_CHAT_TEMPLATE

    chatty = tmp_path / "paligemma-with-chat-template"
    shutil.copytree(tiny_model("paligemma"), chatty)
    processor = AutoProcessor.from_pretrained(str(chatty))
    processor.chat_template = TINY_CHAT_TEMPLATE
    processor.save_pretrained(str(chatty))
    assert AutoProcessor.from_pretrained(str(chatty)).chat_template

    def run_on(folder: Path) -> list[str | None]:
        analyzer = make(caption_plugin, tmp_path, model=str(folder), max_new_tokens=6)
        analyzer.load(CPU)
        try:
            assert analyzer._prompt == "caption en" and not analyzer._loaded_generator().chat
            return [a.caption for a in analyzer.analyze(images)]
        finally:
            analyzer.unload()

    assert run_on(chatty) == run_on(tiny_model("paligemma"))


# -- reading grounded output (fixed strings) -----------------------------------------------------------------

KOSMOS2_OUTPUT = (
    " a snowman</phrase><object><patch_index_0044><patch_index_0863></object> warming himself by<phrase> a"
    " fire</phrase><object><patch_index_0005><patch_index_0911></object>"
    "<object><patch_index_0001><patch_index_0002></object>."
)


def test_kosmos2_output_is_read_into_text_and_located_phrases(tiny_model: Callable[[str], Path]) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_model("kosmos2")))
    text, phrases = kosmos2_read(processor, "<phrase>" + KOSMOS2_OUTPUT)
    assert text == "a snowman warming himself by a fire."
    # Kosmos-2's 32x32 patch grid; the box without a phrase is not a phrase
    assert phrases == (
        Phrase("a snowman", (0.390625, 0.046875, 0.984375, 0.828125)),
        Phrase("a fire", (0.171875, 0.015625, 0.484375, 0.890625)),
    )
    snowman, fire = _regions(Generated(text, 0.61234, phrases))
    assert snowman == Region("a snowman", 0.6123, 0.3906, 0.0469, 0.5938, 0.7812, kind="object")
    assert fire.label == "a fire" and fire.kind == "object"
    # a caption cut off inside its markup: the text survives, the unfinished box does not
    text, phrases = kosmos2_read(processor, "<phrase> a cat</phrase><object><patch_index_0044>")
    assert (text, phrases) == ("a cat", ())
    # two boxes for one phrase: two regions
    _, phrases = kosmos2_read(
        processor,
        "<phrase> cats</phrase><object><patch_index_0000><patch_index_0033>"
        "</delimiter_of_multi_objects/><patch_index_0990><patch_index_1023></object>",
    )
    assert [p.text for p in phrases] == ["cats", "cats"] and phrases[0].box != phrases[1].box


@needs_florence
def test_florence2_output_is_read_per_task(tiny_model: Callable[[str], Path]) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_model("florence2")))
    od = "</s><s>car<loc_53><loc_334><loc_933><loc_775>door handle<loc_425><loc_504><loc_474><loc_516></s>"
    text, phrases = florence2_read(processor, od, "<OD>")
    assert text == "car; door handle"
    assert phrases == (
        Phrase("car", (0.0535, 0.3345, 0.9335, 0.7755)),
        Phrase("door handle", (0.4255, 0.5045, 0.4745, 0.5165)),
    )
    grounded = "</s><s>a red car<loc_53><loc_334><loc_933><loc_775><loc_711><loc_203><loc_906><loc_546></s>"
    _, phrases = florence2_read(processor, grounded, "<CAPTION_TO_PHRASE_GROUNDING>")
    assert [p.text for p in phrases] == ["a red car", "a red car"]
    # a caption: the text, with any stray location markup dropped
    assert florence2_read(processor, "</s><s>A cat<loc_5> on a table.</s>", "<CAPTION>") == (
        "A cat on a table.",
        (),
    )
    assert florence2_read(processor, "</s><s>what<loc_1></s>", None) == ("what", ())
    assert florence2_task("<CAPTION_TO_PHRASE_GROUNDING>a cat", processor) == "<CAPTION_TO_PHRASE_GROUNDING>"
    assert florence2_task("<NOT_A_TASK>", processor) is None
    assert florence2_task("a photo of", processor) is None


def test_boxes_of_a_centre_crop_are_mapped_to_the_whole_photo() -> None:
    from transformers import CLIPImageProcessorPil

    squash = CLIPImageProcessorPil(size={"height": 32, "width": 32}, do_center_crop=False)
    crop = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    assert visible_window(squash, 640, 320) == (0.0, 0.0, 1.0, 1.0)
    assert visible_window(crop, 640, 320) == (0.25, 0.0, 0.5, 1.0)  # the model saw the middle half
    assert visible_window(crop, 300, 600) == (0.0, 0.25, 1.0, 0.5)
    assert visible_window(crop, 50, 50) == (0.0, 0.0, 1.0, 1.0)


def test_a_kosmos2_that_crops_gets_its_boxes_placed_in_the_photo(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    from transformers import AutoProcessor, CLIPImageProcessorPil, Kosmos2Processor

    cropping = tmp_path / "kosmos2-centre-crop"
    shutil.copytree(tiny_model("kosmos2"), cropping)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tokenizer = AutoProcessor.from_pretrained(str(cropping)).tokenizer
    Kosmos2Processor(image_processor, tokenizer).save_pretrained(str(cropping))
    analyzer = make(caption_plugin, tmp_path, model=str(cropping))
    analyzer.load(CPU)
    try:
        analyses = analyzer.analyze(images)
    finally:
        analyzer.unload()
    assert all(a.regions for a in analyses)
    windows = [visible_window(image_processor, *image.image.size) for image in images]
    assert any(w < 1 or h < 1 for _, _, w, h in windows), "no sample photo is cropped"
    for (x, y, w, h), analysis in zip(windows, analyses, strict=True):
        for r in analysis.regions:
            assert x - 1e-4 <= r.x and r.x + r.w <= x + w + 1e-4
            assert y - 1e-4 <= r.y and r.y + r.h <= y + h + 1e-4


def test_markup_is_stripped() -> None:
    assert strip_markup("<loc0012><loc0100> cat ; dog") == "cat ; dog"
    assert strip_markup("</s><s>a cat<loc_1> on  a table.</s>") == "a cat on a table."
    assert strip_markup("a<patch_index_0001></delimiter_of_multi_objects/>b") == "ab"
    assert strip_markup("3 < 4 > 2") == "3 < 4 > 2"  # not markup


# -- the analyzer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ARCHS)
def test_default_captions_are_clean_deterministic_and_batch_invariant(
    kind: str, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    analyzer = make(caption_plugin, tmp_path, model=str(tiny_model(kind)))
    analyzer.load(CPU)
    try:
        batch = analyzer.analyze(images)
        again = analyzer.analyze(images)
        one_by_one = [analyzer.analyze([image])[0] for image in images]
    finally:
        analyzer.unload()
    caps = [a.caption for a in batch]
    assert all(isinstance(c, str) and c and no_markup(c) for c in caps), caps
    assert caps == [a.caption for a in again] == [a.caption for a in one_by_one]
    assert len(set(caps)) > 1, f"every photo got the same caption: {caps}"
    assert_same_regions(batch, one_by_one)
    assert_same_regions(batch, again)
    if kind == "kosmos2":  # grounded captions: every photo's phrase located
        assert all(a.regions for a in batch)
        for a in batch:
            for r in a.regions:
                assert r.kind == "object" and r.label in (a.caption or "")
                assert 0 <= r.x < r.x + r.w <= 1 and 0 <= r.y < r.y + r.h <= 1
    else:
        assert not any(a.regions for a in batch)


def assert_same_regions(a: list[Analysis], b: list[Analysis]) -> None:
    for x, y in zip(a, b, strict=True):
        assert [(r.label, r.x, r.y, r.w, r.h) for r in x.regions] == [
            (r.label, r.x, r.y, r.w, r.h) for r in y.regions
        ]
        for r, s in zip(x.regions, y.regions, strict=True):
            assert r.score == pytest.approx(s.score, abs=2e-3)


@needs_florence
@pytest.mark.parametrize("task", ["<CAPTION_TO_PHRASE_GROUNDING>", "<OD>", "<DENSE_REGION_CAPTION>"])
def test_florence2_region_task_is_a_second_pass(
    task: str, tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    folder = str(tiny_model("florence2"))
    plain = make(caption_plugin, tmp_path, model=folder)
    located = make(caption_plugin, tmp_path, model=folder, regions=True, region_task=task)
    assert plain.fingerprint() != located.fingerprint()
    located.load(CPU)
    try:
        assert located._region_task == task
        batch = located.analyze(images)
        single = [located.analyze([im])[0] for im in images]
    finally:
        located.unload()
    plain.load(CPU)
    try:
        captions = [a.caption for a in plain.analyze(images)]
    finally:
        plain.unload()
    assert [a.caption for a in batch] == captions  # the caption is the caption pass's
    assert all(a.regions for a in batch)
    assert all(no_markup(r.label) and r.kind == "object" for a in batch for r in a.regions)
    assert_same_regions(batch, single)


def test_kosmos2_regions_can_be_turned_off_and_detail_asks_for_more(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    folder = str(tiny_model("kosmos2"))
    off = make(caption_plugin, tmp_path, model=folder, regions=False)
    detailed = make(caption_plugin, tmp_path, model=folder, detail=True, max_new_tokens=12)
    off.load(CPU)
    detailed.load(CPU)
    try:
        assert not any(a.regions for a in off.analyze(images[:2]))
        assert detailed._prompt == "<grounding>Describe this image in detail:"
        # unsteered, the random model says mostly markup: whatever is left is clean
        assert all(a.caption is None or no_markup(a.caption) for a in detailed.analyze(images[:2]))
    finally:
        off.unload()
        detailed.unload()


def test_a_configured_prompt_overrides_the_default(
    tiny_model: Callable[[str], Path], images: list[DecodedImage], tmp_path: Path
) -> None:
    folder = str(tiny_model("paligemma"))
    default = make(caption_plugin, tmp_path, model=folder, max_new_tokens=6)
    asked = make(caption_plugin, tmp_path, model=folder, max_new_tokens=6, prompt="describe en")
    default.load(CPU)
    asked.load(CPU)
    try:
        assert asked._prompt == "describe en"
        a = [x.caption for x in default.analyze(images)]
        b = [x.caption for x in asked.analyze(images)]
    finally:
        default.unload()
        asked.unload()
    assert a != b


@pytest.mark.parametrize(
    ("kind", "settings", "message"),
    [
        ("blip", {"regions": True}, r"plugins\.caption\.regions: .*cannot locate phrases"),
        ("paligemma", {"regions": True}, r"plugins\.caption\.regions: .*cannot locate phrases"),
        ("blip", {"detail": True}, r"plugins\.caption\.detail: .*no prompt for a detailed caption"),
        ("kosmos2", {"detail": True, "prompt": "a photo of"}, r"detail and prompt do not go together"),
    ],
)
def test_settings_a_model_cannot_honour_are_clear_errors(
    kind: str, settings: dict[str, Any], message: str, tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    analyzer = make(caption_plugin, tmp_path, model=str(tiny_model(kind)), **settings)
    with pytest.raises(PhototagError, match=message):
        analyzer.load(CPU)


def test_an_unknown_region_task_is_a_config_error(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"caption": {"enabled": True, "region_task": "<OCR>"}})
    with pytest.raises(ConfigError, match=r"plugins\.caption\.region_task"):
        registered_by(caption_plugin, config)


def test_new_settings_at_their_defaults_keep_the_fingerprint(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = str(tiny_model("blip"))
    analyzer = make(caption_plugin, tmp_path, model=folder)
    # what the fingerprint was before detail, regions and region_task existed: cached captions stay valid
    before = analyzer.settings.model_dump(mode="json", exclude={"enabled", "device"})
    for key in ("detail", "regions", "region_task"):
        del before[key]
    revision = analyzer.model_info().revision
    assert analyzer.fingerprint() == fingerprint_of("hf-caption", before, revision)
    assert make(caption_plugin, tmp_path, model=folder, regions=False).fingerprint() != analyzer.fingerprint()
    assert make(caption_plugin, tmp_path, model=folder, detail=True).fingerprint() != analyzer.fingerprint()


@needs_florence
def test_a_custom_code_repository_is_refused_with_the_native_copy_named(
    tiny_model: Callable[[str], Path], tmp_path: Path
) -> None:
    # the shape of microsoft/Florence-2-base: its own code (auto_map) and configs only that code reads
    custom = tmp_path / "Florence-2-base"
    shutil.copytree(tiny_model("florence2"), custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_florence2.Florence2Config"}
    config["text_config"]["model_type"] = "florence2_language"
    (custom / "config.json").write_text(json.dumps(config))
    analyzer = make(caption_plugin, tmp_path, model=str(custom))
    with pytest.raises(ModelUnavailableError, match=r"trust_remote_code.*florence-community/Florence-2-base"):
        analyzer.load(CPU)


# -- through `phototag scan`, nothing configured but the model ------------------------------------------------


def scan_captions(folder: Path, photos: Path, tmp_path: Path, **caption: Any) -> None:
    config = {
        "state_db": str(tmp_path / "state.db"),
        "device": "cpu",
        "batch_size": 4,
        "plugins": {
            "classify": {"enabled": False},
            "detect": {"enabled": False},
            "faces": {"enabled": False},
            "embed": {"enabled": False},
            "caption": {"enabled": True, "model": str(folder), **caption},
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["--config", str(path), "scan", str(photos)]) == 0


@pytest.mark.parametrize("kind", ARCHS)
def test_scan_writes_clean_captions_and_grounded_regions(
    kind: str,
    tiny_model: Callable[[str], Path],
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    exiftool_path: str,
) -> None:
    scan_captions(tiny_model(kind), photos, tmp_path)
    assert "6 tagged, 0 skipped (already done), 0 failed" in capsys.readouterr().out
    for path in sample_paths(photos):
        doc = json.loads(path.with_name(path.name + ".phototag.json").read_text())
        run = doc["analyzers"]["caption"]
        xmp = exif(path.with_name(path.name + ".xmp"))
        caption = xmp["XMP-dc:Description"]
        assert caption == doc["caption"] == run["caption"] and caption and no_markup(caption), caption
        regions = run["regions"]
        if kind != "kosmos2":
            assert not regions and "XMP-iptcExt:ImageRegion" not in xmp
            continue
        # Kosmos-2's grounded phrases: object regions in the JSON sidecar and in XMP, named by the phrase
        assert regions and all(r["label"] in caption for r in regions)
        written = as_list(xmp["XMP-iptcExt:ImageRegion"])
        assert sorted(r["Name"] for r in written) == sorted(r["label"] for r in regions)
        for r in written:
            box = r["RegionBoundary"]
            assert (box["RbUnit"].lower(), box["RbShape"].lower()) == ("relative", "rectangle")
            assert 0 <= float(box["RbX"]) < float(box["RbX"]) + float(box["RbW"]) <= 1.0001


@needs_florence
def test_scan_writes_florence2_regions_when_asked(
    tiny_model: Callable[[str], Path],
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    exiftool_path: str,
) -> None:
    scan_captions(tiny_model("florence2"), photos, tmp_path, regions=True, region_task="<OD>")
    assert "6 tagged" in capsys.readouterr().out
    for path in sample_paths(photos):
        doc = json.loads(path.with_name(path.name + ".phototag.json").read_text())
        regions = doc["analyzers"]["caption"]["regions"]
        xmp = exif(path.with_name(path.name + ".xmp"))
        assert regions and no_markup(xmp["XMP-dc:Description"])
        written = as_list(xmp["XMP-iptcExt:ImageRegion"])
        assert sorted(r["Name"] for r in written) == sorted(r["label"] for r in regions)
