"""Helpers shared by the transformers backend tests (``test_hf_*.py``): the CPU they run on, decoded sample
photos, analyzers built from a real config file the way the plugins build them, and the real pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from phototag.config import Config, load_config
from phototag.files import make_photo
from phototag.images import decode
from phototag.manager import get_plugin_manager
from phototag.pipeline import Pipeline, Summary
from phototag.types import Analysis, Analyzer, DecodedImage, Device

CPU = Device("cpu", threads=1, reason="tests")


def sample_paths(folder: Path) -> list[Path]:
    """The sample photos in ``folder`` (``.jpg``, ``.png``), in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))


def decoded_samples(folder: Path, size: int) -> list[DecodedImage]:
    """The sample photos in ``folder`` through the real decoder (shorter side ``size``, orientation applied)."""
    config = load_config(None, environ={})
    return [decode(make_photo(p), size, config.image) for p in sample_paths(folder)]


def config_with(tmp_path: Path, plugins: dict[str, Any], **top: Any) -> Config:
    """A real config file with these plugin sections, loaded the way the CLI loads it."""
    doc = {"state_db": str(tmp_path / "state" / "state.db"), "plugins": plugins, **top}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_config(path, environ={})


def registered_by(plugin: Any, config: Config) -> list[Analyzer]:
    """The analyzers a plugin module registers for ``config``."""
    got: list[Analyzer] = []
    plugin.register_analyzers(register=got.append, config=config)
    return got


def make(plugin: Any, tmp_path: Path, **settings: Any) -> Any:
    """The analyzer the plugin module registers for ``plugins.<name>: settings`` (enabled)."""
    config = config_with(tmp_path, {plugin.NAME: {"enabled": True, **settings}})
    (analyzer,) = registered_by(plugin, config)
    return analyzer


def run(analyzer: Any, images: list[DecodedImage]) -> list[Analysis]:
    """Load ``analyzer`` on the CPU, analyze ``images`` in one batch, unload."""
    analyzer.load(CPU)
    try:
        return list(analyzer.analyze(images))
    finally:
        analyzer.unload()


def scan(
    tmp_path: Path, plugins: dict[str, Any], enabled: str, photos: Path, times: int = 1
) -> list[Summary]:
    """Run the real pipeline ``times`` over the sample photos in ``photos``: config file with ``plugins``,
    batches of 4 on the CPU, the plugin modules ``enabled`` (``"caption,sidecar"``). One summary a run."""
    config = config_with(tmp_path, plugins, batch_size=4, device="cpu")
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": enabled})
    paths = sample_paths(photos)
    with Pipeline.from_config(config, pm) as pipeline:
        summaries = [pipeline.run(paths) for _ in range(times)]
        pipeline.state.close()
    return summaries
