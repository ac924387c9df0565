"""The exiftool client: one stay_open process, exact values, no argument injection, deadlines, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exiv2_reader import exiv2_read
from phototag.errors import ExiftoolTimeout, MetadataError
from phototag.exiftool import (
    CONFIG_FILE,
    NAMESPACE_URI,
    Exiftool,
    serialize_struct,
)
from waiting import wait_for


@pytest.fixture
def et(exiftool_path: str):
    with Exiftool(exiftool_path, timeout=20) as client:
        yield client


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- process -------------------------------------------------------------------------------------------------


def test_version_and_path_match_the_installed_exiftool(et: Exiftool, exiftool_path: str) -> None:
    expected = subprocess.run(
        [exiftool_path, "-ver"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert et.version == expected
    assert Path(et.path).samefile(exiftool_path)


def test_one_process_serves_many_commands(et: Exiftool, photos: Path) -> None:
    et.start()
    pid = et.pid
    for photo in sorted(photos.glob("*.jpg")):
        assert et.read_tags(photo, "File:FileType")["File:FileType"] == "JPEG"
    assert et.pid == pid and et.restarts == 1


def test_close_leaves_no_process_and_context_manager_closes(exiftool_path: str, photos: Path) -> None:
    with Exiftool(exiftool_path) as client:
        client.read_tags(photos / "cat.jpg", "File:FileType")
        pid = client.pid
        assert pid is not None and alive(pid)
    assert client.pid is None
    assert not alive(pid)  # exited and reaped: no zombie
    client.close()  # idempotent


def test_exiftool_exits_when_phototag_is_killed(tmp_path: Path, exiftool_path: str) -> None:
    # exiftool -stay_open polls a closed pipe forever; phototag's config makes it notice its parent is gone
    script = tmp_path / "owner.py"
    script.write_text(
        "import os, sys\n"
        "from phototag.exiftool import Exiftool\n"
        f"et = Exiftool({exiftool_path!r})\n"
        "et.start()\n"
        "print(et.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


def test_killed_child_is_restarted_transparently(et: Exiftool, photos: Path) -> None:
    et.start()
    old = et.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    assert wait_for(lambda: not alive(old), 10)  # dead (a zombie until the client reaps it)
    et.write(photos / "cat.jpg", "-XMP-dc:Subject+=after-kill")
    assert et.read_tags(photos / "cat.jpg", "XMP-dc:Subject")["XMP-dc:Subject"] == ["after-kill"]
    assert et.pid not in (None, old) and et.restarts == 2
    assert not alive(old)


def test_hung_command_times_out_kills_and_recovers(et: Exiftool, photos: Path) -> None:
    et.start()
    old = et.pid
    assert old is not None
    started = time.monotonic()
    # a real exiftool command that blocks: -if evaluates Perl, which sleeps far past the deadline
    with pytest.raises(ExiftoolTimeout, match=r"cat\.jpg.*did not answer within 0\.5 s"):
        et.execute(
            "-if", "sleep 60; 1", "-FileType", str(photos / "cat.jpg"), timeout=0.5, file=photos / "cat.jpg"
        )
    assert time.monotonic() - started < 5
    assert not alive(old)
    assert et.read_tags(photos / "cat.jpg", "File:FileType") == {"File:FileType": "JPEG"}
    assert et.pid != old


def test_fake_exiftool_that_hangs_at_start_times_out(tmp_path: Path) -> None:
    fake = tmp_path / "exiftool"
    fake.write_text("#!/bin/sh\nexec sleep 300\n")
    fake.chmod(0o755)
    client = Exiftool(str(fake), timeout=0.5)
    try:
        with pytest.raises(ExiftoolTimeout):
            client.execute("-ver")
        assert client.pid is None
    finally:
        client.close()


def test_deadline_covers_sending_to_an_exiftool_that_stopped_reading(tmp_path: Path) -> None:
    fake = tmp_path / "exiftool"
    fake.write_text("#!/bin/sh\nexec sleep 300\n")  # never reads its input: a big command fills the pipe
    fake.chmod(0o755)
    client = Exiftool(str(fake), timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(ExiftoolTimeout):
            client.execute(*[f"-XMP-dc:Subject+={'x' * 1000}"] * 1000)
    finally:
        client.close()
    assert time.monotonic() - started < 5


def test_missing_executable_says_how_to_install(tmp_path: Path) -> None:
    client = Exiftool(str(tmp_path / "no-such-exiftool"))
    with pytest.raises(MetadataError, match="libimage-exiftool-perl"):
        client.execute("-ver")
    client.close()


def test_custom_namespace_is_loaded(et: Exiftool, photos: Path) -> None:
    assert CONFIG_FILE.is_file()
    photo = photos / "cat.jpg"
    et.write(photo, "-XMP-phototag:AddedSubject=Cat", "-XMP-phototag:Version=9.9")
    assert et.read_tags(photo, "XMP-phototag:all") == {
        "XMP-phototag:AddedSubject": ["Cat"],
        "XMP-phototag:Version": "9.9",
    }
    packet = subprocess.run(["exiftool", "-xmp", "-b", str(photo)], capture_output=True, check=True).stdout
    assert NAMESPACE_URI.encode() in packet
    assert exiv2_read(photo)["Xmp.phototag.AddedSubject"] == ["Cat"]


# -- values and arguments ------------------------------------------------------------------------------------


TRICKY = [
    "a dog\n-XMP-dc:Rights=X",
    "-starts with a dash",
    "#starts with a hash",
    "  leading and trailing spaces  ",
    "quotes \"double\" and 'single'",
    "dollar $HOME and at @ARGV and back\\slash\\",
    "Ünïcödé 日本語 😀",
    "tab\there\nsecond line",
    "1.50",
    "True",
    "007",
]


@pytest.mark.parametrize("value", TRICKY)
def test_values_round_trip_exactly_and_never_inject(et: Exiftool, photos: Path, value: str) -> None:
    photo = photos / "cat.jpg"
    et.write(photo, f"-XMP-dc:Description={value}", f"-XMP-dc:Subject+={value}")
    got = et.read_tags(photo, "XMP-dc:all")
    assert got["XMP-dc:Description"] == value
    assert got["XMP-dc:Subject"] == [value]
    assert "XMP-dc:Rights" not in got
    independent = exiv2_read(photo)
    assert independent["Xmp.dc.description"] == value
    assert independent["Xmp.dc.subject"] == [value]
    assert "Xmp.dc.rights" not in independent


def test_carriage_return_reaches_exiftool_exactly(et: Exiftool, photos: Path) -> None:
    # (XML readers such as exiv2 normalise CR LF to LF when parsing; exiftool keeps what was written)
    photo = photos / "cat.jpg"
    et.write(photo, "-XMP-dc:Description=one\r\ntwo\rthree")
    assert et.read_tags(photo, "XMP-dc:Description") == {"XMP-dc:Description": "one\r\ntwo\rthree"}


def test_list_values_remove_then_add_is_idempotent(et: Exiftool, photos: Path) -> None:
    photo = photos / "cat.jpg"
    for _ in range(3):
        et.write(
            photo,
            "-XMP-dc:Subject-=dog",
            "-XMP-dc:Subject+=dog",
            "-XMP-dc:Subject-=a\nb",
            "-XMP-dc:Subject+=a\nb",
        )
    assert et.read_tags(photo, "XMP-dc:Subject")["XMP-dc:Subject"] == ["dog", "a\nb"]


@pytest.mark.parametrize("name", ["-rf.jpg", "#hash.jpg", " space.jpg", "new\nline.jpg", "ünï $x @y.jpg"])
def test_awkward_file_names_are_not_options_or_comments(et: Exiftool, photos: Path, name: str) -> None:
    photo = photos / name
    (photos / "cat.jpg").rename(photo)
    et.write(photo, "-XMP-dc:Subject+=ok")
    assert et.read_tags(photo, "XMP-dc:Subject") == {"XMP-dc:Subject": ["ok"]}
    assert not (photos / "ok").exists()


def test_line_break_with_dollar_in_a_file_name_is_refused_clearly(et: Exiftool, photos: Path) -> None:
    photo = photos / "bad\n$name.jpg"
    (photos / "cat.jpg").rename(photo)
    with pytest.raises(MetadataError, match="Rename the file"):
        et.write(photo, "-XMP-dc:Subject+=x")


def test_nul_is_refused(et: Exiftool, photos: Path) -> None:
    with pytest.raises(MetadataError, match="NUL"):
        et.write(photos / "cat.jpg", "-XMP-dc:Subject+=a\x00b")


def test_struct_serialisation_survives_special_characters(et: Exiftool, photos: Path) -> None:
    photo = photos / "cat.jpg"
    tags = [
        {"Name": "a,b|c]d}e", "Path": "{x}|[y]", "Score": "0.5000"},
        {"Name": " [lead", "Path": "line\nbreak", "Score": "1"},
    ]
    et.write(photo, "-XMP-phototag:Tags=" + serialize_struct(tags))
    assert et.read_tags(photo, "XMP-phototag:Tags")["XMP-phototag:Tags"] == tags


def test_reading_a_missing_file_names_it(et: Exiftool, tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"gone\.jpg.*moved or deleted"):
        et.read_tags(tmp_path / "gone.jpg")


def test_text_named_jpg_is_refused_and_left_untouched(et: Exiftool, tmp_path: Path) -> None:
    fake = tmp_path / "notes.jpg"
    fake.write_text("just some text\n")
    with pytest.raises(MetadataError, match=r"notes\.jpg.*Fix: the file is not a valid image"):
        et.write(fake, "-XMP-dc:Subject+=x")
    assert fake.read_text() == "just some text\n"
