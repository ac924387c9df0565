"""One walker: ``phototag scan`` (:func:`phototag.files.iter_photos`) and the daemon (its rescans,
:func:`phototag.daemon.scan.walk`, and its event filter, :func:`phototag.daemon.scan.relevant`) apply the same
rules to the same tree. The one documented difference: the daemon skips symlinked files (README "Known limits")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from phototag.daemon.scan import entered, relevant, walk
from phototag.files import discover, iter_photos

JPEG = b"\xff\xd8 jpeg bytes"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Photos, and everything a walk must not yield, or must report."""
    root = tmp_path / "tree"
    files = [
        "a.jpg",
        "B.JPG",
        "sub/c.png",
        "sub/deeper/d.tif",
        "@eaDir/x.jpg",  # Synology thumbnails (excluded by default)
        "sub/@eaDir/x2.jpg",
        "#recycle/y.jpg",  # Synology recycle bin (excluded by default)
        ".hidden/z.jpg",  # a hidden folder
        "sub/.cache/z2.jpg",
        ".hidden.jpg",  # a hidden file
        "private/p.jpg",  # excluded by an absolute glob
        "e.jpg.part",  # temp files
        "a.jpg_exiftool_tmp",
        ".phototag-0123456789abcdef.tmp",
        "~f.jpg",
        "a.jpg.xmp",  # our own outputs
        "a.jpg.phototag.json",
        "notes.txt",  # not a photo
    ]
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(JPEG)
    os.mkfifo(root / "pipe.jpg")  # reported, never opened
    (root / "link.jpg").symlink_to(root / "a.jpg")  # a symlink to a photo
    (root / "dangling.jpg").symlink_to(root / "missing.jpg")
    (root / "linked-folder").symlink_to(root / "sub", target_is_directory=True)  # never followed
    return root


@pytest.fixture
def config(make_config, tree: Path):
    globs = ["*/@eaDir/*", "*/#recycle/*", "*/.thumbnails/*", f"{tree}/private/*"]
    return make_config(exclude=json.dumps(globs))


PHOTOS = {"a.jpg", "B.JPG", "sub/c.png", "sub/deeper/d.tif"}


def rel(paths, root: Path) -> set[str]:
    return {str(Path(p).relative_to(root)) for p in paths}


def scan_walk(root: Path, config) -> tuple[set[Path], dict[Path, str]]:
    errors: dict[Path, str] = {}
    found = set(iter_photos([root], config, on_error=errors.__setitem__))
    return found, errors


def daemon_walk(root: Path, config) -> tuple[set[Path], dict[Path, str]]:
    errors: dict[Path, str] = {}
    found = {path for path, _ in walk(root, config, on_error=errors.__setitem__)}
    return found, errors


def test_scan_and_daemon_walk_the_same_tree_the_same_way(tree: Path, config) -> None:
    scanned, scan_errors = scan_walk(tree, config)
    watched, daemon_errors = daemon_walk(tree, config)
    assert rel(scanned, tree) == PHOTOS | {"link.jpg"}  # scan follows a symlink to a regular file
    assert rel(watched, tree) == PHOTOS  # the daemon does not (README "Known limits")
    assert all(p.is_absolute() for p in scanned | watched)
    assert rel(scan_errors, tree) == {"pipe.jpg", "dangling.jpg"}
    assert rel(daemon_errors, tree) == {"pipe.jpg"}
    assert "not a regular file (a FIFO)" in scan_errors[tree / "pipe.jpg"]
    assert scan_errors[tree / "pipe.jpg"] == daemon_errors[tree / "pipe.jpg"]
    # the one switch between them
    following = {p for p, _ in discover(tree, config, lambda p, why: None, follow_file_links=True)}
    assert following == scanned


def test_the_daemons_event_filter_agrees_with_its_walk(tree: Path, config) -> None:
    """Every regular file in the tree (found by os.walk, which knows no rules) is relevant to the daemon's
    events exactly when the daemon's walk yields it."""
    watched, _ = daemon_walk(tree, config)
    everything = set()
    for folder, _, names in os.walk(tree):
        everything |= {Path(folder) / n for n in names if (Path(folder) / n).is_file()}
    assert {p for p in everything if relevant(p, tree, config) and not p.is_symlink()} == watched
    assert not relevant(tree / "sub" / "@eaDir" / "new.jpg", tree, config)
    assert not relevant(tree / ".hidden" / "new.jpg", tree, config)
    assert not relevant(tree / "private" / "deep" / "new.jpg", tree, config)
    assert relevant(tree / "sub" / "new.jpg", tree, config)
    assert entered(tree / "sub" / "deeper", tree, config)
    assert not entered(tree / "sub" / ".cache", tree, config)
    assert not entered(tree / "@eaDir", tree, config)


def test_a_relative_root_is_walked_with_absolute_paths_and_excludes(
    tree: Path, config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    scanned, _ = scan_walk(Path("."), config)
    watched, _ = daemon_walk(Path("."), config)
    assert rel(scanned, tree) == PHOTOS | {"link.jpg"}
    assert rel(watched, tree) == PHOTOS  # private/ is excluded by an absolute glob
    monkeypatch.chdir(tree / "sub")
    watched, _ = daemon_walk(Path(".."), config)
    assert rel(watched, tree) == PHOTOS
    scanned, _ = scan_walk(Path("../sub"), config)
    assert rel(scanned, tree) == {"sub/c.png", "sub/deeper/d.tif"}


def test_the_walk_order_is_sorted_files_first_depth_first(tree: Path, config) -> None:
    watched = [str(p.relative_to(tree)) for p, _ in walk(tree, config)]
    assert watched == ["B.JPG", "a.jpg", "sub/c.png", "sub/deeper/d.tif"]


def test_stats_come_with_the_paths(tree: Path, config) -> None:
    for path, stat in walk(tree, config):
        st = path.stat()
        assert (stat.size, stat.mtime_ns) == (st.st_size, st.st_mtime_ns)
    for path, st in discover(tree, config, lambda p, why: None):
        assert st.st_size == len(JPEG) and path.is_absolute()


def test_folder_hook_and_progress(tree: Path, config, monkeypatch: pytest.MonkeyPatch) -> None:
    import phototag.files as files

    monkeypatch.setattr(files, "PROGRESS_EVERY", 3)
    folders: list[str] = []
    counts: list[int] = []
    list(
        discover(
            tree,
            config,
            lambda p, why: None,
            on_folder=lambda folder, names: folders.append(str(folder.relative_to(tree))),
            progress=counts.append,
        )
    )
    assert folders == [".", "sub", "sub/deeper"]  # hidden, excluded and symlinked folders are not entered
    assert counts and counts == sorted(counts) and all(n % 3 == 0 for n in counts)


def test_the_daemon_removes_stale_temp_files_on_its_way(tree: Path, config) -> None:
    stale = tree / "sub" / "c.png_exiftool_tmp"
    stale.write_bytes(b"half a photo")
    old = os.stat(stale).st_mtime - 3600
    os.utime(stale, (old, old))
    list(walk(tree, config))
    assert stale.exists()  # only when asked (the start-up walk)
    list(walk(tree, config, remove_stale_tmp=True))
    assert not stale.exists()
    assert (tree / "a.jpg_exiftool_tmp").exists()  # just written: its writer may still be at work


def test_a_folder_that_cannot_be_listed_is_reported(tree: Path, config) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can list any folder")
    locked = tree / "sub" / "deeper"
    locked.chmod(0)
    try:
        _, scan_errors = scan_walk(tree, config)
        _, daemon_errors = daemon_walk(tree, config)
    finally:
        locked.chmod(0o755)
    assert scan_errors[locked] == daemon_errors[locked]
    assert scan_errors[locked].startswith("cannot list this folder: Permission denied")
