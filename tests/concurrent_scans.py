"""Helpers for tests/test_concurrency.py and tests/test_soak.py: photos that carry their user's own metadata,
real `phototag scan` processes run side by side, and a survey of the folder afterwards with real exiftool.

The analyzer is ``tests/daemon_plugin.py`` (fast, real pixel statistics), installed as a third-party plugin
the way ``tests/test_daemon.py`` installs it; the writers are the real ``xmp`` (exiftool) and ``sidecar``
(JSON) plugins. The analyzer appends ``analyzed <content hash> <path> <pid>`` to its log for every photo it
looks at, which tells which process analysed what.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from phototag.files import hash_file
from phototag.images import pixel_hash
from phototag.samples import write_samples

TESTS = Path(__file__).parent
SCAN_PLUGINS = "sidecar,xmp,counting"
# what a scan that lost a race may say (the photo is retried by the next run)
TRANSIENT = ("will retry", "another phototag process")
KEYWORD_LISTS = (
    "XMP-dc:Subject",
    "IPTC:Keywords",
    "XMP-lr:HierarchicalSubject",
    "XMP-digiKam:TagsList",
    "XMP-phototag:AddedSubject",
    "XMP-phototag:AddedKeywords",
    "XMP-phototag:AddedHierarchy",
    "XMP-phototag:AddedTagsList",
)
LOCK_FILE = ".phototag.lock"


# -- the counting plugin --------------------------------------------------------------------------------------


def install_counting_plugin(dist: Path) -> str:
    """PYTHONPATH that installs tests/daemon_plugin.py as the entry-point plugin ``counting``."""
    info = dist / "phototag_daemon_test-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: phototag-daemon-test\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[phototag]\ncounting = daemon_plugin\n")
    return os.pathsep.join([str(TESTS), str(dist)])


def scan_env(plugin_path: str, plugins: str = SCAN_PLUGINS) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOTAG_", "NOTIFY_", "WATCHDOG_"))}
    env.update({"PYTHONPATH": plugin_path, "PHOTOTAG_PLUGINS": plugins})
    return env


# -- photos with the user's own metadata ---------------------------------------------------------------------


@dataclass(frozen=True)
class UserMeta:
    """What the user put into one photo (and into its own XMP sidecar, when ``side_keywords``)."""

    name: str
    keywords: tuple[str, ...]
    caption: str
    side_keywords: tuple[str, ...] = ()
    side_caption: str | None = None

    @property
    def has_sidecar(self) -> bool:
        return bool(self.side_keywords)


@dataclass(frozen=True)
class Pristine:
    """A folder of photos as the user left it, and what must survive of it."""

    folder: Path
    users: dict[str, UserMeta]
    pixels: dict[str, str]  # name -> decoded-pixel hash
    sha256: dict[str, str]  # name -> bytes of the photo
    sidecars: dict[str, bytes]  # name -> bytes of the user's own photo.jpg.xmp

    @property
    def names(self) -> list[str]:
        return sorted(self.users)

    def copy_to(self, folder: Path) -> Path:
        """A fresh copy of the photos (and user sidecars); ``folder`` is replaced."""
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(self.folder, folder)
        return folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_user_photos(
    folder: Path, n: int, *, sidecar_every: int = 2, size: int = 64, subfolders: int = 0
) -> Pristine:
    """``n`` small distinct JPEGs cut from the sample photos, each with embedded user keywords (XMP-dc:Subject
    and IPTC:Keywords, non-ASCII included) and a user caption (XMP-dc:Description); every ``sidecar_every``-th
    photo also gets a user-written ``photo.jpg.xmp`` with a different keyword and caption. One exiftool run.
    ``subfolders``: spread the photos over that many folders ``dNN/`` (names are then relative paths)."""
    folder.mkdir(parents=True)
    samples_dir = folder.parent / f"{folder.name}-samples"
    sources = write_samples(samples_dir)
    images = []
    for src in sources:
        with Image.open(src) as im:
            images.append(np.asarray(im.convert("RGB")))
    shutil.rmtree(samples_dir)
    args: list[str] = []
    users: dict[str, UserMeta] = {}
    for i in range(n):
        pixels = images[i % len(images)]
        h, w = pixels.shape[:2]
        rng = np.random.default_rng(i)
        side = min(h, w) // 2
        y, x = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        crop = Image.fromarray(pixels[y : y + side, x : x + side]).resize((size, size))
        name = f"d{i % subfolders:02d}/img{i:04d}.jpg" if subfolders else f"img{i:04d}.jpg"
        photo = folder / name
        photo.parent.mkdir(exist_ok=True)
        crop.save(photo, quality=85)
        meta = UserMeta(
            name,
            keywords=("Zürich", f"user-kw-{i}", "Ærøskøbing café"),
            caption=f"Ferien in Zürich, Bild {i} – «am See»",
        )
        if sidecar_every and i % sidecar_every == 0:
            meta = UserMeta(
                name, meta.keywords, meta.caption, (f"side-kw-{i}", "São Paulo"), f"Légende de l'été {i}"
            )
        users[name] = meta
        args += ["-overwrite_original", "-IPTC:CodedCharacterSet=UTF8"]
        args += [f"-XMP-dc:Subject={k}" for k in meta.keywords]
        args += [f"-IPTC:Keywords={k}" for k in meta.keywords]
        args += [f"-XMP-dc:Description={meta.caption}", str(photo), "-execute"]
        if meta.has_sidecar:
            args += [f"-XMP-dc:Subject={k}" for k in meta.side_keywords]
            args += [f"-XMP-dc:Description={meta.side_caption}", str(photo) + ".xmp", "-execute"]
    argfile = folder.parent / f"{folder.name}-args.txt"
    argfile.write_text("\n".join(args) + "\n", encoding="utf-8")
    done = subprocess.run(["exiftool", "-q", "-@", str(argfile)], capture_output=True, text=True, timeout=300)
    argfile.unlink()
    assert done.returncode == 0, done.stderr
    pristine = Pristine(
        folder,
        users,
        pixels={name: pixel_hash(folder / name) for name in users},
        sha256={name: _sha256(folder / name) for name in users},
        sidecars={name: (folder / f"{name}.xmp").read_bytes() for name, m in users.items() if m.has_sidecar},
    )
    # the user's metadata is really there before any test starts
    survey = survey_folder(folder, pristine, "embed", expect_tagged=False)
    assert survey.user_intact == n and survey.problems == [], survey.problems[:10]
    return pristine


# -- reading metadata back --------------------------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def exiftool_read(paths: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """exiftool -j -G1 -struct of every path, by path (a file exiftool cannot read maps to its Error)."""
    if not paths:
        return {}
    done = subprocess.run(
        ["exiftool", "-j", "-G1", "-struct", "-charset", "filename=utf8", *map(str, paths)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    items = json.loads(done.stdout) if done.stdout.strip() else []
    out = {item["SourceFile"]: item for item in items}
    for p in paths:
        out.setdefault(str(p), {"ExifTool:Error": f"not read: {done.stderr.strip()}"})
    return out


def duplicated(meta: dict[str, Any]) -> list[str]:
    """Keyword lists in ``meta`` that hold an entry twice (and phototag's Tags by name)."""
    found = []
    for key in KEYWORD_LISTS:
        values = as_list(meta.get(key))
        if len(values) != len(set(map(str, values))):
            found.append(f"{key}={values}")
    tags = [t.get("Name") for t in as_list(meta.get("XMP-phototag:Tags")) if isinstance(t, dict)]
    if len(tags) != len(set(tags)):
        found.append(f"XMP-phototag:Tags names={tags}")
    return found


def _unreadable(meta: dict[str, Any], kind: str) -> str | None:
    errors = [f"{k}: {v}" for k, v in meta.items() if k.endswith(":Error")]
    if errors:
        return "; ".join(map(str, errors))
    if meta.get("File:FileType") != kind:
        return f"exiftool reads it as {meta.get('File:FileType')!r}, not {kind}"
    return None


@dataclass
class Survey:
    """What a folder holds after phototag ran on it, counted per photo; ``problems`` says why for each miss."""

    total: int = 0
    intact: int = 0  # exists, pixels identical (sidecar mode: bytes identical)
    user_intact: int = 0  # every user keyword and caption where the user put it (and in a new sidecar)
    duplicated: int = 0  # photos with a keyword list holding an entry twice (photo or sidecar)
    invalid_sidecars: int = 0  # XMP or JSON sidecars that do not parse
    leftovers: int = 0  # files that are neither photos nor their sidecars (temp files)
    tagged: int = 0  # phototag's keywords in the XMP target, matching a valid JSON sidecar
    untagged: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "photos": self.total,
            "photos intact": self.intact,
            "user keywords intact": self.user_intact,
            "duplicated keywords": self.duplicated,
            "invalid sidecars": self.invalid_sidecars,
            "leftover temp files": self.leftovers,
            "photos tagged": self.tagged,
        }

    def line(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.counts().items())

    def assert_safe(self, *, allow_leftovers: bool = False) -> None:
        """Nothing of the user's was lost or damaged (tagging may still be incomplete); ``allow_leftovers``:
        right after a kill -9, temp files of the killed writer may still be there."""
        leftovers = 0 if allow_leftovers else self.leftovers
        bad = (self.intact, self.user_intact, self.duplicated, self.invalid_sidecars, leftovers)
        assert bad == (self.total, self.total, 0, 0, 0), f"{self.line()}\n" + "\n".join(self.problems[:40])

    def assert_all_good(self) -> None:
        self.assert_safe()
        assert self.tagged == self.total, f"{self.line()}\n" + "\n".join(self.problems[:40])


def survey_folder(folder: Path, pristine: Pristine, mode: str, *, expect_tagged: bool = True) -> Survey:
    """Check every photo of ``pristine`` in ``folder`` with real exiftool (one run for all files)."""
    s = Survey(total=len(pristine.users))
    names = pristine.names
    present = [n for n in names if (folder / n).is_file()]
    xmps = [folder / f"{n}.xmp" for n in names if (folder / f"{n}.xmp").exists()]
    meta = exiftool_read([*(folder / n for n in present), *xmps])
    expected = {*names, *(f"{n}.xmp" for n in names), *(f"{n}.phototag.json" for n in names)}
    for dirpath, _, filenames in os.walk(folder):
        for entry in sorted(filenames):
            rel = (Path(dirpath).relative_to(folder) / entry).as_posix()
            if entry != LOCK_FILE and rel not in expected:
                s.leftovers += 1
                s.problems.append(f"leftover file {rel}")
    for name in names:
        user = pristine.users[name]
        photo, side, js = folder / name, folder / f"{name}.xmp", folder / f"{name}.phototag.json"
        problems: list[str] = []
        if not photo.is_file():
            s.problems.append(f"{name}: the photo is GONE")
            s.untagged.append(name)
            continue
        pm = meta[str(photo)]
        side_meta = meta.get(str(side)) if side.exists() else None
        # the photo itself
        if pixel_hash(photo) != pristine.pixels[name]:
            problems.append("pixels changed")
        elif mode == "sidecar" and _sha256(photo) != pristine.sha256[name]:
            problems.append("the photo's bytes changed in sidecar mode")
        else:
            s.intact += 1
        # the user's metadata
        lost = []
        err = _unreadable(pm, "JPEG")
        if err:
            lost.append(f"photo unreadable: {err}")
        for key in ("XMP-dc:Subject", "IPTC:Keywords"):
            missing = set(user.keywords) - set(map(str, as_list(pm.get(key))))
            if missing:
                lost.append(f"photo {key} lost {sorted(missing)}: {pm.get(key)}")
        if pm.get("XMP-dc:Description") != user.caption:
            lost.append(f"photo caption is {pm.get('XMP-dc:Description')!r}")
        if user.has_sidecar:
            if side_meta is None:
                lost.append("the user's own sidecar is GONE")
            elif mode == "embed" and side.read_bytes() != pristine.sidecars[name]:
                lost.append("the user's own sidecar changed in embed mode")
            else:
                missing = set(user.side_keywords) - set(map(str, as_list(side_meta.get("XMP-dc:Subject"))))
                if missing:
                    lost.append(f"user sidecar lost {sorted(missing)}: {side_meta.get('XMP-dc:Subject')}")
                if side_meta.get("XMP-dc:Description") != user.side_caption:
                    lost.append(f"user sidecar caption is {side_meta.get('XMP-dc:Description')!r}")
        elif side_meta is not None:
            if mode == "embed":
                lost.append("a sidecar appeared in embed mode")
            else:  # phototag made it: it starts as a copy of the photo's own XMP
                missing = set(user.keywords) - set(map(str, as_list(side_meta.get("XMP-dc:Subject"))))
                if missing:
                    lost.append(f"new sidecar lacks the photo's keywords {sorted(missing)}")
                if side_meta.get("XMP-dc:Description") != user.caption:
                    lost.append(f"new sidecar caption is {side_meta.get('XMP-dc:Description')!r}")
        if lost:
            problems += lost
        else:
            s.user_intact += 1
        # duplicates, validity
        dups = duplicated(pm) + (duplicated(side_meta) if side_meta is not None else [])
        if dups:
            s.duplicated += 1
            problems += [f"duplicated: {d}" for d in dups]
        doc = None
        if side_meta is not None:
            err = _unreadable(side_meta, "XMP")
            if err:
                s.invalid_sidecars += 1
                problems.append(f"invalid XMP sidecar: {err}")
        if js.exists():
            try:
                doc = json.loads(js.read_text(encoding="utf-8"))
                assert doc["schema_version"] == 1 and isinstance(doc["keywords"], list)
            except (ValueError, KeyError, AssertionError, TypeError) as e:
                s.invalid_sidecars += 1
                problems.append(f"invalid JSON sidecar: {e!r}")
                doc = None
        # phototag's own work
        target = side_meta if mode == "sidecar" else pm
        added = set(map(str, as_list((target or {}).get("XMP-phototag:AddedSubject"))))
        why_not = None
        if target is None:
            why_not = "no XMP sidecar"
        elif not added:
            why_not = "no XMP-phototag:AddedSubject"
        elif doc is None:
            why_not = "no valid JSON sidecar"
        elif set(doc["keywords"]) != added:
            why_not = f"JSON keywords {doc['keywords']} != AddedSubject {sorted(added)}"
        elif not added <= set(map(str, as_list(target.get("XMP-dc:Subject")))):
            why_not = f"AddedSubject {sorted(added)} not in Subject {target.get('XMP-dc:Subject')}"
        elif mode == "embed" and not added <= set(map(str, as_list(pm.get("IPTC:Keywords")))):
            why_not = f"AddedSubject {sorted(added)} not in IPTC:Keywords {pm.get('IPTC:Keywords')}"
        elif mode == "sidecar" and doc["content_hash"] != hash_file(photo):
            why_not = "the JSON sidecar's content hash is not the photo's"
        if why_not is None:
            s.tagged += 1
        else:
            s.untagged.append(name)
            if expect_tagged:
                problems.append(f"not tagged: {why_not}")
        s.problems += [f"{name}: {p}" for p in problems]
    return s


# -- scan processes ---------------------------------------------------------------------------------------------


def scan_command(
    folder: Path, state_db: Path, mode: str, log: Path, *, batch_size: int = 4, delay: float = 0.0
) -> list[str]:
    """``delay``: seconds the counting analyzer spends on each photo (keeps a scan at work long enough for a
    kill to land while it writes)."""
    return [
        sys.executable, "-m", "phototag",
        "--set", f"state_db={state_db}", "--set", f"metadata.mode={mode}", "--set", f"batch_size={batch_size}",
        "--set", f"plugins.counting.log={log}", "--set", f"plugins.counting.delay={delay}",
        "scan", "--json", str(folder),
    ]  # fmt: skip


@dataclass
class Scan:
    """One `phototag scan --json` process; stdout and stderr go to files (no pipe to fill up)."""

    cmd: list[str]
    env: dict[str, str]
    out: Path
    state_db: Path
    proc: subprocess.Popen[bytes] | None = None
    returncode: int | None = None

    def start(self) -> Scan:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with (
            self.out.with_suffix(".stdout").open("ab") as out,
            self.out.with_suffix(".stderr").open("ab") as err,
        ):
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait(self, timeout: float = 180) -> int:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"scan {self.pid} still running after {timeout} s:\n{self.stderr()[-3000:]}"
            ) from None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL to the whole process group: the scan and its exiftool child."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.returncode = self.proc.wait(30)

    def stdout(self) -> str:
        path = self.out.with_suffix(".stdout")
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr(self) -> str:
        path = self.out.with_suffix(".stderr")
        return path.read_text(errors="replace") if path.exists() else ""

    def outcomes(self) -> dict[str, tuple[str, str]]:
        """photo name -> (status, message) from ``--json`` (a killed scan's last line may be cut: skipped)."""
        out = {}
        for line in self.stdout().splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            out[Path(doc["path"]).name] = (doc["status"], doc.get("message", ""))
        return out

    def failures(self) -> dict[str, str]:
        return {name: msg for name, (status, msg) in self.outcomes().items() if status == "failed"}


def run_scans(scans: Iterable[Scan], timeout: float = 180) -> list[Scan]:
    """Start every scan at once, then wait for all of them."""
    started = [s.start() for s in scans]
    for s in started:
        s.wait(timeout)
    return started


def check_exit(scan: Scan, allowed: Sequence[str] = TRANSIENT) -> list[str]:
    """A concurrent scan exits 0, or 1 with only transient failures (each message says so); returns those."""
    messages = [f"{name}: {msg}" for name, msg in sorted(scan.failures().items())]
    assert scan.returncode in (0, 1), f"scan exited {scan.returncode}:\n{scan.stderr()[-3000:]}"
    if scan.returncode == 1:
        assert messages, f"exit 1 without a failed photo:\n{scan.stderr()[-3000:]}"
    wrong = [m for m in messages if not any(a in m for a in allowed)]
    assert wrong == [], f"non-transient failures: {wrong}\n{scan.stderr()[-3000:]}"
    return messages


def analyzed(log: Path) -> list[tuple[str, int]]:
    """(photo name, pid) for every ``analyzed`` line of the counting plugin's log."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "analyzed":
            out.append((Path(parts[2]).name, int(parts[3])))
    return out


def analysed_by(log: Path, pid: int) -> Counter[str]:
    return Counter(name for name, p in analyzed(log) if p == pid)
