"""The metadata fields phototag writes, and the rules about them; no I/O.

A neutral module: the XMP writer (:mod:`phototag.plugins.xmp`), its planner (:mod:`phototag.xmpplan`) and
analyzers that name a field (the VQA settings check ``xmp:`` with :func:`xmp_field_problem`) all import it, so
a backend never imports a writer plugin.

What goes where (see METADATA.md):

* keywords: ``XMP-dc:Subject``; embedding into JPEG/TIFF also ``IPTC:Keywords`` (UTF-8,
  ``CodedCharacterSet`` set; keywords over IPTC's 64 bytes stay XMP-only);
* hierarchy: ``XMP-lr:HierarchicalSubject`` (``AI|Animals|Cat``) and ``XMP-digiKam:TagsList``
  (``AI/Animals/Cat``), the **full path of each assigned keyword only**: an ancestor listed as an entry of its
  own (``AI``, ``AI|Animals``) becomes a tag of its own in darktable and digiKam. The two lists are kept in
  sync, the user's entries included (``metadata.sync_user_hierarchy``, see :mod:`phototag.xmpplan`);
* keyword text (:func:`keyword_text`, :func:`tagslist_entry`): one line (white space runs become one space),
  never a comma (darktable splits keywords at commas: ``Café, Paris`` became ``Café``; a comma becomes
  `` - ``: ``castle, palace`` -> ``castle - palace``, nothing of the label is lost; the classifier backends
  already keep only the first of an ImageNet-style synonym list), ``|`` (the separator of both hierarchy
  lists) becomes ``-`` in dc:subject and in both lists; ``/`` stays in dc:subject and lr:hierarchicalSubject
  (``AC/DC``: the leaf equals the flat keyword) and becomes ``-`` only in TagsList (``AI/Music/AC-DC``);
* caption: ``XMP-dc:Description`` (x-default) + ``XMP-tiff:ImageDescription``; embedding also
  ``IPTC:Caption-Abstract`` (JPEG/TIFF, up to 2000 bytes) and ``EXIF:ImageDescription`` (JPEG/TIFF/PNG/WebP);
* faces: ``XMP-mwg-rs:RegionInfo`` (Type Face, normalised centre box, AppliedToDimensions in pixels);
  ``Name`` only for a known person (an unrecognised face has none: digiKam imports a region named ``Face``
  as a confirmed person called Face), who also goes to ``XMP-iptcExt:PersonInImage``;
* objects: ``XMP-iptcExt:ImageRegion`` (rectangle, relative units, Name = label, RId ``phototag:N``, role
  subjectArea);
* answers: an analyzer's ``Analysis.extra["xmp"]`` (``{tag: text}``; the VQA plugin's ``xmp:`` per question)
  goes to that XMP tag (:func:`xmp_field_problem` says which tags may take one); every question and answer
  (``extra["qa"]``) is recorded in ``XMP-phototag:Answers`` (Question, Answer, Score, Analyzer, Model,
  Revision);
* provenance: the ``XMP-phototag`` namespace (``phototag/data/exiftool.config``).

Answers go only to text fields of an XMP namespace, named ``XMP-<group>:<Name>`` (``XMP-photoshop:Headline``,
``XMP-dc:Title``, ``XMP-iptcExt:PersonInImage``): never a non-XMP group (IPTC, EXIF, File...), never a field
phototag manages itself (``dc:subject``, ``lr:hierarchicalSubject``, ``digiKam:TagsList``, ``dc:description``,
``tiff:ImageDescription``, ``mwg-rs``, ``iptcExt:ImageRegion``, ``XMP-phototag``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# -- tags, as exiftool names them with -G1 -------------------------------------------------------------------

SUBJECT = "XMP-dc:Subject"
HIERARCHY = "XMP-lr:HierarchicalSubject"
TAGSLIST = "XMP-digiKam:TagsList"
IPTC_KEYWORDS = "IPTC:Keywords"
PERSON_IN_IMAGE = "XMP-iptcExt:PersonInImage"
"""Known people (a Bag): phototag's entries are recorded in ``XMP-phototag:Fields`` like an answer's."""
ADDED = {
    SUBJECT: "XMP-phototag:AddedSubject",
    IPTC_KEYWORDS: "XMP-phototag:AddedKeywords",
    HIERARCHY: "XMP-phototag:AddedHierarchy",
    TAGSLIST: "XMP-phototag:AddedTagsList",
}
# caption fields: tag to write -> key it reads back as (exiftool -G1)
CAPTION_XMP = {
    "XMP-dc:Description": "XMP-dc:Description",
    "XMP-tiff:ImageDescription": "XMP-tiff:ImageDescription",
}
CAPTION_IPTC = {"IPTC:Caption-Abstract": "IPTC:Caption-Abstract"}
CAPTION_EXIF = {"EXIF:ImageDescription": "IFD0:ImageDescription"}
PEOPLE_ROOT = "People"
"""Where known people go in the keyword hierarchy (``People|Ada Lovelace``; digiKam's and Lightroom's habit),
outside the AI keyword root."""
REGION_INFO = "XMP-mwg-rs:RegionInfo"
IMAGE_REGION = "XMP-iptcExt:ImageRegion"
PROVENANCE = "XMP-phototag:"
OBJECT_RID = "phototag:"
"""RId prefix of phototag's object regions (``phototag:1``...); regions with another RId are the user's."""
SUBJECT_AREA = "http://cv.iptc.org/newscodes/imageregionrole/subjectArea"
# provenance fields that hold a list of structures
STRUCT_LISTS = ("Tags", "Regions", "Fields", "Answers")
READ_TAGS = (
    SUBJECT, HIERARCHY, TAGSLIST, "XMP-dc:Description", "XMP-tiff:ImageDescription",
    REGION_INFO, IMAGE_REGION, "XMP-phototag:all", "IPTC:all", "EXIF:ImageDescription",
)  # fmt: skip

# -- what each file type carries, and IPTC's limits ----------------------------------------------------------

IPTC_EXTS = frozenset({".jpg", ".jpeg", ".tif", ".tiff"})
EXIF_EXTS = IPTC_EXTS | {".png", ".webp"}
RAW_EXTS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf"})
IPTC_EMPTY = frozenset(
    {"IPTC:CodedCharacterSet", "IPTC:EnvelopeRecordVersion", "IPTC:ApplicationRecordVersion"}
)
IPTC_KEYWORD_MAX = 64
IPTC_CAPTION_MAX = 2000

# -- answer fields -------------------------------------------------------------------------------------------

# answers go only to single, named XMP tags: GROUP and Name as exiftool spells them, nothing that could be
# read as an option, a wildcard, a language suffix or a print-conversion switch
_FIELD_TAG = re.compile(r"^XMP-[A-Za-z][A-Za-z0-9_-]*:[A-Za-z][A-Za-z0-9_]*$")
MANAGED_FIELDS = frozenset(t.lower() for t in (SUBJECT, HIERARCHY, TAGSLIST, *CAPTION_XMP, IMAGE_REGION))
MANAGED_GROUPS = frozenset({"xmp-phototag", "xmp-mwg-rs", "xmp-x"})
FieldKind = str
"""How a field is written: ``text`` (``-TAG=v``), ``lang-alt`` (``-TAG-x-default=v``) or ``list``
(``-TAG-=v``, ``-TAG+=v``)."""


def xmp_field_problem(tag: str) -> str | None:
    """Why phototag will not write an answer to the exiftool tag ``tag``; None when it may.

    Allowed: one XMP tag named with its group (``XMP-photoshop:Headline``). Refused: other groups (IPTC,
    EXIF, File...), wildcards, and the fields phototag manages itself (keywords, hierarchy, caption, regions,
    its own namespace).
    """
    group, sep, name = tag.partition(":")
    if not sep or not group or not name:
        return f"{tag!r} is not an exiftool tag name: write XMP-<group>:<Name>, e.g. XMP-photoshop:Headline"
    if group.lower() == "xmp":
        return (
            f"{tag!r} does not name its XMP group: write XMP-<group>:{name} (the group as exiftool -G1 shows "
            "it, e.g. XMP-photoshop:Headline)"
        )
    if not group.lower().startswith("xmp-"):
        return (
            f"{tag!r} is in the {group} group: answers can only go to XMP tags (XMP-<group>:<Name>, "
            "e.g. XMP-photoshop:Headline)"
        )
    if not _FIELD_TAG.match(tag) or name.lower() == "all":
        return (
            f"{tag!r} is not a single XMP tag: write XMP-<group>:<Name> (letters, digits and _ only, no "
            "language suffix), e.g. XMP-photoshop:Headline"
        )
    low = tag.lower()
    if (
        group.lower() in MANAGED_GROUPS
        or low in MANAGED_FIELDS
        or low.startswith(IMAGE_REGION.lower())  # its flattened fields (ImageRegionName ...) too
    ):
        return (
            f"{tag!r} holds what phototag manages itself (keywords, hierarchy, caption, regions, provenance): "
            "choose another field, e.g. XMP-photoshop:Headline"
        )
    return None


# Placeholders camera firmware and old software write into ImageDescription. They are nobody's caption, so
# ``caption: keep`` does not let them block phototag's (the list digiKam and others ignore, in upper case).
CAMERA_PLACEHOLDER_CAPTIONS = frozenset(
    {
        "OLYMPUS DIGITAL CAMERA",
        "SONY DSC",
        "SONY DIGITAL CAMERA",
        "MINOLTA DIGITAL CAMERA",
        "KONICA MINOLTA DIGITAL CAMERA",
        "DIGITAL CAMERA",
        "SAMSUNG DIGITAL CAMERA",
        "SAMSUNG CAMERA PICTURES",
        "KODAK DIGITAL STILL CAMERA",
        "PENTAX DIGITAL CAMERA",
        "CASIO QV DIGITAL",
        "DEFAULT",
        "LEAD TECHNOLOGIES INC. V1.01",
    }
)


def is_user_caption(text: str | None) -> bool:
    """A caption someone wrote: not blank and not a camera's placeholder."""
    return text is not None and bool(text.strip()) and text.strip().upper() not in CAMERA_PLACEHOLDER_CAPTIONS


# -- text cleaning -------------------------------------------------------------------------------------------

_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # not characters in XML 1.0


def clean_text(text: str) -> str:
    """``text`` as every XML reader will see it: control characters other than tab and newline (invalid in
    XML) become spaces, CR LF and CR become LF."""
    # XML parsers turn CR LF and CR into LF anyway; doing it here keeps what phototag records equal to what
    # every reader sees
    return _XML_ILLEGAL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))


def keyword_text(text: str) -> str:
    """A generated flat keyword or one level of its hierarchy path, as dc:subject and lr:hierarchicalSubject
    take it: cleaned (:func:`clean_text`), white space runs (newlines, tabs) as one space, a comma and the
    spaces around it as `` - `` (darktable splits keywords at commas; leading and trailing commas go), ``|``
    (the hierarchy separator) as ``-``; ``/`` stays. Empty: nothing usable is left (the caller drops it)."""
    parts = (" ".join(part.split()) for part in clean_text(text).replace("|", "-").split(","))
    return " - ".join(part for part in parts if part)


def tagslist_entry(levels: Iterable[str]) -> str:
    """A hierarchy path as a TagsList entry: levels joined with ``/``, a ``/`` inside a level as ``-``."""
    return "/".join(level.replace("/", "-") for level in levels)


def hierarchy_to_tagslist(entry: str) -> str:
    """A (user's) lr:hierarchicalSubject entry as TagsList writes it: ``People|AC/DC`` -> ``People/AC-DC``."""
    return tagslist_entry(entry.split("|"))


def tagslist_to_hierarchy(entry: str) -> str:
    """A (user's) TagsList entry as lr:hierarchicalSubject writes it: ``a/b|c`` -> ``a|b-c``."""
    return "|".join(level.replace("|", "-") for level in entry.split("/"))


def unique(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, in first-seen order."""
    return list(dict.fromkeys(items))
