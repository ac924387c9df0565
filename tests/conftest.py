"""Shared fixtures: real photos from installed packages, a temp config, real exiftool."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phototag.config import Config, load_config
from phototag.exiftool import Exiftool
from phototag.plugins.xmp import XmpWriter
from phototag.samples import write_samples


@pytest.fixture(scope="session")
def sample_photos_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos written once per session; copy before modifying (use ``photos``)."""
    folder = tmp_path_factory.mktemp("samples")
    write_samples(folder)
    return folder


@pytest.fixture
def photos(sample_photos_master: Path, tmp_path: Path) -> Path:
    """A fresh folder of real photos for this test: cat.jpg, motorcycle.jpg, coffee.png, astronaut.jpg,
    rocket.jpg, grace_hopper.jpg."""
    folder = tmp_path / "photos"
    shutil.copytree(sample_photos_master, folder)
    return folder


@pytest.fixture
def make_config(tmp_path: Path):
    """``make_config(**overrides)`` -> Config with the state DB in tmp_path; overrides are dotted keys."""

    def make(**overrides: str) -> Config:
        sets = {"state_db": str(tmp_path / "state" / "state.db")}
        sets.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_config(None, overrides=sets, environ={})

    return make


@pytest.fixture(scope="session")
def exiftool_path() -> str:
    path = shutil.which("exiftool")
    if path is None:
        pytest.fail("exiftool is not installed: apt-get install libimage-exiftool-perl")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """``tiny_model(name)`` -> folder of a tiny random transformers model (``tiny_models.BUILDERS``), built once
    per session on first use. Do not change the folder: copy it to damage it."""
    from tiny_models import TinyModels  # imports torch: only sessions that use the models pay for it

    return TinyModels(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(autouse=True)
def no_installed_service(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands look for an installed phototag service (and then read its state DB): on a machine that has
    one, tests must not pick it up. An empty unit path stands in for the system's."""
    empty = tmp_path_factory.getbasetemp() / "no-systemd-units"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("SYSTEMD_UNIT_PATH", str(empty))


@pytest.fixture
def reader(exiftool_path: str) -> Iterator[Exiftool]:
    """A separate exiftool for reading back what a test wrote."""
    with Exiftool(exiftool_path) as et:
        yield et


@pytest.fixture
def make_writer(make_config: Callable[..., Config]) -> Iterator[Callable[..., XmpWriter]]:
    """``make_writer(**overrides)`` -> a real XmpWriter on a config with those dotted overrides; closed after."""
    made: list[XmpWriter] = []

    def make(**overrides: str) -> XmpWriter:
        writer = XmpWriter(make_config(**overrides))
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close()
