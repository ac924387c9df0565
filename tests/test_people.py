"""People recognition on real faces: scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper,
each also mirrored, cropped, rescaled and recompressed (JPEG quality 25), plus photos without faces (a cat,
coffee). Descriptors are dlib's real 128-d ResNet ones, computed here by a small face-identity analyzer that
emits the ``faces`` plugin's interface (``extra["faces"]``), registered as a test plugin; the pipeline, the
state DB, exiftool and the commands are the real ones.
"""

from __future__ import annotations

import io
import json
import shutil
import sysconfig
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from phototag import hookimpl
from phototag.cli import CliState, cli
from phototag.exiftool import Exiftool
from phototag.manager import get_plugin_manager
from phototag.people.cluster import Clustering, decide
from phototag.samples import _matplotlib_sample, _skimage_dir
from phototag.testing import decoded
from phototag.types import Analysis, DecodedImage, Device, ModelInfo, Needs, Region, fingerprint_of

dlib = pytest.importorskip("dlib")
MODELS = Path(sysconfig.get_paths()["purelib"]) / "face_recognition_models" / "models"
PEOPLE = ("astronaut", "hopper")


# -- a face-identity analyzer with dlib (the interface of the ``faces`` plugin) -------------------------------


class _Dlib:
    """dlib's HOG detector, 5-point landmarks and ResNet descriptor, loaded once per session."""

    _models: tuple[Any, Any, Any] | None = None

    @classmethod
    def models(cls) -> tuple[Any, Any, Any]:
        if cls._models is None:
            cls._models = (
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(MODELS / "shape_predictor_5_face_landmarks.dat")),
                dlib.face_recognition_model_v1(str(MODELS / "dlib_face_recognition_resnet_model_v1.dat")),
            )
        return cls._models


def dlib_faces(image: Image.Image) -> Analysis:
    """Faces as the face-identity analyzer reports them: regions + ``extra["faces"]`` in the same order."""
    detector, shapes, resnet = _Dlib.models()
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    rects, margins, _ = detector.run(pixels, 1, 0.0)
    regions, faces = [], []
    for rect, margin in sorted(zip(rects, margins, strict=True), key=lambda rm: -rm[1]):
        if margin < 0.3:  # weak HOG hits (the astronaut's badge); the real faces score above 1
            continue
        x0, y0 = max(rect.left(), 0), max(rect.top(), 0)
        x1, y1 = min(rect.right(), width), min(rect.bottom(), height)
        box = [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]
        shape = shapes(pixels, rect)
        chip = dlib.get_face_chip(pixels, shape, 150, 0.25)
        score = float(1 / (1 + np.exp(-margin)))
        regions.append(Region("Face", score, *box, kind="face"))
        faces.append(
            {
                "box": box,
                "score": score,
                "landmarks": [[p.x / width, p.y / height] for p in shape.parts()],
                "quality": 1.0,
                "descriptor": list(resnet.compute_face_descriptor(chip)),
                "model": "dlib-resnet-v1",
            }
        )
    return Analysis(regions=tuple(regions), extra={"faces": faces})


_SEEN: dict[tuple[str, int, int], Analysis] = {}


def faces_of(image: DecodedImage) -> Analysis:
    """:func:`dlib_faces`, once per photo content and decoded size in this session (the tests scan copies of
    the same photos again and again; the result depends on the pixels only)."""
    key = (image.photo.content_hash, *image.image.size)
    if key not in _SEEN:
        _SEEN[key] = dlib_faces(image.image)
    return _SEEN[key]


class FaceIdentity:
    name = "testfaces"
    task = "face-identity"
    needs = Needs(devices=("cpu",))
    input_size = 512

    def model_info(self) -> ModelInfo:
        return ModelInfo("dlib-resnet-v1", dlib.__version__)

    def fingerprint(self) -> str:
        return fingerprint_of("testfaces", 1)

    def load(self, device: Device) -> None:
        _Dlib.models()

    def analyze(self, images: Sequence[DecodedImage]) -> list[Analysis]:
        return [faces_of(d) for d in images]

    def unload(self) -> None:
        pass


class FacePlugin:
    @hookimpl
    def register_analyzers(self, register, config):  # type: ignore[no-untyped-def]
        register(FaceIdentity())


# -- photos -----------------------------------------------------------------------------------------------------


def _jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    data = io.BytesIO()
    image.save(data, "JPEG", quality=quality)
    return Image.open(io.BytesIO(data.getvalue())).convert("RGB")


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "": lambda im: im,
    "_mirror": ImageOps.mirror,
    "_crop": lambda im: im.crop((im.width // 6, 0, im.width * 5 // 6, im.height * 3 // 4)),
    "_small": lambda im: im.resize((im.width * 6 // 10, im.height * 6 // 10), Image.Resampling.LANCZOS),
    "_q25": lambda im: _jpeg(im, 25),
}


def _source(person: str) -> Image.Image:
    path = (
        _skimage_dir() / "astronaut.png" if person == "astronaut" else _matplotlib_sample("grace_hopper.jpg")
    )
    with Image.open(path) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def face_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """astronaut*.jpg and hopper*.jpg (5 each: original, mirrored, cropped, rescaled, quality 25), cat.jpg and
    coffee.jpg (no face)."""
    folder = tmp_path_factory.mktemp("faces")
    for person in PEOPLE:
        source = _source(person)
        for suffix, make in VARIANTS.items():
            make(source).save(folder / f"{person}{suffix}.jpg", quality=92)
    for name, target in (("chelsea.png", "cat.jpg"), ("coffee.png", "coffee.jpg")):
        with Image.open(_skimage_dir() / name) as im:
            im.convert("RGB").save(folder / target, quality=92)
    return folder


@pytest.fixture
def library(face_set: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    shutil.copytree(face_set, folder)
    return folder


def person_of(path: Path | str) -> str | None:
    name = Path(path).name
    return next((p for p in PEOPLE if name.startswith(p)), None)


# -- running phototag -------------------------------------------------------------------------------------------


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"state_db: {tmp_path / 'state.db'}\n")
    return path


@pytest.fixture
def phototag(config_file: Path) -> Callable[..., Any]:
    """``phototag(*args)`` runs the CLI with the builtin xmp, sidecar and people plugins and the dlib faces."""
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "xmp,sidecar,people"})
    pm.register(FacePlugin(), name="testfaces")
    pm.hook.register_commands(cli=cli)

    def run(*args: str, ok: bool = True) -> Any:
        result = CliRunner().invoke(cli, ["-c", str(config_file), *args], obj=CliState(None, (), pm, []))
        if ok:
            assert result.exit_code == 0, (args, result.output[:3000], result.exception)
        return result

    return run


def listed(phototag: Callable[..., Any]) -> list[dict[str, Any]]:
    out = phototag("people", "list", "--json").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def cluster_of(people: list[dict[str, Any]], who: str) -> dict[str, Any]:
    [found] = [p for p in people if all(person_of(ph) == who for ph in p["photos"])]
    return found


@pytest.fixture
def read(exiftool_path: str) -> Iterator[Callable[[Path], dict[str, Any]]]:
    with Exiftool(exiftool_path) as et:

        def read_xmp(photo: Path) -> dict[str, Any]:
            side = photo.with_name(photo.name + ".xmp")
            tags = ("-XMP-mwg-rs:RegionInfo", "-XMP-iptcExt:PersonInImage", "-XMP-digiKam:TagsList",
                    "-XMP-lr:HierarchicalSubject", "-XMP-dc:Subject")  # fmt: skip
            [item] = et.execute_json(*tags, str(side))
            return item

        yield read_xmp


def regions(xmp: dict[str, Any]) -> list[dict[str, Any]]:
    return list((xmp.get("XMP-mwg-rs:RegionInfo") or {}).get("RegionList") or [])


def as_list(value: Any) -> list[str]:
    return [] if value is None else [str(v) for v in (value if isinstance(value, list) else [value])]


# -- the rule, on real descriptors ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def descriptors(face_set: Path) -> dict[str, np.ndarray]:
    """Each face photo's one face descriptor, decoded the way the pipeline decodes."""
    out = {}
    for path in sorted(face_set.glob("*.jpg")):
        analysis = faces_of(decoded(path, 512))
        faces = analysis.extra["faces"]
        if person_of(path):
            assert len(faces) == 1, (path.name, len(faces))
            out[path.stem] = np.asarray(faces[0]["descriptor"], np.float32)
        else:
            assert faces == [], path.name
    return out


def test_same_person_is_near_and_two_people_beyond_the_confident_bound(
    descriptors: dict[str, np.ndarray],
) -> None:
    """Measured here: the same person (mirrored, cropped, rescaled, quality 25) 0.04-0.24 apart; the two
    people 0.60-0.71, the closest pair right at dlib's 0.6: why a face joins a person only below
    ``threshold - margin`` (0.55)."""
    names = sorted(descriptors)
    same, other = [], []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            d = float(np.linalg.norm(descriptors[a] - descriptors[b]))
            (same if person_of(a) == person_of(b) else other).append(d)
    assert max(same) < 0.3 and min(other) > 0.55, (max(same), min(other))


def test_incremental_clustering_groups_each_person_and_leaves_an_in_between_face_alone(
    descriptors: dict[str, np.ndarray],
) -> None:
    ids = iter(range(1, 100))
    clustering = Clustering.of([], [], [], 0.6, 0.05, lambda: next(ids))
    for name in sorted(descriptors, key=lambda n: (n.endswith("_q25"), n)):  # interleave arrivals
        clustering.add(name, descriptors[name])
    groups: dict[int, set[str | None]] = {}
    for key, owner in zip(clustering.keys, clustering.owners.tolist(), strict=True):
        groups.setdefault(owner, set()).add(person_of(str(key)))
    assert sorted(map(sorted, groups.values())) == [["astronaut"], ["hopper"]]  # type: ignore[type-var]
    # a descriptor half-way between the two people is near both: ambiguous, nobody's
    middle = (descriptors["astronaut"] + descriptors["hopper"]) / 2
    decision = decide(middle, clustering.vectors, clustering.owners, 0.6, 0.05)
    assert decision.person is None and decision.ambiguous


def test_a_named_face_stands_for_the_detected_one_and_adds_the_people_keyword() -> None:
    from phototag.types import AnalyzerRun, Photo, PhotoResult
    from phototag.xmpdesired import desired_from

    detected = Region("Face", 0.9, 0.2, 0.1, 0.2, 0.25, kind="face")
    other = Region("Face", 0.8, 0.6, 0.1, 0.2, 0.25, kind="face")
    named = Region("Face", 0.9, 0.2, 0.1, 0.2, 0.25, kind="face", name="Grace Hopper")
    runs = (
        AnalyzerRun("faces", "face-identity", ModelInfo("dlib"), "fp", Analysis(regions=(detected, other))),
        AnalyzerRun("people", "library", ModelInfo("people"), "fp2", Analysis(regions=(named,))),
    )
    want = desired_from(PhotoResult(Photo(Path("/p.jpg"), 1, 1, "h"), 600, 400, runs), "AI", 0.5)
    assert [f.get("Name") for f in want.faces] == [None, "Grace Hopper"]  # no second box for her face
    assert want.people == ["Grace Hopper"]
    assert (want.subject, want.hierarchy, want.tagslist) == (
        ["Grace Hopper"], ["People|Grace Hopper"], ["People/Grace Hopper"],
    )  # fmt: skip
    assert [t["Path"] for t in want.tags_provenance] == ["People|Grace Hopper"]


# -- end to end -------------------------------------------------------------------------------------------------


def test_scan_clusters_faces_and_naming_names_every_photo_of_the_person(
    library: Path, phototag: Callable[..., Any], read: Callable[[Path], dict[str, Any]], face_set: Path
) -> None:
    phototag("scan", str(library))
    people = listed(phototag)
    assert len(people) == 2, people
    for who in PEOPLE:
        cluster = cluster_of(people, who)
        assert cluster["name"] is None
        assert sorted(cluster["photos"]) == sorted(str(p) for p in library.glob(f"{who}*.jpg"))
        assert cluster["faces"] == 5
    before = read(library / "hopper.jpg")
    assert [r.get("Name") for r in regions(before)] == [None]  # unknown face: a region without a Name

    hopper = cluster_of(people, "hopper")["id"]
    out = phototag("people", "name", str(hopper), "Grace Hopper").stdout
    assert "metadata written again for 5 photo(s)" in out
    for photo in sorted(library.glob("*.jpg")):
        if person_of(photo) is None:
            continue
        xmp = read(photo)
        named = person_of(photo) == "hopper"
        assert [r.get("Name") for r in regions(xmp)] == (["Grace Hopper"] if named else [None]), photo.name
        assert as_list(xmp.get("XMP-iptcExt:PersonInImage")) == (["Grace Hopper"] if named else [])
        assert ("People/Grace Hopper" in as_list(xmp.get("XMP-digiKam:TagsList"))) is named
        assert ("People|Grace Hopper" in as_list(xmp.get("XMP-lr:HierarchicalSubject"))) is named
    sidecar = json.loads((library / "hopper_crop.jpg.phototag.json").read_text())
    [entry] = sidecar["analyzers"]["people"]["extra"]["people"]
    assert entry["name"] == "Grace Hopper" and entry["cluster"] == hopper and entry["distance"] < 0.3
    assert len(entry["landmarks"]) == 5 and len(entry["box"]) == 4

    # a new photo of her is named on arrival (no second pass)
    arrived = library / "new" / "hopper_again.jpg"
    arrived.parent.mkdir()
    ImageOps.mirror(_source("hopper").crop((60, 40, 500, 560))).save(arrived, quality=80)
    result = phototag("scan", str(arrived))
    assert "1 tagged" in result.output and "faces: 1 (Grace Hopper)" in result.output
    assert [r.get("Name") for r in regions(read(arrived))] == ["Grace Hopper"]
    assert cluster_of(listed(phototag), "hopper")["faces"] == 6

    phototag("people", "unname", str(hopper))
    xmp = read(library / "hopper.jpg")
    assert [r.get("Name") for r in regions(xmp)] == [None]
    assert as_list(xmp.get("XMP-iptcExt:PersonInImage")) == []
    assert not [t for t in as_list(xmp.get("XMP-digiKam:TagsList")) if t.startswith("People/")]


DIGIKAM_REGION = (
    "{AppliedToDimensions={W=512,H=512,Unit=pixel},RegionList=[{Area={X=0.42,Y=0.24,W=0.18,H=0.19,"
    "Unit=normalized},Name=Eileen Collins,Type=Face}]}"
)


def test_a_users_named_region_teaches_the_name_and_untag_removes_only_phototags_people(
    library: Path, phototag: Callable[..., Any], read: Callable[[Path], dict[str, Any]], exiftool_path: str
) -> None:
    user_photo = library / "astronaut_q25.jpg"
    with Exiftool(exiftool_path) as et:  # what digiKam leaves: a named face region in the sidecar
        et.execute(
            "-XMP-mwg-rs:RegionInfo=" + DIGIKAM_REGION, "-XMP-digiKam:TagsList=People/Eileen Collins",
            "-o", str(user_photo.with_name(user_photo.name + ".xmp")), str(user_photo),
        )  # fmt: skip
    users = read(user_photo)
    phototag("scan", str(library))

    people = listed(phototag)
    astronaut = cluster_of(people, "astronaut")
    assert astronaut["name"] == "Eileen Collins" and astronaut["faces"] == 5
    assert cluster_of(people, "hopper")["name"] is None
    for photo in sorted(library.glob("astronaut*.jpg")):
        xmp = read(photo)
        assert [r.get("Name") for r in regions(xmp)] == ["Eileen Collins"], photo.name
        if photo != user_photo:
            assert as_list(xmp.get("XMP-iptcExt:PersonInImage")) == ["Eileen Collins"]
    # the user's region: still exactly theirs, not boxed twice, no PersonInImage added by phototag
    mine = read(user_photo)
    assert regions(mine) == regions(users)
    assert mine.get("XMP-iptcExt:PersonInImage") is None
    assert as_list(mine.get("XMP-digiKam:TagsList")) == ["People/Eileen Collins"]

    phototag("untag", str(library))
    for photo in sorted(library.glob("astronaut*.jpg")):
        side = photo.with_name(photo.name + ".xmp")
        if photo != user_photo:
            assert not side.exists(), photo.name  # nothing but phototag's was in it
            continue
        after = read(photo)
        assert regions(after) == regions(users)
        assert as_list(after.get("XMP-digiKam:TagsList")) == ["People/Eileen Collins"]
        assert after.get("XMP-iptcExt:PersonInImage") is None


def test_people_import_learns_a_name_the_user_gave_after_the_scan(
    library: Path, phototag: Callable[..., Any], read: Callable[[Path], dict[str, Any]], exiftool_path: str
) -> None:
    for path in [*library.glob("hopper*.jpg"), library / "cat.jpg", library / "coffee.jpg"]:
        path.unlink()
    phototag("scan", str(library))
    [cluster] = listed(phototag)
    assert cluster["name"] is None
    # in digiKam, the user confirms phototag's unnamed face on one photo as Eileen Collins
    named = library / "astronaut_small.jpg"
    [face] = regions(read(named))
    face = {**face, "Name": "Eileen Collins"}
    area = ",".join(f"{k}={v}" for k, v in face["Area"].items())
    dims = read(named)["XMP-mwg-rs:RegionInfo"]["AppliedToDimensions"]
    with Exiftool(exiftool_path) as et:
        et.execute(
            "-XMP-mwg-rs:RegionInfo={AppliedToDimensions={"
            + ",".join(f"{k}={v}" for k, v in dims.items())
            + "},RegionList=[{Area={"
            + area
            + "},Name=Eileen Collins,Type=Face}]}",
            "-overwrite_original",
            str(named.with_name(named.name + ".xmp")),
        )
    users = regions(read(named))

    out = phototag("people", "import").stdout
    assert "names learned from 1 photo(s)" in out and "metadata written again for 5 photo(s)" in out
    [cluster] = listed(phototag)
    assert cluster["name"] == "Eileen Collins" and cluster["faces"] == 5
    for photo in sorted(library.glob("astronaut*.jpg")):
        assert [r.get("Name") for r in regions(read(photo))] == ["Eileen Collins"], photo.name
    assert regions(read(named)) == users  # the user's region, as they left it


def test_merge_forget_and_contact_sheet(
    library: Path, phototag: Callable[..., Any], read: Callable[[Path], dict[str, Any]], tmp_path: Path
) -> None:
    for path in library.glob("hopper_*.jpg"):
        path.unlink()  # astronaut x5, hopper x1
    phototag("scan", str(library))
    people = listed(phototag)
    assert [p["faces"] for p in people] == [5]  # a lone face is not a person to suggest
    [astronaut] = people

    sheet = tmp_path / "sheet.png"
    phototag("people", "show", str(astronaut["id"]), "--out", str(sheet))
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.width > 5 * 128 and im.height > 128
        cells = [im.crop((6 + c * 134, 34, 6 + c * 134 + 128, 34 + 128)).convert("L") for c in range(5)]
    assert all(np.asarray(c).std() > 20 for c in cells)  # each cell holds a face crop, not background

    phototag("people", "name", str(astronaut["id"]), "Eileen Collins")
    other = phototag("people", "merge", str(astronaut["id"]), "999", ok=False)
    assert other.exit_code == 2 and "no person 999" in other.output
    phototag("people", "forget", str(astronaut["id"]))
    assert listed(phototag) == []
    xmp = read(library / "astronaut.jpg")
    assert [r.get("Name") for r in regions(xmp)] == [None]
    assert as_list(xmp.get("XMP-iptcExt:PersonInImage")) == []
    # a new look-alike joins the forgotten cluster silently: not suggested again
    ImageOps.mirror(_source("astronaut")).resize((400, 400)).save(library / "again.jpg")
    phototag("scan", str(library / "again.jpg"))
    assert listed(phototag) == []


# -- the daemon -------------------------------------------------------------------------------------------------

PLUGIN = FacePlugin()
"""The dlib faces as an entry-point plugin (``testfaces = test_people:PLUGIN``) for the daemon's process."""


@pytest.mark.slow
def test_a_new_photo_of_a_named_person_is_named_on_arrival_in_the_daemon(
    library: Path, tmp_path: Path, read: Callable[[Path], dict[str, Any]]
) -> None:
    from test_daemon import TESTS, Daemon

    dist = tmp_path / "dist"
    info = dist / "phototag_people_test-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: phototag-people-test\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[phototag]\ncounting = daemon_plugin\ntestfaces = test_people:PLUGIN\n"
    )
    base = tmp_path / "daemon"
    base.mkdir()
    daemon = Daemon(
        base, [library], f"{TESTS}:{dist}", plugins="daemon,xmp,sidecar,people,testfaces,counting"
    )
    try:
        daemon.start()
        daemon.wait_done(sorted(library.glob("*.jpg")), timeout=180)
        import daemon_plugin

        pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "xmp,sidecar,people"})
        pm.register(daemon_plugin, name="counting")  # the plugins the daemon has: its config names them
        pm.register(FacePlugin(), name="testfaces")
        pm.hook.register_commands(cli=cli)

        def run(*args: str) -> Any:
            result = CliRunner().invoke(
                cli, ["-c", str(daemon.config_path), *args], obj=CliState(None, (), pm, [])
            )
            assert result.exit_code == 0, (args, result.output[:3000], result.exception)
            return result

        people = [json.loads(line) for line in run("people", "list", "--json").stdout.splitlines()]
        run("people", "name", str(cluster_of(people, "hopper")["id"]), "Grace Hopper")
        arrived = library / "arrived" / "hopper_later.jpg"
        arrived.parent.mkdir()
        ImageOps.mirror(_source("hopper")).resize((400, 469)).save(arrived, quality=85)
        daemon.wait_done([arrived], timeout=120)
        xmp = read(arrived)
        assert [r.get("Name") for r in regions(xmp)] == ["Grace Hopper"]
        assert as_list(xmp.get("XMP-iptcExt:PersonInImage")) == ["Grace Hopper"]
    finally:
        daemon.cleanup()
