"""Property-based tests (hypothesis) of phototag's invariants over hostile inputs (RELIABILITY.md 17-21).

The metadata properties are checked on real exiftool output: the pipeline runs with real decoding, real SQLite and the
real XMP and JSON writers (as in test_trust), driven by an inline analyzer whose result each example sets;
what was written is read back with a separate exiftool. One pipeline per metadata mode and one reading
exiftool live for the whole module, and every example works on copies of 64x64 JPEGs made once, so the
default run stays short. Each property also has a ``slow`` run with ten times the examples.

1. File names are data: names with format codes, option-like prefixes, quotes, newlines, bytes that are not
   UTF-8 and lengths near 255 bytes are tagged correctly or fail with a message about the photo; a neighbour's
   metadata never leaks in, nothing is left behind, pixels are untouched.
2. The user's existing keywords and captions (XMP, and IPTC when embedding) survive a write and an ``untag``
   exactly, with no keyword duplicated.
3. Keywords, hierarchy, captions, region labels and people from an analyzer are written exactly (modulo the
   documented cleaning) and inject nothing.
4. Any config file loads or fails with a ConfigError that names the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from phototag import Analysis, DecodedImage, Device, ModelInfo, Needs, Region, Tag
from phototag.config import Config, load_config
from phototag.errors import ConfigError, display
from phototag.exiftool import Exiftool, as_list
from phototag.images import pixel_hash
from phototag.manager import get_plugin_manager, registered
from phototag.pipeline import Outcome, Pipeline
from phototag.plugins.xmp import XmpWriter, is_user_caption
from test_pipeline import Plugin

# -- running a property ------------------------------------------------------------------------------------------

SCALE = [pytest.param(1, id="quick"), pytest.param(10, id="long", marks=pytest.mark.slow)]
"""Every property runs twice: a bounded run in the default suite and a ``slow`` one with 10x the examples."""
MODES = ["sidecar", "embed"]


def check(
    prop: Callable[[Any], None], strategy: st.SearchStrategy[Any], examples: int, known: Sequence[Any] = ()
) -> None:
    """Run ``prop`` on ``examples`` values drawn from ``strategy``, after the ``known`` ones. No example
    database (nothing is written to ``.hypothesis/``), no deadline (exiftool's timing varies)."""
    test = given(strategy)(prop)
    for value in reversed(known):
        test = example(value)(test)
    settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )(test)()


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis caches (unicode tables, source constants) go to a temp folder, not ``.hypothesis/`` in the
    repository (there is no example database: ``database=None``)."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis-home"))
    yield
    set_hypothesis_home_dir(None)


# -- the pipeline and the photos, once per module ----------------------------------------------------------------

USER_KW = "Mine, from the camera"
SECRET = "Secret of the neighbour"
OUR_KW, OUR_KW2 = "Machine", "Machine v2"
OUR_CAPTION = "a caption phototag wrote"
ROOT = "AI"


class Scripted:
    """An analyzer that returns ``analysis`` (set by each example) for every photo it is given; the photos are
    decoded for real first (the pipeline runs with ``force``, so nothing comes from the cache)."""

    task = "classify"
    needs = Needs(devices=("cpu",))
    input_size = 64
    name = "scripted"

    def __init__(self) -> None:
        self.analysis = Analysis()

    def model_info(self) -> ModelInfo:
        return ModelInfo("test/scripted", "1")

    def fingerprint(self) -> str:
        return "scripted-1"

    def load(self, device: Device) -> None:
        pass

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        assert all(d.image.size == (64, 64) for d in images)
        return [self.analysis for _ in images]

    def unload(self) -> None:
        pass


def tagged_as(*names: str) -> Analysis:
    return Analysis(tags=tuple(Tag(n, 0.9, ("Fuzz", n)) for n in names))


@dataclass
class Harness:
    et: Exiftool
    root: Path
    analyzer: Scripted
    pipelines: dict[str, Pipeline]
    masters: dict[str, Path] = field(default_factory=dict)
    pixels: str = ""

    def folder(self) -> Path:
        """A fresh folder for one example (its name holds a format code too)."""
        return Path(tempfile.mkdtemp(prefix="f%d-", dir=self.root))

    def run(self, mode: str, photo: Path, analysis: Analysis) -> Outcome:
        self.analyzer.analysis = analysis
        outcomes: list[Outcome] = []
        self.pipelines[mode].run([photo], force=True, on_outcome=outcomes.append)
        (outcome,) = outcomes
        note(f"{mode} run: {outcome.status} {outcome.message}")
        return outcome

    def writer(self, mode: str) -> XmpWriter:
        (writer,) = [w for w in self.pipelines[mode].writers if isinstance(w, XmpWriter)]
        return writer

    def read(self, path: Path, *tags: str) -> dict[str, Any]:
        return self.et.read_tags(path, *tags) if path.exists() else {}


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("fuzz")
    masters = root / "masters"
    masters.mkdir()
    plain = masters / "plain.jpg"
    Image.new("RGB", (64, 64), (200, 120, 40)).save(plain, quality=85)
    analyzer = Scripted()
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar,xmp"})
    with Exiftool(timeout=30) as et, registered(pm, Plugin(analyzer), "inline"):  # type: ignore[arg-type]
        files = {"plain": plain}
        for name, args in {
            "user": [f"-XMP-dc:Subject={USER_KW}"],
            "neighbour": [f"-XMP-dc:Subject={SECRET}", f"-XMP-dc:Description={SECRET}"],
            "other": ["-XMP-dc:Creator=Ada Lovelace", "-IFD0:Artist=Ada Lovelace", "-XMP-xmp:Rating=3"],
        }.items():
            files[name] = masters / f"{name}.jpg"
            shutil.copy(plain, files[name])
            et.write(files[name], *args)
        files["neighbour.xmp"] = masters / "neighbour.jpg.xmp"
        et.execute(f"-XMP-dc:Subject={SECRET}", str(files["neighbour.xmp"]))
        pipelines = {}
        for mode in MODES:
            overrides = {"state_db": str(root / f"state-{mode}" / "state.db"), "metadata.mode": mode}
            pipelines[mode] = Pipeline.from_config(load_config(None, overrides=overrides, environ={}), pm)
        try:
            yield Harness(et, root, analyzer, pipelines, files, pixel_hash(plain))
        finally:
            for pipeline in pipelines.values():
                pipeline.state.close()
                pipeline.close()


def subjects(h: Harness, path: Path) -> list[str]:
    return [str(v) for v in as_list(h.read(path, "XMP-dc:Subject").get("XMP-dc:Subject"))]


def is_clear_failure(outcome: Outcome, photo: Path) -> bool:
    return (
        outcome.status == "failed"
        and outcome.message.startswith(f"{display(photo)}: ")
        and "Traceback" not in outcome.message
    )


# -- 1. file names are data ----------------------------------------------------------------------------------------

SIDECAR_ROOM = len(".jpg.phototag.json")
"""A stem must leave room for the longest name phototag makes from it (``STEM.jpg.phototag.json``)."""
MAX_STEM = 255 - SIDECAR_ROOM

NAME_BITS = [
    "%d", "%e", "%f", "%%", "%-2f", "%.3e", "%1:d", "%c", "-", "--", "@", "#", " ", "  ", "'", '"', "$", "$x",
    "${d}", "*", "?", "[a]", "\\", "=", ",", ";", "|", "<", ">", "&", "\t", "é", "e\u0301", "日本", "\u202e",
    "\n",  # once among ~40: newlines are rare but legal on Linux
]  # fmt: skip
NAME_STARTS = ["", "", "-", "--", "-all=", "-@", "@", "#", " ", "%d", "-%f", "~", "."]
NAME_CHAR = st.characters(exclude_categories=("Cs",), exclude_characters="/\x00")


def _fits(stem: str) -> bool:
    raw = os.fsencode(stem)
    return (
        bool(stem) and stem != "neighbour" and b"/" not in raw and b"\x00" not in raw and len(raw) <= MAX_STEM
    )


_name_part = st.one_of(
    st.sampled_from(NAME_BITS),
    st.text(NAME_CHAR, min_size=1, max_size=8),
    st.binary(min_size=1, max_size=6).map(os.fsdecode),  # not UTF-8, mostly: lone surrogates in Python
)
short_stems = st.builds(  # as the file system gives the name back (b"\xc2" + b"\x80" is UTF-8 for U+0080)
    lambda start, parts: os.fsdecode(os.fsencode(start + "".join(parts))),
    st.sampled_from(NAME_STARTS),
    st.lists(_name_part, min_size=1, max_size=6),
).filter(_fits)


def _padded(stem: str, pad: str, slack: int) -> str:
    room = MAX_STEM - slack - len(os.fsencode(stem))
    return os.fsdecode(os.fsencode(stem + pad * max(room // len(os.fsencode(pad)), 0)))


long_stems = st.builds(
    _padded, short_stems, st.sampled_from(["n", "é", "€", "\U0001f600", "\udcff", "%d"]), st.integers(0, 20)
).filter(_fits)
stems = st.one_of(short_stems, short_stems, long_stems)


def photo_with_a_neighbour(h: Harness, stem: str) -> tuple[Path, dict[Path, bytes]]:
    folder = h.folder()
    photo = folder / f"{stem}.jpg"
    shutil.copy(h.masters["user"], photo)
    neighbours = {
        folder / "neighbour.jpg": h.masters["neighbour"],
        folder / "neighbour.jpg.xmp": h.masters["neighbour.xmp"],
    }
    for path, master in neighbours.items():
        shutil.copy(master, path)
    return photo, {path: path.read_bytes() for path in neighbours}


def assert_tagged_with(h: Harness, mode: str, photo: Path, keyword: str) -> None:
    target = photo if mode == "embed" else photo.with_name(photo.name + ".xmp")
    found = subjects(h, target)
    assert USER_KW in found and keyword in found and SECRET not in found, found
    doc = json.loads(photo.with_name(photo.name + ".phototag.json").read_bytes())
    assert doc["file"] == display(photo.name)


@pytest.mark.parametrize("scale", SCALE)
@pytest.mark.parametrize("mode", MODES)
def test_file_names_are_data(harness: Harness, mode: str, scale: int) -> None:
    """Tagged right (the user's keyword kept, nothing of the neighbour's) or a failure about this photo; a
    re-run with a changed result likewise; the neighbour untouched; no temp file left; pixels unchanged."""
    h = harness

    def prop(stem: str) -> None:
        photo, neighbours = photo_with_a_neighbour(h, stem)
        try:
            original = photo.read_bytes()
            done = None
            for keyword in (OUR_KW, OUR_KW2):
                outcome = h.run(mode, photo, tagged_as(keyword))
                if outcome.status == "tagged":
                    assert_tagged_with(h, mode, photo, keyword)
                    done = keyword
                else:
                    assert is_clear_failure(outcome, photo), outcome
                    event(f"{mode}: failed: {outcome.message.removeprefix(display(photo))[:40]}")
                    if done is not None:  # a failed update leaves the previous result whole
                        assert_tagged_with(h, mode, photo, done)
                assert {p: p.read_bytes() for p in neighbours} == neighbours
                expected = {photo.name, f"{photo.name}.phototag.json", *(p.name for p in neighbours)}
                if mode == "sidecar":
                    expected.add(f"{photo.name}.xmp")
                left = set(os.listdir(os.fsencode(photo.parent))) - {os.fsencode(n) for n in expected}
                assert not left, f"left behind: {left}"  # exiftool's or phototag's temp files, or worse
                if mode == "embed":
                    assert pixel_hash(photo) == h.pixels
                else:
                    assert photo.read_bytes() == original
        finally:
            shutil.rmtree(photo.parent)

    known = [
        "%d%f",
        "-all=",
        "#x",
        "@at",
        "a\nb",
        "a\n$x",
        " \n@",
        os.fsdecode(b"caf\xe9-\xff"),
        "n" * MAX_STEM,
    ]
    check(prop, stems, 25 * scale, known)


@pytest.mark.parametrize("scale", SCALE)
@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_a_long_name_tagged_once_can_be_tagged_again(harness: Harness, mode: str, scale: int) -> None:
    """Names near 255 bytes must not overflow in temp names (RELIABILITY 17): a name that phototag tagged
    once stays one it can update (a new model, a changed result)."""
    h = harness

    def prop(stem: str) -> None:
        photo, _ = photo_with_a_neighbour(h, stem)
        try:
            first = h.run(mode, photo, tagged_as(OUR_KW))
            if (
                first.status != "tagged"
            ):  # refused from the start (a line break with '@'): not this property's
                assert is_clear_failure(first, photo), first
                return
            assert_tagged_with(h, mode, photo, OUR_KW)
            again = h.run(mode, photo, tagged_as(OUR_KW2))
            assert again.status == "tagged", again.message
            assert_tagged_with(h, mode, photo, OUR_KW2)
        finally:
            shutil.rmtree(photo.parent)

    near_limit = st.builds(
        _padded, short_stems, st.sampled_from(["n", "é", "\udcff"]), st.integers(0, 4)
    ).filter(_fits)
    check(prop, near_limit, 10 * scale, ["n" * MAX_STEM])


# -- 2. the user's existing metadata survives ----------------------------------------------------------------------

TEXT_CHAR = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
ODD_TEXT = [
    "a|b", "AC/DC", "Café, Paris", "a;b", " lead", "trail ", "  both  ", "1.50", "007", "true", "False", "null",
    "~", "-1e5", "<&>\"'", "]]>", "&amp;", "e\u0301", "\u00e9", "tab\there", "two\nlines", "crlf\r\nline",
    "cr\ronly", "\x01ctl\x1f", "del\x7f", "\x85nel", "\u2028ls", "-all=", "#[CSTR]x", "$x @y", "{a=b}",
    "[x,y]", "AI", "AI|Fuzz", OUR_KW, "\ufeffbom", "zero\u200bwidth", "\U0001f469\u200d\U0001f467",
    "a\n-XMP-dc:Rights=X", "=", "+=x",
]  # fmt: skip


def long_text(low: int, high: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda s, n: (s * (n // len(s) + 1))[:n],
        st.text(TEXT_CHAR, min_size=1, max_size=12),
        st.integers(low, high),
    )


user_text = st.one_of(
    st.sampled_from(ODD_TEXT), st.text(TEXT_CHAR, min_size=1, max_size=30), long_text(100, 2000)
)


@dataclass(frozen=True)
class Existing:
    keywords: list[str]
    caption: str | None
    iptc_keywords: list[str]
    iptc_caption: str | None
    collide: bool
    """phototag's keyword equals one of the user's (it was there first: it stays the user's)."""


@st.composite
def existing(draw: st.DrawFn, embed: bool) -> Existing:
    """The user's metadata. IPTC only beside XMP of the same kind: where the XMP lacks a field, phototag copies
    it from IPTC-IIM (MWG reconciliation), which is another property than this one."""
    keywords = draw(st.lists(user_text, max_size=5, unique=True))
    caption = draw(st.none() | user_text)
    iptc_keywords = draw(st.lists(user_text, max_size=4, unique=True)) if embed and keywords else []
    iptc_caption = draw(st.none() | user_text) if embed and caption is not None else None
    return Existing(keywords, caption, iptc_keywords, iptc_caption, draw(st.booleans()))


def mwg_copy_applies(before: dict[str, Any]) -> bool:
    """Whether phototag would copy IPTC-IIM into XMP (the XMP field blank, as exiftool read it back)."""
    blank_keywords = not any(k.strip() for k in before["subject"]) and any(k.strip() for k in before["iptc"])
    blank_caption = not (before["caption"] or "").strip() and is_user_caption(before["iptc_caption"])
    return blank_keywords or blank_caption


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _clean(text: str) -> str:
    """The documented cleaning: control characters other than tab/newline become spaces, CR LF and CR -> LF."""
    return re.sub(
        r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", " ", text.replace("\r\n", "\n").replace("\r", "\n")
    )


def _keyword(text: str) -> str:
    """A generated keyword or hierarchy level as documented (xmpfields.keyword_text): cleaned, white space runs
    as one space, a comma and the spaces around it as `` - `` (leading and trailing commas go), ``|`` as ``-``."""
    parts = (" ".join(part.split()) for part in _clean(text).replace("|", "-").split(","))
    return " - ".join(part for part in parts if part)


def user_fields(h: Harness, path: Path) -> dict[str, Any]:
    got = h.read(
        path,
        "XMP-dc:Subject",
        "XMP-dc:Description",
        "IPTC:Keywords",
        "IPTC:Caption-Abstract",
        "XMP-phototag:all",
    )
    return {
        "subject": [str(v) for v in as_list(got.get("XMP-dc:Subject"))],
        "caption": got.get("XMP-dc:Description"),
        "iptc": [str(v) for v in as_list(got.get("IPTC:Keywords"))],
        "iptc_caption": got.get("IPTC:Caption-Abstract"),
        "phototag": sorted(k for k in got if k.startswith("XMP-phototag:")),
    }


def plus(before: list[str], ours: list[str]) -> Counter[str]:
    """What a list field must hold after phototag added ``ours``: the user's entries once each as before, and
    phototag's own once each (one the user had first is not added again)."""
    return Counter(before) + Counter(_unique([o for o in ours if o not in before]))


@pytest.mark.parametrize("scale", SCALE)
@pytest.mark.parametrize("mode", MODES)
def test_existing_user_metadata_survives_write_and_untag(harness: Harness, mode: str, scale: int) -> None:
    """Every user keyword and the user's caption read back exactly as exiftool read them before phototag wrote
    (exiftool normalises some control characters itself), after the write and after ``untag``; no keyword
    twice; phototag's own keywords there after the write and gone after ``untag``."""
    h = harness
    embed = mode == "embed"

    def prop(user: Existing) -> None:
        folder = h.folder()
        photo = folder / "photo.jpg"
        shutil.copy(h.masters["plain"], photo)
        try:
            args = [f"-XMP-dc:Subject+={k}" for k in user.keywords]
            args += [f"-XMP-dc:Description={user.caption}"] if user.caption is not None else []
            if user.iptc_keywords or user.iptc_caption is not None:
                args += [
                    "-IPTC:CodedCharacterSet=UTF8",
                    *(f"-IPTC:Keywords+={k}" for k in user.iptc_keywords),
                ]
                args += (
                    [f"-IPTC:Caption-Abstract={user.iptc_caption}"] if user.iptc_caption is not None else []
                )
            if args:
                h.et.write(photo, *args)
            before = user_fields(h, photo)
            note(f"before: {before}")
            assume(not mwg_copy_applies(before))  # e.g. a keyword " " that exiftool keeps, and IPTC ones
            photo_bytes = photo.read_bytes()
            ours = OUR_KW
            clean = [k for k in before["subject"] if k and k == _keyword(k)]
            if user.collide and clean:
                ours = clean[0]
            analysis = Analysis(tags=(Tag(ours, 0.9, ("Fuzz", ours)),), caption=OUR_CAPTION)
            outcome = h.run(mode, photo, analysis)
            assert outcome.status == "tagged", outcome.message
            target = photo if embed else photo.with_name("photo.jpg.xmp")
            user_caption = is_user_caption(before["caption"]) or is_user_caption(before["iptc_caption"])

            after = user_fields(h, target)
            assert Counter(after["subject"]) == plus(before["subject"], [ours]), after["subject"]
            if embed:
                assert Counter(after["iptc"]) == plus(
                    before["iptc"], [ours] if len(ours.encode()) <= 64 else []
                ), after["iptc"]
            if user_caption:
                assert after["caption"] == before["caption"]
                assert after["iptc_caption"] == (before["iptc_caption"] if embed else None)
            else:
                assert after["caption"] == OUR_CAPTION
            assert after["phototag"]

            h.writer(mode).remove(photo)
            untagged = user_fields(h, target)
            assert Counter(untagged["subject"]) == Counter(before["subject"]), untagged["subject"]
            assert Counter(untagged["iptc"]) == Counter(before["iptc"] if embed else []), untagged["iptc"]
            if user_caption:
                assert untagged["caption"] == before["caption"]
                assert untagged["iptc_caption"] == (before["iptc_caption"] if embed else None)
            else:
                assert untagged["caption"] != OUR_CAPTION
            assert untagged["phototag"] == []
            if not embed:
                assert photo.read_bytes() == photo_bytes  # sidecar mode never touches the photo
        finally:
            shutil.rmtree(folder)

    known = [
        Existing(["Café, Paris", " lead", "1.50", "true"], "two\nlines\r\n", [], None, True),
        Existing(["a|b", "\x01ctl\x1f"], " mine ", ["e\u0301", "x" * 80], "\u00e9 caption", False),
        Existing([OUR_KW], None, [OUR_KW], None, False),
    ]
    check(prop, existing(embed), 20 * scale, known)


# -- 3. values from analyzers ----------------------------------------------------------------------------------------

HOSTILE = [
    "a\n-XMP-dc:Rights=X", "-XMP-dc:Rights=X", "x\r\n-XMP-dc:Rights=X", "-all=", "\n-all=\n", "#[CSTR]x",
    "#[CSTR]a\\n-XMP-dc:Rights=X", "$x @y", "${XMP-dc:Rights}", "-tagsFromFile\n/etc/hostname", "\n-execute\n",
    "-stay_open\nFalse", "-@", "%d%f.jpg", "a\x00b", "a\x1fb", "a\x0bb\x0c", "\r", "a\rb", "a|b/c", "|", "/",
    " padded ", "", "   ", "\t", "\u2028", "\x85", "1.50", "true", "e\u0301", "{x=y}", "[a,b]", "a,b", "a]b}c",
    "<x>&amp;", "]]>", "=", "+=", "-=", "<=", "x<=/etc/hostname", "Café, Paris", "AI", "\x7f",
]  # fmt: skip
NONCHARACTERS = "\ufffe\uffff"
"""Not XML characters: exiftool would write each as '???'; phototag cleans them to spaces (a test below)."""
VALUE_CHAR = st.characters(exclude_categories=("Cs",), exclude_characters=NONCHARACTERS)
values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(VALUE_CHAR, max_size=40),
    st.builds(
        lambda s, n: (s * (n // len(s) + 1))[:n],
        st.text(VALUE_CHAR, min_size=1, max_size=8),
        st.integers(100, 2000),
    ),
)


@dataclass(frozen=True)
class Produced:
    tags: list[tuple[str, tuple[str, ...]]]
    caption: str | None
    object_label: str | None
    face_label: str | None

    def analysis(self) -> Analysis:
        regions = []
        if self.object_label is not None:
            regions.append(Region(self.object_label, 0.8, 0.1, 0.2, 0.3, 0.4))
        if self.face_label is not None:
            regions.append(Region(self.face_label, 0.9, 0.5, 0.5, 0.2, 0.2, kind="face"))
        return Analysis(
            tags=tuple(Tag(name, 0.9, path) for name, path in self.tags),
            regions=tuple(regions),
            caption=self.caption,
        )


def produced(text: st.SearchStrategy[str]) -> st.SearchStrategy[Produced]:
    none: st.SearchStrategy[Any] = st.none()
    tag = st.tuples(text, st.lists(text, max_size=3).map(tuple))
    return st.builds(Produced, st.lists(tag, max_size=5), none | text, none | text, none | text)


# what phototag writes (besides the values checked one by one), and what exiftool adds or updates by itself
WRITTEN = {
    "XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList", "XMP-dc:Description",
    "XMP-tiff:ImageDescription", "XMP-iptcExt:ImageRegion", "XMP-mwg-rs:RegionInfo", "XMP-x:XMPToolkit",
    "XMP-iptcExt:PersonInImage",
    "IPTC:Keywords", "IPTC:Caption-Abstract", "IPTC:CodedCharacterSet", "IPTC:ApplicationRecordVersion",
    "IPTC:EnvelopeRecordVersion", "IFD0:ImageDescription",
    "XMP-xmpNote:HasExtendedXMP",  # exiftool's, when the XMP outgrows one JPEG segment (64 kB)
}  # fmt: skip
VOLATILE = ("System:", "File:", "Composite:", "ExifTool:", "XMP-phototag:")


def assert_written_exactly(
    h: Harness, mode: str, photo: Path, made: Produced, before: dict[str, Any]
) -> None:
    target = photo if mode == "embed" else photo.with_name(photo.name + ".xmp")
    got = h.read(target)
    names: list[str] = []
    paths: list[tuple[str, ...]] = []
    for name, path in made.tags:
        levels = [lv for lv in (_keyword(p) for p in (path or (name,))) if lv]
        if _keyword(name) and levels:
            names.append(_keyword(name))
            paths.append((ROOT, *levels))
    # a named face is also the keyword People|<name> (dc:subject: the name), outside the keyword root
    named = _clean(made.face_label or "").strip()
    if named.casefold() not in ("", "face") and _keyword(named):
        names.append(_keyword(named))
        paths.append(("People", _keyword(named)))
    caption = _clean(made.caption) if made.caption is not None and _clean(made.caption).strip() else None
    if not target.exists():  # sidecar mode with nothing to say: no sidecar
        assert not names and caption is None and made.object_label is None and made.face_label is None
        return
    assert as_list(got.get("XMP-dc:Subject")) == _unique(names)
    # the full path of each keyword only, never its ancestors as entries (METADATA.md); TagsList in sync
    assert as_list(got.get("XMP-lr:HierarchicalSubject")) == _unique(["|".join(p) for p in paths])
    tagslist = _unique(["/".join(level.replace("/", "-") for level in p) for p in paths])
    assert as_list(got.get("XMP-digiKam:TagsList")) == tagslist

    assert got.get("XMP-dc:Description") == caption
    assert got.get("XMP-tiff:ImageDescription") == caption
    if mode == "embed":
        assert got.get("IFD0:ImageDescription") == caption
        fits = caption is not None and len(caption.encode()) <= 2000
        assert got.get("IPTC:Caption-Abstract") == (caption if fits else None)
        assert Counter(as_list(got.get("IPTC:Keywords"))) == Counter(
            n for n in _unique(names) if len(n.encode()) <= 64
        )

    objects = as_list(got.get("XMP-iptcExt:ImageRegion"))
    assert [(r.get("RId"), r.get("Name", "")) for r in objects] == (
        [("phototag:1", _clean(made.object_label))] if made.object_label is not None else []
    )
    # a face label that says only "face" is an unknown face (no Name); any other label names a person
    faces = as_list((got.get("XMP-mwg-rs:RegionInfo") or {}).get("RegionList"))
    person = _clean(made.face_label or "").strip()
    person = None if person.casefold() in ("", "face") else person
    assert [r.get("Name") for r in faces] == ([person] if made.face_label is not None else [])
    assert as_list(got.get("XMP-iptcExt:PersonInImage")) == ([person] if person else [])

    # nothing else set, nothing else changed: an injected argument would show here (XMP-dc:Rights, -all=)
    assert "XMP-dc:Rights" not in got
    for key, value in got.items():
        if key in WRITTEN or key.startswith(VOLATILE):
            continue
        assert key in before, f"{key} = {value!r} was set"
        assert value == before[key], key
    if mode == "embed":
        kept = {k: v for k, v in before.items() if not k.startswith(VOLATILE) and k not in WRITTEN}
        assert {k: got.get(k) for k in kept} == kept
    else:
        assert {k: got.get(k) for k in before if k.startswith("XMP-") and k not in WRITTEN} == {
            k: v for k, v in before.items() if k.startswith("XMP-") and k not in WRITTEN
        }


def analyzer_values_property(h: Harness, mode: str) -> Callable[[Produced], None]:
    def prop(made: Produced) -> None:
        folder = h.folder()
        photo = folder / "photo.jpg"
        shutil.copy(h.masters["other"], photo)
        try:
            before = h.read(photo)
            original = photo.read_bytes()
            outcome = h.run(mode, photo, made.analysis())
            if outcome.status == "tagged":
                assert_written_exactly(h, mode, photo, made, before)
            else:  # a value exiftool cannot take: a clear error about this photo, nothing half-written
                assert is_clear_failure(outcome, photo), outcome
                event(f"failed: {outcome.message.removeprefix(display(photo))[:40]}")
                assert photo.read_bytes() == original
                assert mode == "embed" or not photo.with_name("photo.jpg.xmp").exists()
            if mode == "sidecar":
                assert photo.read_bytes() == original
        finally:
            shutil.rmtree(folder)

    return prop


@pytest.mark.parametrize("scale", SCALE)
@pytest.mark.parametrize("mode", MODES)
def test_analyzer_values_are_written_exactly_and_inject_nothing(
    harness: Harness, mode: str, scale: int
) -> None:
    """Keywords, hierarchy, caption, region labels and people read back as produced, modulo the documented
    cleaning (text: control characters other than tab/newline -> space, CR LF -> LF; keywords and levels also:
    white space runs -> one space, a comma -> `` - ``, ``|`` -> ``-``; TagsList: ``/`` in a level -> ``-``); no
    other tag set or changed; never a traceback."""
    known = [
        Produced([("a\n-XMP-dc:Rights=X", ("-all=", "#[CSTR]x"))], "a\n-XMP-dc:Rights=X", "$x @y", "-all="),
        Produced(
            [("x\r\n-XMP-dc:Rights=X", ()), ("a|b/c", ("a|b", " / "))], "\r\n-all=\r\n", "a]b}c", " {x=y}"
        ),
        Produced(
            [("Café, Paris", ("AI", "Café, Paris")), ("   ", ("x",)), ("x", ("  ", "|"))], "   ", None, None
        ),
    ]
    check(analyzer_values_property(harness, mode), produced(values), 20 * scale, known)


@pytest.mark.parametrize("scale", SCALE)
def test_xml_noncharacters_in_analyzer_values_are_cleaned(harness: Harness, scale: int) -> None:
    with_nonchar = st.builds(
        lambda a, c, b: a + c + b,
        st.text(VALUE_CHAR, max_size=8),
        st.sampled_from(NONCHARACTERS),
        st.text(VALUE_CHAR, max_size=8),
    )
    known = [Produced([("a\ufffeb", ())], None, None, None)]
    check(analyzer_values_property(harness, "sidecar"), produced(with_nonchar), 10 * scale, known)


# -- 4. config files ---------------------------------------------------------------------------------------------

PLUGINS = ["classify", "detect", "faces", "embed", "caption", "vqa", "inline"]
WORDS = [
    "sidecar", "embed", "append", "replace", "keep", "auto", "cpu", "cuda", "cuda:0", "cuda:x", "mps", "float16",
    "bfloat16", "~/photos", "$HOME/x", "${UNSET}/y", "~nobody/x", "yes", "no", "on", "off", "0x1F", "1e3", "0o7",
    "2001-12-14", "12:30:00", ".inf", ".nan", "!!python/object/apply:os.system", "*x", "&x", "%", "@", "`", "|",
    ">", "{", "[", "'", '"', "#", "- a", ": b", "", " ", "\t", "\n", "\x85", "\u2028", "é",
]  # fmt: skip


def _known_keys() -> list[str]:
    keys = set(Config.model_fields)
    for info in Config.model_fields.values():
        model = info.annotation
        if isinstance(model, type) and hasattr(model, "model_fields"):
            keys |= set(model.model_fields)
    return sorted(keys | {"enabled", "model"})


KEYS = st.one_of(
    st.sampled_from(_known_keys()), st.text(max_size=8), st.integers(-2, 2), st.none(), st.booleans()
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(TEXT_CHAR, max_size=20),
    st.sampled_from(WORDS),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3)


ANY_VALUE = st.recursive(SCALARS, _containers, max_leaves=8)


def like(default: Any) -> st.SearchStrategy[Any]:
    """Values shaped like ``default`` (a setting's default, as JSON): mostly plausible, sometimes anything."""
    if isinstance(default, dict):
        section = st.fixed_dictionaries({}, optional={k: like(v) for k, v in default.items()})
        extra = st.dictionaries(KEYS, ANY_VALUE, max_size=1)
        return st.one_of(st.builds(lambda a, b: {**b, **a}, section, extra), ANY_VALUE)
    if isinstance(default, list):
        return st.one_of(
            st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(default or WORDS)), max_size=4),
            ANY_VALUE,
        )
    if isinstance(default, bool):
        return st.one_of(st.booleans(), ANY_VALUE)
    if isinstance(default, int):
        return st.one_of(st.just(default), st.integers(-2, 5000), ANY_VALUE)
    if isinstance(default, float):
        return st.one_of(st.just(default), st.floats(-1, 1e5), st.floats(), ANY_VALUE)
    return st.one_of(st.just(default), st.sampled_from(WORDS), ANY_VALUE)


def _config_shape() -> st.SearchStrategy[Any]:
    defaults = Config().model_dump(mode="json", exclude={"source", "lines", "plugins"})
    settings_section = st.fixed_dictionaries(
        {}, optional={"enabled": st.booleans() | ANY_VALUE, "device": st.sampled_from(WORDS) | ANY_VALUE}
    )
    plugins = st.dictionaries(
        st.sampled_from(PLUGINS) | KEYS, st.one_of(settings_section, ANY_VALUE), max_size=3
    )
    return st.builds(
        lambda doc, p: {**doc, "plugins": p} if p and isinstance(doc, dict) else doc,
        like(defaults),
        st.none() | plugins,
    )


def _dump(doc: Any, flow: bool, unicode: bool) -> bytes:
    return yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=unicode, sort_keys=False).encode(
        "utf-8"
    )


YAML_BITS = [
    b"metadata:\n", b"  mode: embed\n", b"  caption: keep\n", b"batch_size: 4\n", b"folders:\n", b"  - ~/x\n",
    b"plugins:\n", b"  classify: {enabled: false}\n", b"\t", b"  ", b"- ", b"? ", b": ", b"---\n", b"...\n",
    b"%YAML 1.1\n", b"%TAG ! tag:x,2000:\n", b"!!binary aGk=", b"!!python/name:os.system", b"!!set {a}",
    b"!!omap [a: 1]", b"base: &b {mode: embed}\n", b"metadata: *b\n", b"<<: *b\n", b"*undefined", b"[", b"]",
    b"{", b"}", b"'", b'"', b"\\", b"#", b"|\n", b">-\n", b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\x00", b"\r\n",
    b"\x85", b"\xe2\x80\xa8", b"1", b"~", b"\xf0\x9f\x98\x80",
]  # fmt: skip
config_bytes = st.one_of(
    st.builds(_dump, _config_shape(), st.booleans(), st.booleans()),
    st.builds(_dump, ANY_VALUE, st.booleans(), st.booleans()),
    st.builds(  # a valid document damaged: bytes put in, or cut short
        lambda text, at, junk, cut: (text[:at] + junk + text[at:])[: len(text) + len(junk) - cut],
        st.builds(_dump, _config_shape(), st.booleans(), st.booleans()),
        st.integers(0, 200),
        st.binary(max_size=4) | st.sampled_from(YAML_BITS),
        st.integers(0, 10),
    ),
    st.lists(st.sampled_from(YAML_BITS), max_size=12).map(b"".join),
    st.binary(max_size=200),
)


def config_property(tmp: Path) -> Callable[[bytes], None]:
    def prop(raw: bytes) -> None:
        path = Path(tempfile.mkdtemp(dir=tmp)) / "config.yaml"
        path.write_bytes(raw)
        try:
            config = load_config(path, environ={})
        except ConfigError as e:
            assert str(path) in str(e), str(e)
            event("ConfigError")
        else:
            assert isinstance(config, Config) and config.source == str(path)
            event("Config")
        finally:
            shutil.rmtree(path.parent)

    return prop


@pytest.mark.parametrize("scale", SCALE)
def test_any_config_file_gives_a_config_or_an_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory, scale: int
) -> None:
    """``load_config(path)`` on any bytes: a Config, or a ConfigError whose message names the file; never any
    other exception."""
    known = [b"", b"\xff\xfe", b"metadata: *b\n", b"base: &b {mode: embed}\nmetadata: *b\n", b"1: 2\n"]
    check(config_property(tmp_path_factory.mktemp("configs")), config_bytes, 200 * scale, known)


@pytest.mark.parametrize("scale", SCALE)
def test_recursive_or_deeply_nested_config_is_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, scale: int
) -> None:
    recursive = st.builds(
        lambda key, body: f"{key}: &a {body}\n".encode(),
        st.sampled_from(["plugins", "folders", "metadata", "unknown"]),
        st.sampled_from(["[*a]", "{x: *a}", "[1, [2, *a]]", "{x: [*a]}"]),
    )
    deep = st.builds(
        lambda key, n, kind: (f"{key}: " + kind[0] * n + kind[1] * n + "\n").encode(),
        st.sampled_from(["a", "folders", "plugins"]),
        st.integers(500, 3000),
        st.sampled_from([("[", "]"), ("{a: ", "}")]),
    )
    known = [b"plugins: &a {x: *a}\n", b"a: " + b"[" * 500 + b"]" * 500 + b"\n"]
    check(config_property(tmp_path_factory.mktemp("configs")), recursive | deep, 20 * scale, known)
