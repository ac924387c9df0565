"""Hostile names, special files, the user's protections, leftovers and counts (issue 7, RELIABILITY.md 15-20).

The pipeline runs with real decoding, real exiftool, real SQLite and the real XMP and JSON writers, driven by the
small pixel analyzer of test_pipeline; metadata is read back with a separate exiftool. Where the command line is
what is at stake (output that must not crash, exit codes), ``phototag`` runs as a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phototag.exiftool import Exiftool
from phototag.images import pixel_hash
from phototag.manager import get_plugin_manager, registered
from test_pipeline import Brightness, Plugin, collect


@pytest.fixture
def pm():
    manager, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": "sidecar,xmp"})
    return manager


@pytest.fixture(scope="module")
def et():
    with Exiftool(timeout=20) as client:
        yield client


def subjects(et: Exiftool, path: Path) -> list[str]:
    value = et.read_tags(path, "XMP-dc:Subject").get("XMP-dc:Subject", [])
    return value if isinstance(value, list) else [value]


def run(config: Any, pm: Any, paths: list[Path], analyzer: Brightness | None = None):  # type: ignore[no-untyped-def]
    with registered(pm, Plugin(analyzer or Brightness()), "inline"):
        return collect(config, pm, paths)


def phototag(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """``phototag ARGS`` as a subprocess with the bundled offline models; output as bytes (names may not be
    UTF-8)."""
    return subprocess.run(
        [sys.executable, "-m", "phototag", *args], capture_output=True, cwd=cwd, timeout=timeout, check=False
    )


# -- file names are data ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_percent_dash_and_at_names_never_read_another_photos_metadata(
    photos: Path, make_config, pm, et: Exiftool, mode: str
) -> None:
    folder = photos / "odd%d"  # a folder name with a format code too
    folder.mkdir()
    secret = folder / "imgxmp.jpg"
    shutil.copy(photos / "cat.jpg", secret)
    et.write(secret, "-XMP-dc:Subject=Secret of another photo")
    names = ["img%e.jpg", "x%dy.jpg", "%f.jpg", "-dash.jpg", "@at.jpg", "#hash.jpg", "100%.jpg"]
    for i, name in enumerate(names):
        shutil.copy(photos / "motorcycle.jpg", folder / name)
        et.write(folder / name, f"-XMP-dc:Subject=own-{i}")
    summary, outcomes = run(make_config(metadata__mode=mode), pm, [folder / n for n in names])
    assert summary.failed == 0, [o.message for o in outcomes.values()]
    for i, name in enumerate(names):
        target = folder / (name + ".xmp" if mode == "sidecar" else name)
        found = subjects(et, target)
        assert f"own-{i}" in found and ("Dark" in found or "Bright" in found), (name, found)
        assert "Secret of another photo" not in found, name
    assert subjects(et, secret) == ["Secret of another photo"]


def test_a_name_that_is_not_utf8_is_tagged_and_printed(photos: Path, tmp_path: Path) -> None:
    odd = os.fsdecode(b"caf\xe9-\xff.jpg")
    shutil.copy(photos / "cat.jpg", photos / odd)
    state = tmp_path / "state.db"
    done = phototag("--set", f"state_db={state}", "scan", str(photos))
    out = done.stdout.decode("utf-8")  # all output is valid UTF-8
    assert done.returncode == 0, out + done.stderr.decode("utf-8", "replace")
    assert "7 tagged, 0 skipped" in out
    assert "caf\\xe9-\\xff.jpg: Cat" in out
    doc = json.loads((photos / (odd + ".phototag.json")).read_bytes())
    assert doc["file"] == "caf\\xe9-\\xff.jpg"
    assert (photos / (odd + ".xmp")).is_file()
    again = phototag("--set", f"state_db={state}", "scan", str(photos))
    assert "0 tagged, 7 skipped" in again.stdout.decode()


# -- only regular files are opened -------------------------------------------------------------------------------


def test_fifo_and_device_symlink_fail_alone_without_hanging(photos: Path, tmp_path: Path) -> None:
    os.mkfifo(photos / "pipe.jpg")
    os.symlink("/dev/zero", photos / "zero.jpg")
    os.symlink(photos / "missing.jpg", photos / "dangling.jpg")
    state = tmp_path / "state.db"
    done = phototag("--set", f"state_db={state}", "scan", str(photos), timeout=120)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 1
    assert "6 tagged, 0 skipped (already done), 3 failed" in out
    assert f"{photos}/pipe.jpg: not a regular file (a FIFO)" in err
    assert f"{photos}/zero.jpg: not a regular file (a symlink to a character device)" in err
    assert f"{photos}/dangling.jpg: not a regular file (a symlink that leads nowhere)" in err
    # named on the command line, the FIFO is refused the same way
    alone = phototag("--set", f"state_db={state}", "scan", str(photos / "pipe.jpg"), timeout=60)
    assert alone.returncode == 1 and "not a regular file (a FIFO)" in alone.stderr.decode()


# -- the user's protections --------------------------------------------------------------------------------------


def test_read_only_sidecar_is_left_alone_unless_allowed(photos: Path, make_config, pm, et: Exiftool) -> None:
    photo = photos / "cat.jpg"
    side = photos / "cat.jpg.xmp"
    et.execute("-XMP-dc:Subject=mine", str(side))
    side.chmod(0o444)
    before = side.read_bytes()
    summary, outcomes = run(make_config(), pm, [photo])
    message = outcomes["cat.jpg"].message
    assert summary.failed == 1 and not outcomes["cat.jpg"].transient
    assert message.startswith(f"{photo}: its XMP sidecar cat.jpg.xmp is read-only (mode 0444)")
    assert "metadata.write_read_only" in message
    assert side.read_bytes() == before
    summary, _ = run(make_config(metadata__write_read_only="true"), pm, [photo])
    assert summary.tagged == 1
    assert "mine" in subjects(et, side) and len(subjects(et, side)) > 1
    assert stat.S_IMODE(side.stat().st_mode) == 0o444  # written, and still read-only


def test_symlinked_sidecar_is_written_through(
    photos: Path, tmp_path: Path, make_config, pm, et: Exiftool
) -> None:
    elsewhere = tmp_path / "library"
    elsewhere.mkdir()
    real = elsewhere / "cat.xmp"
    et.execute("-XMP-dc:Subject=mine", str(real))
    (photos / "cat.jpg.xmp").symlink_to(real)
    summary, _ = run(make_config(), pm, [photos / "cat.jpg"])
    assert summary.tagged == 1
    assert (photos / "cat.jpg.xmp").is_symlink() and os.readlink(photos / "cat.jpg.xmp") == str(real)
    assert "mine" in subjects(et, real) and len(subjects(et, real)) > 1


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_root_keeps_owner_and_mode_of_existing_sidecars(photos: Path, make_config, pm, et: Exiftool) -> None:
    photo = photos / "cat.jpg"
    side, js = photos / "cat.jpg.xmp", photos / "cat.jpg.phototag.json"
    et.execute("-XMP-dc:Subject=mine", str(side))
    js.write_text("{}")
    for f, mode in ((side, 0o640), (js, 0o644)):
        os.chown(f, 65534, 65534)
        f.chmod(mode)
    summary, _ = run(make_config(), pm, [photo])
    assert summary.tagged == 1
    for f, mode in ((side, 0o640), (js, 0o644)):
        st = f.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, mode), f.name
    assert json.loads(js.read_text())["file"] == "cat.jpg"


def test_new_files_follow_the_umask(photos: Path, make_config, pm) -> None:
    old = os.umask(0o002)
    try:
        summary, _ = run(make_config(), pm, [photos / "cat.jpg"])
    finally:
        os.umask(old)
    assert summary.tagged == 1
    for name in ("cat.jpg.xmp", "cat.jpg.phototag.json"):
        assert stat.S_IMODE((photos / name).stat().st_mode) == 0o664, name


# -- leftovers and counts ------------------------------------------------------------------------------------------


def test_overlapping_paths_are_processed_once(photos: Path, make_config, pm) -> None:
    sub = photos / "sub"
    sub.mkdir()
    shutil.copy(photos / "cat.jpg", sub / "kitten.jpg")
    from phototag.files import iter_photos

    config = make_config()
    found = list(iter_photos([photos, sub, sub / "kitten.jpg", photos / "cat.jpg"], config))
    assert len(found) == 7 and len(set(found)) == 7
    summary, _ = run(config, pm, found)
    assert (summary.tagged, summary.total) == (7, 7)


def test_a_deleted_sidecar_is_made_again_without_running_a_model(photos: Path, make_config, pm) -> None:
    config = make_config()
    first = Brightness()
    run(config, pm, [photos / "cat.jpg", photos / "rocket.jpg"], first)
    assert sum(first.calls) == 2
    xmp = (photos / "cat.jpg.xmp").read_bytes()
    (photos / "cat.jpg.xmp").unlink()
    (photos / "rocket.jpg.phototag.json").unlink()
    second = Brightness()
    summary, _ = run(config, pm, [photos / "cat.jpg", photos / "rocket.jpg"], second)
    assert (summary.rewritten, second.calls) == (2, [])  # from the cached results
    assert (photos / "rocket.jpg.phototag.json").is_file()
    again = (photos / "cat.jpg.xmp").read_bytes()
    assert again.replace(b" ", b"")[:200] == xmp.replace(b" ", b"")[:200]
    third = Brightness()
    summary, _ = run(config, pm, [photos / "cat.jpg", photos / "rocket.jpg"], third)
    assert (summary.skipped, third.calls) == (2, [])


def test_scan_removes_stale_temp_files_of_a_killed_run_only(photos: Path, make_config, pm) -> None:
    stale = [photos / ".phototag-0123456789abcdef.tmp", photos / "cat.jpg_exiftool_tmp"]
    theirs = [photos / "notes.tmp", photos / ".cat.jpg.swp"]
    for f in stale + theirs:
        f.write_bytes(b"left behind")
        os.utime(f, (1_000_000_000, 1_000_000_000))
    summary, _ = run(make_config(), pm, [photos / "cat.jpg"])
    assert summary.tagged == 1
    assert [f.exists() for f in stale] == [False, False]
    assert [f.read_bytes() for f in theirs] == [b"left behind"] * 2


def test_dry_run_creates_no_state_database(photos: Path, tmp_path: Path) -> None:
    state = tmp_path / "state" / "state.db"
    done = phototag("--set", f"state_db={state}", "scan", "--dry-run", str(photos / "cat.jpg"))
    assert done.returncode == 0, done.stderr.decode()
    assert b"dry run: 0 tagged" in done.stdout
    assert not state.parent.exists()
    assert sorted(p.name for p in photos.iterdir())[:2] == ["astronaut.jpg", "cat.jpg"]
    assert not list(photos.glob("*.xmp")) and not list(photos.glob("*.json"))


def test_photo_name_near_the_limit_fails_with_the_photo_named(photos: Path, make_config, pm) -> None:
    name = "n" * (255 - len(".jpg")) + ".jpg"  # the longest name there is: no room for "photo.jpg.xmp"
    shutil.copy(photos / "cat.jpg", photos / name)
    summary, outcomes = run(make_config(), pm, [photos / name])
    message = outcomes[name].message
    assert summary.failed == 1
    assert message.startswith(f"{photos / name}: ") and "phototag-" not in message
    assert not [p for p in photos.iterdir() if p.name.startswith(".")]  # no temp file left


# -- nothing skipped silently ----------------------------------------------------------------------------------------


def test_too_deep_folder_is_a_failure_that_names_it(photos: Path, tmp_path: Path) -> None:
    fd = os.open(photos, os.O_RDONLY)
    try:
        for _ in range(22):  # 22 * 200 bytes: past PATH_MAX (4096), built with relative paths
            os.mkdir("d" * 199, dir_fd=fd)
            nxt = os.open("d" * 199, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with open(os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write((photos / "cat.jpg").read_bytes())
    finally:
        os.close(fd)
    done = phototag("--set", f"state_db={tmp_path / 's.db'}", "scan", str(photos))
    err = done.stderr.decode()
    assert done.returncode == 1
    assert "6 tagged" in done.stdout.decode() and "1 failed" in done.stdout.decode()
    assert "File name too long" in err and str(photos / ("d" * 199)) in err


def test_pixels_untouched_by_all_of_it(photos: Path, make_config, pm) -> None:
    before = {p.name: pixel_hash(p) for p in photos.iterdir()}
    run(make_config(metadata__mode="embed"), pm, sorted(photos.iterdir()))
    assert {p.name: pixel_hash(p) for p in photos.iterdir() if p.suffix != ".json"} == before


def test_a_lost_state_db_is_rebuilt_from_the_json_sidecars_without_models(
    photos: Path, make_config, pm
) -> None:
    config = make_config()
    first = Brightness()
    run(config, pm, sorted(photos.iterdir()), first)
    assert sum(first.calls) == 6
    shutil.move(config.state_db, config.state_db.with_suffix(".broken"))  # what the damaged-DB message says
    second = Brightness()
    summary, outcomes = run(
        config, pm, sorted(p for p in photos.iterdir() if p.suffix in (".jpg", ".png")), second
    )
    assert (summary.tagged, second.calls) == (6, [])
    assert {o.result.tags[0][1].name for o in outcomes.values() if o.result} <= {"Bright", "Dark"}
    changed = Brightness(
        threshold=0.4
    )  # other settings: other fingerprint, the sidecar's results do not apply
    summary, _ = run(config, pm, [photos / "cat.jpg"], changed)
    assert (summary.tagged, sum(changed.calls)) == (1, 1)


def as_unprivileged(cmd: list[str]) -> list[str]:
    """``cmd`` run without root's capabilities: as nobody when the tests run as root, else as is."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root's capabilities")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


def test_without_root_the_users_protections_and_unreadable_folders(photos: Path, et: Exiftool) -> None:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="phototag-unprivileged-"))
    try:
        base.chmod(0o755)
        folder = base / "photos"
        shutil.copytree(photos, folder)
        (folder / "locked").mkdir()
        shutil.copy(photos / "cat.jpg", folder / "locked" / "hidden.jpg")
        foreign, read_only = folder / "cat.jpg.xmp", folder / "rocket.jpg.xmp"
        et.execute("-XMP-dc:Subject=theirs", str(foreign))
        et.execute("-XMP-dc:Subject=mine", str(read_only))
        me = 65534 if os.geteuid() == 0 else os.geteuid()
        if os.geteuid() == 0:
            for path in [base, *base.rglob("*")]:
                os.lchown(path, me, me)
            os.chown(foreign, 0, 0)  # someone else's sidecar in our folder
        read_only.chmod(0o444)
        (folder / "locked").chmod(0o000)
        before = {p: p.read_bytes() for p in (foreign, read_only)}
        cmd = [
            sys.executable,
            "-m",
            "phototag",
            "--set",
            f"state_db={base / 'state.db'}",
            "scan",
            str(folder),
        ]
        done = subprocess.run(
            as_unprivileged(cmd), capture_output=True, timeout=180, env={**os.environ, "HOME": str(base)}
        )
        out, err = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == 1, out + err
        counts = (
            "4 tagged, 0 skipped (already done), 3 failed" if os.geteuid() == 0 else "5 tagged, 0 skipped"
        )
        assert counts in out, out + err
        assert f"{folder}/locked: cannot list this folder: Permission denied" in err
        if os.geteuid() == 0:
            assert f"{folder}/cat.jpg: its XMP sidecar cat.jpg.xmp belongs to another user (uid 0)" in err
            assert foreign.stat().st_uid == 0
        assert f"{folder}/rocket.jpg: its XMP sidecar rocket.jpg.xmp is read-only (mode 0444)" in err
        assert {p: p.read_bytes() for p in (foreign, read_only)} == before
    finally:
        (base / "photos" / "locked").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_corrupt_state_db_and_non_utf8_config_are_clear_errors(photos: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    assert phototag("--set", f"state_db={state}", "scan", str(photos / "cat.jpg")).returncode == 0
    data = bytearray(state.read_bytes())
    data[100:4096] = os.urandom(3996)  # the header's tail and the schema page
    state.write_bytes(bytes(data))
    done = phototag("--set", f"state_db={state}", "scan", str(photos / "cat.jpg"))
    err = done.stderr.decode()
    assert done.returncode == 1 and "Traceback" not in err, err
    assert str(state) in err and "damaged" in err and f"mv {state} {state}.broken" in err
    config = tmp_path / "config.yaml"
    config.write_bytes(b"metadata:\n  keyword_root: Caf\xe9\n")  # Latin-1, not UTF-8
    done = phototag("--config", str(config), "config")
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err
    assert f"{config}: the file is not UTF-8 text (byte 0xe9 on line 2): save it as UTF-8" in err


def test_a_scan_with_nothing_to_do_still_removes_stale_temp_files(photos: Path, make_config, pm) -> None:
    config = make_config()
    run(config, pm, [photos / "cat.jpg"])
    stale = [photos / "cat.jpg_exiftool_tmp", photos / ".phototag-0123456789abcdef.xmp"]
    for f in stale:
        f.write_bytes(b"left by a killed run")
        os.utime(f, (1_000_000_000, 1_000_000_000))
    summary, _ = run(config, pm, [photos / "cat.jpg"])
    assert summary.skipped == 1
    assert [f.exists() for f in stale] == [False, False]


class Mover:
    """A writer that moves the photo away as it writes: another program renaming it at that very moment."""

    name = "mover"

    def write(self, result) -> None:  # type: ignore[no-untyped-def]
        result.photo.path.rename(result.photo.path.with_name("moved-" + result.photo.path.name))

    def close(self) -> None:
        pass


def test_a_photo_moved_between_write_and_record_is_transient(photos: Path, make_config, pm) -> None:
    from phototag import hookimpl

    class Writers:
        @hookimpl
        def register_writers(self, register, config):  # type: ignore[no-untyped-def]
            register(Mover())

    with registered(pm, Writers(), "writers"):
        summary, outcomes = run(make_config(), pm, [photos / "cat.jpg", photos / "rocket.jpg"])
    assert summary.failed == 2
    for name in ("cat.jpg", "rocket.jpg"):
        assert outcomes[name].transient
        assert (
            outcomes[name].message
            == f"{photos / name}: moved or deleted right after its metadata was written; not recorded"
        )


def test_untag_reports_a_file_it_could_not_clean(photos: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    assert phototag("--set", f"state_db={state}", "scan", str(photos / "cat.jpg")).returncode == 0
    (photos / "cat.jpg.xmp").chmod(0o444)
    done = phototag(
        "--set", f"state_db={state}", "untag", str(photos / "cat.jpg"), str(photos / "rocket.jpg")
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert f"{photos / 'cat.jpg'}: NOT untagged: " in err and "read-only" in err
    assert f"{photos / 'rocket.jpg'}: untagged" in done.stdout.decode()
    assert b"AddedSubject" in (photos / "cat.jpg.xmp").read_bytes()
