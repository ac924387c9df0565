"""Helpers for plugin authors' tests: real photos, real decoding, a real pipeline around your plugin.

    from phototag.testing import sample_photos, decoded, run_plugin

    def test_my_analyzer(tmp_path):
        photos = sample_photos(tmp_path / "photos")          # cat.jpg, motorcycle.jpg, ... from installed packages
        outcomes = run_plugin(MyPlugin(), photos, tmp_path)  # the real pipeline: decode, analyze, write, record
        assert outcomes["cat.jpg"].status == "tagged"

``run_plugin`` loads only your plugin plus the JSON sidecar writer (no exiftool needed) unless you ask for
more with ``plugins=``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import hookimpl
from .config import ImageSettings, load_config
from .files import iter_photos, make_photo
from .images import decode
from .manager import get_plugin_manager, registered
from .pipeline import Outcome, Pipeline
from .samples import write_samples
from .types import Analyzer, DecodedImage


class _AnalyzerPlugin:
    """An inline plugin that registers one analyzer object."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer

    @hookimpl
    def register_analyzers(self, register: Any, config: Any) -> None:
        register(self.analyzer)


def sample_photos(folder: Path) -> Path:
    """Write the real sample photos into ``folder`` and return it."""
    write_samples(folder)
    return folder


def decoded(path: Path, min_side: int = 224, settings: ImageSettings | None = None) -> DecodedImage:
    """Decode ``path`` exactly as the pipeline does, for calling ``analyzer.analyze([...])`` directly."""
    return decode(make_photo(Path(path)), min_side, settings or ImageSettings())


def run_plugin(
    plugin: object,
    paths: Path | Iterable[Path],
    workdir: Path,
    *,
    plugins: str = "sidecar",
    overrides: Mapping[str, str] | None = None,
    name: str = "under-test",
) -> dict[str, Outcome]:
    """Run the real pipeline over ``paths`` with ``plugin`` registered; returns outcomes by file name.

    ``plugin`` is a plugin (module or object with ``@hookimpl`` functions) or an analyzer object; anything
    else is a TypeError.

    ``plugins`` is the comma-separated allow-list of other plugins to load (``PHOTOTAG_PLUGINS`` syntax);
    ``overrides`` are dotted config keys (``{"plugins.mine.threshold": "0.3"}``). State lives in ``workdir``.
    """
    if isinstance(plugin, Analyzer):  # an analyzer object: register it through an inline plugin
        plugin = _AnalyzerPlugin(plugin)
    elif not any(hasattr(getattr(plugin, h, None), "phototag_impl") for h in dir(plugin)):
        raise TypeError(
            f"run_plugin needs a plugin (a module or object with @hookimpl functions) or an analyzer; "
            f"{plugin!r} is neither (an analyzer needs name, task, needs, input_size, model_info, "
            "fingerprint, load, analyze and unload)"
        )
    sets = {"state_db": str(workdir / "state.db"), **(overrides or {})}
    config = load_config(None, overrides=sets, environ={})
    pm, _ = get_plugin_manager({"PHOTOTAG_PLUGINS": plugins})
    roots = [paths] if isinstance(paths, Path) else list(paths)
    outcomes: dict[str, Outcome] = {}
    with registered(pm, plugin, name), Pipeline.from_config(config, pm) as pipeline:
        pipeline.run(iter_photos(roots, config), on_outcome=lambda o: outcomes.__setitem__(o.path.name, o))
        pipeline.state.close()
    return outcomes
