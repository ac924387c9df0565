"""Builtin plugin ``xmp``: writes keywords, hierarchy, caption, regions and provenance through exiftool.

This module is the part that talks to exiftool and to the file system: which file a photo's XMP goes to
(sidecar naming), reading the current metadata, asking exiftool what kind of field an answer goes to, running
the planned arguments and publishing new sidecars. What goes into which field is in
:mod:`phototag.xmpfields`; what a result asks for, in :mod:`phototag.xmpdesired`; which arguments turn the
current metadata into that while keeping what the user wrote (the ownership rules), in
:mod:`phototag.xmpplan`. The names other modules imported from here before that split are re-exported.
At about 690 lines this module is over the usual size: most of it is :class:`XmpWriter`, whose steps (read,
probe a field, apply a plan, publish a sidecar, untag) share one exiftool client, the per-tag field cache and
the settings; split up, they would pass that state around instead.

Answer fields. The VQA settings refuse a tag that :func:`~phototag.xmpfields.xmp_field_problem` refuses, as a
config error; the writer checks again, and once per tag asks exiftool, by writing a test value into a scratch
XMP file, whether it is a plain text field, a language alternative or a text list (a number, date, structure
or unknown tag is skipped with one logged warning; the rest of the write goes on).

Sidecars (``metadata.mode: sidecar``, the default: the photo is never modified).

* ``sidecar_name: append`` -> ``photo.jpg.xmp`` (darktable, digiKam, Immich); ``replace`` -> ``photo.xmp``.
* Collisions with ``replace``: ``IMG_1.CR2`` and ``IMG_1.JPG`` would share ``IMG_1.xmp``. Two photos must
  never mix their results in one file, so the owner of ``IMG_1.xmp`` is the RAW file of the group (else the
  first name in sort order); the other members fall back to ``append`` naming (``IMG_1.JPG.xmp``) and a line
  is logged. The sidecar records its photo in ``XMP-phototag:Source``.
* An existing sidecar is edited in place (exiftool's own temp file + rename), never replaced wholesale.
* A new sidecar starts as a copy of the photo's own XMP plus, where that XMP lacks them, its IPTC-IIM/EXIF
  keywords, caption, title, creator and rating (the MWG rules, :func:`_mwg_copies`; camera placeholder captions
  skipped, unmarked IPTC decoded in its real charset), as digiKam does: tools that read only the sidecar when
  one exists (Immich, darktable) keep showing the user's keywords, caption and regions. It is built in a
  private folder from the photo itself (``-tagsFromFile @``) and published with a no-clobber hard link, so a
  crash leaves either no sidecar or a complete one. ``untag`` deletes a sidecar that is left with no XMP at
  all; one that still holds the copied data stays (it may hold the user's later edits). Embed mode seeds the
  photo's own XMP the same way on phototag's first write (:meth:`XmpWriter._seed_embedded`).

Embedding (``metadata.mode: embed``): ``-overwrite_original`` (exiftool writes ``FILE_exiftool_tmp`` and
renames it over the file: atomic, no ``_original`` litter; the inode changes, hard links are not kept;
symlinks are resolved and the target is written). Pixels are never touched. A stale ``FILE_exiftool_tmp`` left
by a killed exiftool is removed before every write. ``untag`` cleans the photo and both possible sidecar
names, whichever hold phototag's namespace.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import hookimpl, xmplocation
from .. import iptc as iim
from ..config import Config
from ..errors import MetadataError, display
from ..exiftool import Exiftool, describe_failure, disk_full, private_dir
from ..fileattrs import check_rewritable, new_file_mode, replace_file, write_target
from ..tempfiles import EXIFTOOL_SUFFIX, own_temp_name, remove_stale
from ..types import PhotoResult, Writer, fingerprint_of
from ..xmpdesired import Box, Desired, desired_from, mwg_face, mwg_key, same_face
from ..xmpfields import (
    CAPTION_EXIF,
    CAPTION_IPTC,
    CAPTION_XMP,
    EXIF_EXTS,
    IPTC_EMPTY,
    IPTC_EXTS,
    PROVENANCE,
    RAW_EXTS,
    READ_TAGS,
    REGION_INFO,
    FieldKind,
    is_user_caption,
    unique,
    xmp_field_problem,
)
from ..xmpplan import Target, plan, recorded_fields, user_faces

# the writer's own names, and (re-exported) those other modules imported from here before the split
__all__ = [
    "WRITER_VERSION",
    "Desired",
    "FieldKind",
    "Target",
    "XmpWriter",
    "desired_from",
    "is_user_caption",
    "mwg_face",
    "mwg_key",
    "plan",
    "register_writers",
    "sidecar_path",
    "xmp_field_problem",
]

log = logging.getLogger(__name__)

PROBE_TEXT = "phototag probe"
WRITER_VERSION = 2
"""Part of :meth:`XmpWriter.fingerprint`: raise it when a change to this module, :mod:`phototag.xmpplan` or
:mod:`phototag.xmpdesired` changes what is written for the same results and settings. 2: full keyword paths
only (no ancestor entries), unnamed unknown faces, hierarchy lists synced, no commas in keywords."""


def sidecar_path(photo: Path, naming: str, extensions: Iterable[str] = ()) -> Path:
    """The XMP sidecar for ``photo``: ``photo.jpg.xmp`` (append) or ``photo.xmp`` (replace; on a collision
    with a sibling photo of the same stem, only the group's owner gets it, see the module docstring)."""
    append = photo.with_name(photo.name + ".xmp")
    if naming == "append":
        return append
    replace = photo.with_suffix(".xmp")
    exts = {e.lower() for e in extensions} | RAW_EXTS | IPTC_EXTS | EXIF_EXTS
    try:
        siblings = [
            p
            for p in photo.parent.iterdir()
            if p.stem == photo.stem and p.name != photo.name and p.suffix.lower() in exts and p.is_file()
        ]
    except OSError:
        siblings = []
    if not siblings:
        return replace
    owner = min([photo, *siblings], key=lambda p: (p.suffix.lower() not in RAW_EXTS, p.name))
    if owner.name == photo.name:
        return replace
    log.info("%s: %s belongs to %s; writing %s instead", photo, replace.name, owner.name, append.name)
    return append


class XmpWriter:
    """Writes one photo's results into XMP (sidecar or embedded) through one long-lived exiftool.

    ``exiftool``: an injected client (not closed by :meth:`close`); by default one is made from
    ``config.exiftool`` on first use.
    """

    name = "xmp"

    def __init__(self, config: Config, exiftool: Exiftool | None = None) -> None:
        self.config = config
        self.settings = config.metadata
        self._own = exiftool is None
        self.exiftool = exiftool or Exiftool(config.exiftool.path, timeout=config.exiftool.timeout)
        # answer fields exiftool was asked about: tag (lower case) -> (tag as exiftool names it, kind), or
        # None when refused (logged once)
        self._fields: dict[str, tuple[str, FieldKind] | None] = {}

    def fingerprint(self) -> str:
        """A short hash of every setting that changes what this writer writes, and of :data:`WRITER_VERSION`.

        The pipeline compares it with the one stored for a photo to decide whether the photo's metadata must
        be rewritten from its cached results when the writer settings (or the writer) changed.
        """
        s = self.settings
        settings = (
            s.mode, s.sidecar_name, s.keyword_root, s.caption, s.min_score, s.write_read_only,
            s.flat_ancestors, s.sync_user_hierarchy,
        )  # fmt: skip
        return fingerprint_of("xmp", settings, WRITER_VERSION)

    def target_for(self, photo: Path) -> Target:
        """Which file ``write`` edits for ``photo`` under the current settings."""
        if self.settings.mode == "embed":
            real = photo.resolve()
            return Target(real, real, sidecar=False)
        naming = self.settings.sidecar_name
        side = sidecar_path(photo, naming, self.config.image.extensions)
        return Target(write_target(side, photo), photo, sidecar=True)

    def owned_files(self, photo: Path) -> list[Path]:
        """The files this writer makes for ``photo``: its XMP sidecar (none in embed mode)."""
        if self.settings.mode == "embed":
            return []
        return [sidecar_path(photo, self.settings.sidecar_name, self.config.image.extensions)]

    def write(self, result: PhotoResult) -> None:
        """Make the photo's XMP reflect ``result``; raises MetadataError (naming the file and the fix). The
        caller holds the folder's lock (:mod:`phototag.folderlock`)."""
        photo = result.photo.path
        if not photo.is_file():
            raise MetadataError(
                photo, "file not found: it was moved or deleted before its metadata was written"
            )
        s = self.settings
        want = desired_from(
            result,
            s.keyword_root,
            s.min_score,
            flat_ancestors=s.flat_ancestors,
            sync_user_hierarchy=s.sync_user_hierarchy,
        )
        # keywords the user rejected for this photo (the web page's Review) are never added back
        from ..keywordreview import rejected_keywords, without_keywords

        want = without_keywords(want, rejected_keywords(self.config.state_db, result.photo.content_hash))
        self._resolve_fields(want)
        target = self.target_for(photo)
        if target.sidecar:
            self._write_sidecar(target, want)
        else:
            cur = self._read_photo(target.path, photo=target.path, fields=want.fields)[0]
            seeded = self._seed_embedded(target, cur, want)
            self._apply(target, seeded, want, elsewhere=())

    def _read_photo(self, *paths: Path, photo: Path, fields: Iterable[str]) -> list[dict[str, Any]]:
        """:meth:`_read` of ``paths`` (``photo`` among them), again in the right charset when ``photo`` has
        unmarked non-ASCII IPTC: exiftool reads that as Latin, and the user's keywords and caption would not
        compare equal to phototag's (:mod:`phototag.iptc`)."""
        out = self._read(*paths, fields=fields)
        if iim.may_be_misread(out[list(paths).index(photo)]):
            charset = iim.iptc_charset(self.exiftool, photo)
            if charset is not None:
                out = self._read(*paths, fields=fields, iptc_charset=charset)
        return out

    def user_faces(self, photo: Path) -> list[tuple[str, Box]]:
        """The face regions of ``photo`` that are not phototag's (:func:`phototag.xmpplan.user_faces`), as
        (Name, box), from its XMP sidecar (when there is one) and the photo itself; one per face (the
        sidecar's first: it is the newer). The people analyzer learns names from them."""
        paths = [photo]
        target = self.target_for(photo)
        if target.sidecar and target.path.is_file():
            paths.insert(0, target.path)
        out: list[tuple[str, Box]] = []
        for cur in self._read_tags(paths, [REGION_INFO, "XMP-phototag:all"]):
            for name, box in user_faces(cur):
                if not any(same_face(box, seen) for _, seen in out):
                    out.append((name, box))
        return out

    def remove(self, path: Path) -> None:
        """``untag``: remove exactly what phototag wrote for the photo at ``path``, from the photo itself and
        from both possible sidecars, wherever phototag's namespace is found."""
        photo = Path(path)
        candidates: list[Target] = []
        if photo.is_file():
            real = photo.resolve()
            candidates.append(Target(real, real, sidecar=False))
        for naming in ("append", "replace"):
            side = photo.with_name(photo.name + ".xmp") if naming == "append" else photo.with_suffix(".xmp")
            if side.is_file() and all(c.path != side for c in candidates):
                candidates.append(Target(side, photo, sidecar=True))
        if not candidates:
            return
        states = self._read(*(c.path for c in candidates))
        for target, cur in zip(candidates, states, strict=True):
            if not any(k.startswith(PROVENANCE) for k in cur):
                continue
            source = cur.get(f"{PROVENANCE}Source")
            if target.sidecar and source and source != display(photo.name):
                continue  # photo.xmp of the sibling that owns it
            self._apply(target, cur, Desired(), elsewhere=())
            if target.sidecar:
                self._drop_if_empty(target.path)
            else:
                self._tidy_embedded(target.path)

    def close(self) -> None:
        """Stop the exiftool process (when this writer made it)."""
        if self._own:
            self.exiftool.close()

    # -- internals -----------------------------------------------------------------------------------------

    def _read(
        self, *paths: Path, fields: Iterable[str] = (), iptc_charset: str | None = None
    ) -> list[dict[str, Any]]:
        """What phototag reads of each file: its own fields, the answer ``fields`` and the answer fields it
        recorded there earlier (a second, small read when those were not asked for). ``iptc_charset``: how
        to decode IPTC without a CodedCharacterSet (``-charset iptc=``; None: exiftool's default, Latin)."""
        asked = unique(fields)
        out = self._read_tags(paths, [*READ_TAGS, *asked], iptc_charset=iptc_charset)
        known = {t.lower() for t in asked}
        more = unique(t for cur in out for t, _ in recorded_fields(cur) if t.lower() not in known)
        if more:
            for cur, extra in zip(out, self._read_tags(paths, more), strict=True):
                cur.update(extra)
        return out

    def _read_tags(
        self, paths: Sequence[Path], tags: Sequence[str], *, iptc_charset: str | None = None
    ) -> list[dict[str, Any]]:
        # -charset holds for this one command only (exiftool resets options at every -execute)
        charset = ["-charset", f"iptc={iptc_charset}"] if iptc_charset else []
        items = self.exiftool.execute_json(
            *charset, *(f"-{t}" for t in tags), *map(_abspath, paths), file=paths[0]
        )
        # exiftool answers in argument order, one item per readable file; it prints a name that is not
        # UTF-8 with '?' for the odd bytes, so names are matched only when a file could not be read
        if len(items) == len(paths):
            by_file = {_abspath(p): item for p, item in zip(paths, items, strict=True)}
        else:
            by_file = {str(item.get("SourceFile")): item for item in items}
        out = []
        for p in paths:
            item = by_file.get(_abspath(p))
            if item is None:
                raise MetadataError(p, "exiftool cannot read this file: it is not a valid image of its type")
            out.append({k: v for k, v in item.items() if k != "SourceFile"})
        return out

    def _resolve_fields(self, want: Desired) -> None:
        """Keep the answer fields exiftool can write as text, under the names exiftool gives them."""
        fields: dict[str, str] = {}
        for tag, value in want.fields.items():
            found = self._field(tag)
            if found is not None and found[0] not in fields:
                fields[found[0]] = value
        want.fields = fields

    def _field(self, tag: str) -> tuple[str, FieldKind] | None:
        """(exiftool's name, kind) for an answer field, or None when phototag does not write it."""
        key = tag.lower()
        if key in self._fields:
            return self._fields[key]
        found: tuple[str, FieldKind] | None = None
        problem = xmp_field_problem(tag)
        if problem is None:
            try:
                found, problem = self._probe(tag)
            except MetadataError as e:  # exiftool trouble: not remembered, the next photo asks again
                log.warning("not writing %s this time: exiftool could not check it: %s", tag, e)
                return None
        if problem is not None:
            log.warning("not writing answers to %s: %s", tag, problem)
        self._fields[key] = found
        return found

    def _probe(self, tag: str) -> tuple[tuple[str, FieldKind] | None, str | None]:
        """Write a test value to ``tag`` in a scratch XMP file and read it back: is it a language
        alternative, plain text or a text list, and what does exiftool call it."""
        with tempfile.TemporaryDirectory(prefix="phototag-field-") as folder:
            scratch = Path(folder) / "probe.xmp"
            kind: FieldKind = "lang-alt"
            done = self.exiftool.execute(
                f"-{tag}-x-default={PROBE_TEXT}", _abspath(scratch), file=scratch, check=False
            )
            if not scratch.exists():
                kind = "text"
                done = self.exiftool.execute(
                    f"-{tag}={PROBE_TEXT}", _abspath(scratch), file=scratch, check=False
                )
            if not scratch.exists():
                return None, f"exiftool cannot write text there ({describe_failure(done)})"
            got = self.exiftool.execute_json(f"-{tag}", _abspath(scratch), file=scratch)
        values = {k: v for k, v in (got[0] if got else {}).items() if k != "SourceFile"}
        if len(values) != 1:
            return None, "it is a field inside an XMP structure; only text fields and text lists take answers"
        ((name, value),) = values.items()
        if value == [PROBE_TEXT]:
            kind = "list"
        elif value != PROBE_TEXT:
            return None, f"it is not a text field (text written there reads back as {value!r})"
        problem = xmp_field_problem(name)
        return (None, problem) if problem else ((name, kind), None)

    def _kinds(self, cur: Mapping[str, Any], want: Desired) -> dict[str, FieldKind]:
        """How to write each answer field that ``want`` or the file's record names."""
        kinds: dict[str, FieldKind] = {}
        for tag in unique([*want.fields, *(t for t, _ in recorded_fields(cur))]):
            found = self._field(tag)
            if found is not None:
                kinds[tag] = found[1]
        return kinds

    def _location_shown(self, target: Target) -> Any:
        """The target's XMP-iptcExt:LocationShown (None when the file is yet to be made)."""
        exists = target.path.exists()
        return self._read_tags([target.path], [xmplocation.TAG])[0].get(xmplocation.TAG) if exists else None

    def _apply(
        self,
        target: Target,
        cur: Mapping[str, Any],
        want: Desired,
        elsewhere: Sequence[str],
        elsewhere_fields: Mapping[str, Any] | None = None,
    ) -> bool:
        args = plan(
            target,
            cur,
            want,
            caption_mode=self.settings.caption,
            elsewhere_captions=elsewhere,
            field_kinds=self._kinds(cur, want),
            elsewhere_fields=elsewhere_fields,
        )
        # the places plugin's LocationShown entry (a structure list, which answer fields cannot be)
        args += xmplocation.shown_args(
            want.fields, recorded_fields(cur), lambda: self._location_shown(target)
        )
        if not args:
            return False
        what = "its XMP sidecar" if target.sidecar else "the photo's own metadata"
        if not target.scratch:
            before = check_rewritable(
                target.path, target.photo, allow_read_only=self.settings.write_read_only, what=what
            )
            if target.sidecar and _no_room_for_temp(target.path):
                self._rewrite_via_copy(target, args, before, what)
                return True
            remove_stale(target.path.with_name(target.path.name + EXIFTOOL_SUFFIX), photo=target.photo)
        try:
            if target.iptc and any(a.startswith("-IPTC:") for a in args):
                self._iptc_to_utf8(target.path, cur)
            self.exiftool.write(target.path, *args)
        except MetadataError as e:
            raise _about_photo(e, target, what) from e
        return True

    def _rewrite_via_copy(self, target: Target, args: list[str], before: Any, what: str) -> None:
        """Edit a sidecar whose name leaves no room for exiftool's ``_exiftool_tmp`` suffix: on a copy in a
        private folder, then put back atomically under a short temp name (mode and owner kept)."""
        scratch = private_dir("phototag-edit-")
        try:
            copy = scratch / "edit.xmp"
            shutil.copyfile(target.path, copy)
            try:
                self.exiftool.write(copy, *args)
            except MetadataError as e:
                raise _about_photo(e, target, what) from e
            replace_atomically(target.path, copy.read_bytes(), before, target.photo, what)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _iptc_to_utf8(self, path: Path, cur: Mapping[str, Any]) -> None:
        """Existing IPTC in another charset is rewritten as UTF-8 first (exiftool FAQ 10), else its non-ASCII
        text would be mislabelled once CodedCharacterSet says UTF8. The copy decodes the old values in the
        charset their bytes are in (:func:`phototag.iptc.iptc_charset`: unmarked UTF-8 is common), not
        exiftool's default Latin, which would turn unmarked UTF-8 into permanent mojibake."""
        iptc = [k for k in cur if k.startswith("IPTC:") and k != "IPTC:CodedCharacterSet"]
        if iptc and cur.get("IPTC:CodedCharacterSet") != "UTF8":
            charset = iim.iptc_charset(self.exiftool, path) if iim.may_be_misread(cur) else None
            option = ["-charset", f"iptc={charset}"] if charset else []
            self.exiftool.write(
                path, *option, "-tagsFromFile", "@", "-IPTC:all", "-IPTC:CodedCharacterSet=UTF8"
            )

    def _write_sidecar(self, target: Target, want: Desired) -> None:
        side, photo = target.path, target.photo
        if side.exists():
            cur, photo_cur = self._read_photo(side, photo, photo=photo, fields=want.fields)
            self._apply(target, cur, want, _captions(photo_cur), _xmp_of(photo_cur))
            return
        photo_cur = self._read_photo(photo, photo=photo, fields=[*want.fields, *_SEED_READ])[0]
        xmp_only = _xmp_of(photo_cur)
        if not plan(
            target,
            xmp_only,
            want,
            caption_mode=self.settings.caption,
            elsewhere_captions=_captions(photo_cur),
            field_kinds=self._kinds(xmp_only, want),
            elsewhere_fields=xmp_only,
        ):
            return  # nothing to say: no empty sidecar
        scratch = private_dir("phototag-sidecar-")
        try:
            seed = scratch / "seed.xmp"
            # the photo's own XMP, and what only its IPTC-IIM / EXIF says (:meth:`_mwg_copies`), copied by
            # exiftool from the photo itself ("@"): a file name is never put where exiftool reads format codes
            # (see exiftool.py); "nothing to write" means there is none of it
            options, copies = self._mwg_copies(photo, photo_cur)
            seeded = self.exiftool.execute(
                *options, "-tagsFromFile", "@", "-xmp:all", *copies, "-o", str(seed), _abspath(photo),
                file=photo, check=False,
            )  # fmt: skip
            if seed.exists():
                cur = self._read(seed)[0]
            elif "nothing to write" in seeded.stderr.lower() or "no writable tags" in seeded.stderr.lower():
                cur = {}
            else:
                raise MetadataError(photo, f"cannot read the photo's XMP to start its sidecar: "
                                    f"{describe_failure(seeded)}")  # fmt: skip
            scratch_target = Target(seed, photo, sidecar=True, scratch=True)
            if self._apply(scratch_target, cur, want, _captions(photo_cur), xmp_only):
                self._publish(seed, side, photo)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _seed_embedded(self, target: Target, cur: Mapping[str, Any], want: Desired) -> Mapping[str, Any]:
        """Embed mode, before phototag's first write into a photo: copy into the photo's XMP what only its
        IPTC-IIM / EXIF says (:meth:`_mwg_copies`), as a new sidecar gets it. Once phototag has written an XMP
        packet, readers that follow MWG (XMP wins when present) no longer look at the IPTC keywords and
        caption. ``cur``: the photo as :meth:`write` read it; returns it read again after a copy. Nothing is
        written when phototag has nothing to write, or has written into this photo before (its namespace is
        there). Call it from :meth:`write` as ``cur = self._seed_embedded(target, cur, want)``."""
        if any(k.startswith(PROVENANCE) for k in cur) or not plan(
            target, cur, want, caption_mode=self.settings.caption, field_kinds=self._kinds(cur, want)
        ):
            return cur
        photo = target.path
        options, copies = self._mwg_copies(photo, self._read_photo(photo, photo=photo, fields=_SEED_READ)[0])
        if not copies:
            return cur
        what = "the photo's own metadata"
        check_rewritable(photo, target.photo, allow_read_only=self.settings.write_read_only, what=what)
        remove_stale(photo.with_name(photo.name + EXIFTOOL_SUFFIX), photo=target.photo)
        try:
            self.exiftool.write(photo, *options, "-tagsFromFile", "@", *copies)
        except MetadataError as e:
            raise _about_photo(e, target, what) from e
        return self._read_photo(photo, photo=photo, fields=want.fields)[0]

    def _mwg_copies(self, photo: Path, photo_cur: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """(options, copy arguments) that give a new sidecar what the photo says only in IPTC-IIM or EXIF,
        for an exiftool command that already has ``-tagsFromFile @`` (the photo itself is the source).

        ``photo_cur``: the photo as :meth:`_read_photo` read it with :data:`_SEED_READ` among the fields. The
        rules (MWG reconciliation, simplified; :data:`_SEED_FROM`): the photo's XMP wins wherever it holds the
        field (MWG would also let IPTC changed after the XMP win, told by XMP-photoshop:IPTCDigest; phototag
        does not); otherwise the first source that has a value, EXIF before IPTC as MWG orders them. A camera
        placeholder (:func:`~phototag.xmpfields.is_user_caption`) is nobody's caption and a rating of 0 is no
        rating: neither is copied. IPTC text without a CodedCharacterSet is decoded in the charset its bytes
        are in (``-charset iptc=``, :mod:`phototag.iptc`), not exiftool's default Latin. Nothing copied is
        recorded as phototag's: it is the user's data."""
        pairs = _mwg_sources(photo_cur)
        options: list[str] = []
        if any(src.startswith("IPTC:") for _, src in pairs) and iim.may_be_misread(photo_cur):
            charset = iim.iptc_charset(self.exiftool, photo)
            if charset is not None:
                options = ["-charset", f"iptc={charset}"]
        if pairs:
            log.debug("%s: its new sidecar gets %s", photo, ", ".join(f"{d} from {s}" for d, s in pairs))
        return options, [f"-{dest}<{src}" for dest, src in pairs]

    def _publish(self, seed: Path, side: Path, photo: Path) -> None:
        """Make the finished ``seed`` appear as ``side`` complete or not at all, never over an existing
        sidecar: written under phototag's own temp name in the folder, then hard-linked to its name."""
        tmp = side.parent / own_temp_name(".xmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), new_file_mode())
                f.write(seed.read_bytes())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, side)
            except FileExistsError:
                raise MetadataError(
                    photo,
                    f"its sidecar {display(side.name)} appeared while phototag was creating it (another "
                    "program wrote it); run phototag again to merge into it",
                ) from None
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                    raise
                if side.exists():
                    raise MetadataError(photo, f"its sidecar {display(side.name)} appeared meanwhile; run "
                                        "again") from e  # fmt: skip
                os.replace(tmp, side)  # file systems without hard links
        except OSError as e:
            raise _about_photo(
                MetadataError(side, e.strerror or str(e), e.errno), Target(side, photo, sidecar=True),
                "its XMP sidecar"
            ) from e  # fmt: skip
        finally:
            tmp.unlink(missing_ok=True)

    def _tidy_embedded(self, path: Path) -> None:
        """After untag: drop an XMP packet / IPTC record that phototag's writes left empty."""
        left = self.exiftool.read_tags(path, "XMP:all", "IPTC:all")
        xmp = [k for k in left if k.startswith("XMP")]
        iptc = [k for k in left if k.startswith("IPTC:")]
        args = []
        if xmp and set(xmp) <= {"XMP-x:XMPToolkit"}:
            args.append("-XMP:all=")
        if iptc and set(iptc) <= IPTC_EMPTY:
            args.append("-IPTC:all=")
        if args:
            self.exiftool.write(path, *args)

    def _drop_if_empty(self, side: Path) -> None:
        left = self.exiftool.read_tags(side, "XMP:all")
        if not [k for k in left if k != "XMP-x:XMPToolkit"]:
            side.unlink(missing_ok=True)
            log.info("removed %s: nothing but phototag's metadata was in it", side)


def _about_photo(e: MetadataError, target: Target, what: str) -> MetadataError:
    """``e`` (about the file exiftool wrote) as an error about the photo: what was being written and why it
    failed, with a disk-full or busy condition said plainly and kept transient."""
    if e.path == target.photo and what in str(e):
        return e
    reason = str(e).removeprefix(f"{display(e.path)}: ")
    code = e.errno
    if code is None and not e.transient and not target.scratch and disk_full(target.path):
        code = errno.ENOSPC
    if code == errno.ENOSPC:
        reason = "the disk is full. Free some space; phototag tries again"
    elif code in (errno.EACCES, errno.EPERM):
        reason += (
            ". Make the folder and file writable by the user phototag runs as (chmod, or ReadWritePaths= "
        )
        reason += "in the systemd unit)"
    elif code == errno.ENAMETOOLONG:
        reason += ". The photo's name is too long to add a sidecar suffix: rename it, or use "
        reason += "metadata.sidecar_name: replace"
    elif code == errno.EROFS:
        reason += ". The file system is mounted read-only; phototag tries again"
    err = type(e)(target.photo, f"cannot write {what} ({display(target.path.name)}): {reason}", code)
    return err


# What a new sidecar takes from the photo's IPTC-IIM / EXIF where the photo's XMP lacks it: XMP tag <- sources in
# MWG order, each as (tag to copy, key exiftool -G1 reads it back as). MWG's Keywords, Description, Creator and
# Rating, plus dc:title <- IPTC ObjectName (IPTC Core's mapping; MWG leaves it out). A single EXIF Artist string
# becomes one dc:creator entry (MWG would split it at "; "; exiftool's -sep would split the keywords as well).
_SEED_FROM: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("XMP-dc:Subject", (("IPTC:Keywords", "IPTC:Keywords"),)),
    (
        "XMP-dc:Description",
        (
            ("EXIF:ImageDescription", "IFD0:ImageDescription"),
            ("IPTC:Caption-Abstract", "IPTC:Caption-Abstract"),
        ),
    ),
    ("XMP-dc:Title", (("IPTC:ObjectName", "IPTC:ObjectName"),)),
    ("XMP-dc:Creator", (("EXIF:Artist", "IFD0:Artist"), ("IPTC:By-line", "IPTC:By-line"))),
    ("XMP-xmp:Rating", (("EXIF:Rating", "IFD0:Rating"),)),
)
_SEED_READ = tuple(unique(t for dest, sources in _SEED_FROM for t in (dest, *(src for src, _ in sources))))
"""The tags :func:`_mwg_sources` looks at."""


def _mwg_sources(photo_cur: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(XMP tag, tag to copy it from) for each :data:`_SEED_FROM` field that the photo's XMP lacks and its
    IPTC-IIM or EXIF has (see :meth:`XmpWriter._mwg_copies`). Pure."""
    out = []
    for dest, sources in _SEED_FROM:
        if _texts(photo_cur.get(dest)):
            continue  # the photo's XMP has it: XMP wins
        for src, key in sources:
            texts = _texts(photo_cur.get(key))
            if dest == "XMP-dc:Description":
                texts = [t for t in texts if is_user_caption(t)]
            elif dest == "XMP-xmp:Rating":
                texts = [t for t in texts if t != "0"]
            if texts:
                out.append((dest, src))
                break
    return out


def _texts(value: Any) -> list[str]:
    """The non-blank texts of a value as read (None, a text or a list), stripped."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    return [t for t in (str(v).strip() for v in items if not isinstance(v, (list, Mapping))) if t]


def _no_room_for_temp(path: Path) -> bool:
    """True when ``path``'s name plus exiftool's ``_exiftool_tmp`` is longer than the file system allows."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    return len(os.fsencode(path.name + EXIFTOOL_SUFFIX)) > limit


def replace_atomically(path: Path, data: bytes, before: Any, photo: Path, what: str) -> None:
    """Replace ``path`` by ``data`` (:func:`phototag.fileattrs.replace_file`), errors naming the photo."""
    try:
        replace_file(path, data, before, ".xmp")
    except OSError as e:
        raise _about_photo(
            MetadataError(path, e.strerror or str(e), e.errno), Target(path, photo, sidecar=True), what
        ) from e


def _captions(photo_cur: Mapping[str, Any]) -> list[str]:
    keys = [*CAPTION_XMP.values(), *CAPTION_IPTC.values(), *CAPTION_EXIF.values()]
    return [str(photo_cur[k]) for k in keys if photo_cur.get(k) is not None]


def _xmp_of(photo_cur: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in photo_cur.items() if k.startswith("XMP-")}


def _abspath(path: Path) -> str:
    return str(Path(path).absolute())


@hookimpl
def register_writers(register: Callable[[Writer], None], config: Config) -> None:
    """Register the XMP writer when ``metadata.xmp`` is on."""
    if config.metadata.xmp:
        register(XmpWriter(config))
