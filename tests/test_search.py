"""``phototag search`` and ``phototag similar``: photos scanned by the real pipeline with a tiny CLIP, then
queried through the real CLI commands (click) against the real state DB."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from phototag import hookimpl, hookspecs
from phototag.cli import CliState, cli
from phototag.config import Config, load_config
from phototag.errors import ConfigError, PhototagError
from phototag.hf.embed import HFEmbedder
from phototag.pipeline import Pipeline
from phototag.plugins import search as search_plugin
from phototag.plugins.search import find_embedder, rank_by_vector
from phototag.state import StateDB

QUERIES = ["a dog on a beach", "a cat", "coffee", "a rocket launch", "an astronaut", "a motorcycle"]


# -- ranking (pure) ------------------------------------------------------------------------------------------


def test_rank_by_vector_orders_by_cosine_and_limits() -> None:
    items = [("a", np.array([1.0, 0.0])), ("b", np.array([0.0, 2.0])), ("c", np.array([1.0, 1.0]))]
    assert [k for k, _ in rank_by_vector(np.array([1.0, 0.1]), items, 3)] == ["a", "c", "b"]
    assert [k for k, _ in rank_by_vector(np.array([0.0, 5.0]), items, 2)] == ["b", "c"]
    ranked = rank_by_vector(np.array([3.0, 0.0]), items, 1)
    assert ranked == [("a", pytest.approx(1.0))]  # cosine: scale does not matter
    assert rank_by_vector(np.array([1.0, 0.0, 0.0]), items, 3) == []  # other model's dimension: ignored
    assert rank_by_vector(np.zeros(2), items, 3) == []
    assert rank_by_vector(np.array([1.0, 0.0]), [], 3) == []


def test_find_embedder_needs_exactly_one() -> None:
    class Fake:
        def __init__(self, name: str, task: str) -> None:
            self.name, self.task = name, task

    one = Fake("embed", "embed")
    assert find_embedder([Fake("c", "classify"), one]) is one
    with pytest.raises(ConfigError, match="no embed analyzer is enabled"):
        find_embedder([Fake("c", "classify")])
    with pytest.raises(Exception, match="--model NAME"):
        find_embedder([one, Fake("embed2", "embed")])
    assert find_embedder([one, Fake("embed2", "embed")], "embed2").name == "embed2"


# -- through the pipeline and the CLI ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model: Callable[[str], Path]) -> dict[str, Path]:
    return {"clip": tiny_model("clip"), "dinov2": tiny_model("dinov2")}


class EmbedPlugin:
    """Registers the transformers embedder from ``plugins.embed`` (what the builtin embed plugin does)."""

    @hookimpl
    def register_analyzers(self, register: Any, config: Config) -> None:
        register(HFEmbedder("embed", config.plugin_settings("embed", HFEmbedder.Settings), config))


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("phototag")
    pm.add_hookspecs(hookspecs)
    pm.register(EmbedPlugin(), name="embed")
    pm.register(search_plugin, name="search")
    pm.hook.register_commands(cli=cli)
    return pm


def embed_config(tmp_path: Path, model: Path) -> Path:
    """A config file: the state DB in ``tmp_path``, ``model`` as the embed model."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump({"state_db": str(tmp_path / "state.db"), "plugins": {"embed": {"model": str(model)}}})
    )
    return config_file


@pytest.fixture
def scanned(tiny: dict[str, Path], photos: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A config file with the tiny CLIP as embed model, and the sample photos scanned with it."""
    config_file = embed_config(tmp_path, tiny["clip"])
    scan(config_file, photos)
    return config_file, photos


def scan(config_file: Path, photos: Path) -> None:
    config = load_config(config_file, environ={})
    pm = plugin_manager()
    state = StateDB(config.state_db)
    with Pipeline.from_config(config, pm, state) as pipeline:
        outcomes = pipeline.process(sorted(p for p in photos.iterdir() if p.is_file()))
    state.close()
    assert all(o.status in ("tagged", "skipped") for o in outcomes), [o.message for o in outcomes]


def run(config_file: Path, *args: str) -> Any:
    pm = plugin_manager()
    result = CliRunner().invoke(cli, ["-c", str(config_file), *args], obj=CliState(None, (), pm, []))
    return result


def ranked(result: Any) -> list[dict[str, Any]]:
    assert result.exit_code == 0, (result.output, result.exception)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_search_ranks_by_text_image_similarity(scanned: tuple[Path, Path], tiny: dict[str, Path]) -> None:
    config_file, photos = scanned
    hits = ranked(run(config_file, "search", "a dog on a beach", "--json"))
    assert {Path(h["path"]).name for h in hits} == {p.name for p in photos.iterdir()}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    # the ranking is the cosine between the query's text embedding and each stored image embedding
    config = load_config(config_file, environ={})
    embedder = HFEmbedder("embed", HFEmbedder.Settings(model=str(tiny["clip"])), config)
    query = np.array(embedder.embed_text(["a dog on a beach"])[0])
    with StateDB(config.state_db) as db:
        expected = {h: float(v @ query) for h, v in db.embeddings(embedder.fingerprint())}
    assert [h["content_hash"] for h in hits] == sorted(expected, key=lambda k: -expected[k])
    assert scores == pytest.approx([expected[h["content_hash"]] for h in hits], abs=1e-3)
    # --limit, and the plain text form
    assert len(ranked(run(config_file, "search", "a cat", "--json", "--limit", "2"))) == 2
    plain = run(config_file, "search", "a cat", "-n", "3")
    assert plain.exit_code == 0 and len(plain.stdout.splitlines()) == 3 and str(photos) in plain.stdout


def test_search_ranking_changes_with_the_query(scanned: tuple[Path, Path]) -> None:
    config_file, _ = scanned
    orders = {tuple(h["path"] for h in ranked(run(config_file, "search", q, "--json"))) for q in QUERIES}
    assert len(orders) > 1
    scores = [tuple(h["score"] for h in ranked(run(config_file, "search", q, "--json"))) for q in QUERIES[:2]]
    assert scores[0] != scores[1]


def test_similar_ranks_the_photo_itself_first(scanned: tuple[Path, Path]) -> None:
    config_file, photos = scanned
    for name in ("cat.jpg", "rocket.jpg"):
        hits = ranked(run(config_file, "similar", str(photos / name), "--json"))
        assert Path(hits[0]["path"]).name == name
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert all(h["score"] < 0.9999 for h in hits[1:])
        assert len(hits) == 6


def test_renamed_photo_is_found_by_content(scanned: tuple[Path, Path]) -> None:
    """The state DB still has the old path, but the embedding is keyed by content: a moved file is found."""
    config_file, photos = scanned
    moved = photos.parent / "elsewhere" / "kitty.jpg"
    moved.parent.mkdir()
    shutil.copyfile(photos / "cat.jpg", moved)
    hits = ranked(run(config_file, "similar", str(moved), "--json"))
    assert Path(hits[0]["path"]).name == "cat.jpg" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_unscanned_photo_is_embedded_on_the_fly(scanned: tuple[Path, Path], tmp_path: Path) -> None:
    config_file, photos = scanned
    new = tmp_path / "new.jpg"
    with Image.open(photos / "cat.jpg") as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(new, quality=80)
    hits = ranked(run(config_file, "similar", str(new), "--json"))
    assert len(hits) == 6 and all(h["score"] < 0.9999 for h in hits)  # it is not in the DB itself


def test_text_search_with_an_image_only_model_is_a_clear_error(
    tiny: dict[str, Path], photos: Path, tmp_path: Path
) -> None:
    config_file = embed_config(tmp_path, tiny["dinov2"])
    scan(config_file, photos)
    result = run(config_file, "search", "a dog")
    assert isinstance(result.exception, ConfigError)
    assert "cannot search by text" in str(result.exception)
    hits = ranked(run(config_file, "similar", str(photos / "coffee.png"), "--json"))  # similarity still works
    assert Path(hits[0]["path"]).name == "coffee.png"


def test_search_before_any_scan_says_what_to_do(tiny: dict[str, Path], tmp_path: Path) -> None:
    config_file = embed_config(tmp_path, tiny["clip"])
    result = run(config_file, "search", "a dog")
    assert isinstance(result.exception, PhototagError) and "run `phototag scan` first" in str(
        result.exception
    )
    StateDB(tmp_path / "state.db").close()
    result = run(config_file, "search", "a dog")
    assert isinstance(result.exception, PhototagError) and "no photos embedded" in str(result.exception)


def test_end_to_end_through_the_phototag_command(
    tiny: dict[str, Path], photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The real entry point with the builtin embed and search plugins: scan, search, and a clean error."""
    from phototag.cli import main

    monkeypatch.setenv("PHOTOTAG_PLUGINS", "embed,search")
    config_file = embed_config(tmp_path, tiny["clip"])
    assert main(["-q", "-c", str(config_file), "scan", str(photos)]) == 0
    capsys.readouterr()
    assert main(["-q", "-c", str(config_file), "similar", str(photos / "astronaut.jpg"), "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert Path(hits[0]["path"]).name == "astronaut.jpg" and len(hits) == 6
    embed_config(tmp_path, tiny["dinov2"])  # the same file, now an image-only model
    assert main(["-q", "-c", str(config_file), "scan", str(photos)]) == 0
    capsys.readouterr()
    assert main(["-q", "-c", str(config_file), "search", "a dog"]) == 2  # a configuration problem
    err = capsys.readouterr().err
    assert "cannot search by text" in err and "Traceback" not in err
