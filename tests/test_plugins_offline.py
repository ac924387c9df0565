"""The classify, detect, faces and embed plugins through a real pluggy manager: which analyzer each registers
for which configuration. Registering constructs analyzers only; no model loads here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from phototag.bundled.dlibfaces import DlibFaceAnalyzer
from phototag.bundled.efficientnet import EfficientNetClassifier, EfficientNetEmbedder
from phototag.bundled.ssd import SSDDetector
from phototag.config import Config, PluginSettings
from phototag.errors import ConfigError
from phototag.manager import collect, get_plugin_manager
from phototag.models import shared_pool
from phototag.types import Analyzer

OFFLINE = ("classify", "detect", "faces", "embed")


def register(config: Config, plugins: str = ",".join(OFFLINE)) -> tuple[dict[str, Any], dict[str, Exception]]:
    """Analyzers the named plugins register for ``config``, and the errors they raised, by plugin name."""
    pm, statuses = get_plugin_manager({"PHOTOTAG_PLUGINS": plugins})
    loaded = {s.name for s in statuses if s.status == "loaded"}
    assert set(plugins.split(",")) <= loaded, statuses
    errors: dict[str, Exception] = {}
    got = collect(pm, "register_analyzers", errors.__setitem__, config=config)
    return {name: analyzer for name, analyzer in got}, errors


def test_defaults_register_the_bundled_analyzers(make_config: Callable[..., Config]) -> None:
    loads = shared_pool().loads
    analyzers, errors = register(make_config())
    assert errors == {}
    expected = {"classify": EfficientNetClassifier, "detect": SSDDetector, "faces": DlibFaceAnalyzer,
                "embed": EfficientNetEmbedder}  # fmt: skip
    assert {n: type(a) for n, a in analyzers.items()} == expected
    for name, analyzer in analyzers.items():
        assert isinstance(analyzer, Analyzer)
        assert analyzer.name == name
        assert issubclass(type(analyzer).Settings, PluginSettings)
        assert analyzer.input_size > 0 and analyzer.fingerprint()
    assert (analyzers["classify"].task, analyzers["embed"].task, analyzers["detect"].task) == (
        "classify",
        "embed",
        "detect",
    )
    assert analyzers["classify"].model_info().id == analyzers["embed"].model_info().id == "efficientnet-lite0"
    assert shared_pool().loads == loads  # constructing is cheap: nothing loaded


def test_settings_come_from_the_plugin_section(make_config: Callable[..., Config]) -> None:
    sets = {"classify.threshold": "0.4", "classify.top_k": "2", "detect.max_boxes": "3",
            "faces.upsample": "1", "embed.resize": "crop"}  # fmt: skip
    config = make_config(**{f"plugins.{k}": v for k, v in sets.items()})
    analyzers, errors = register(config)
    assert errors == {}
    assert (analyzers["classify"].settings.threshold, analyzers["classify"].settings.top_k) == (0.4, 2)
    assert analyzers["detect"].settings.max_boxes == 3
    assert analyzers["faces"].settings.upsample == 1
    assert analyzers["embed"].settings.resize == "crop"
    defaults, _ = register(make_config())
    assert analyzers["classify"].fingerprint() != defaults["classify"].fingerprint()


def test_a_disabled_plugin_registers_nothing(make_config: Callable[..., Config]) -> None:
    analyzers, errors = register(
        make_config(**{"plugins.detect.enabled": "false", "plugins.faces.enabled": "no"})
    )
    assert errors == {}
    assert set(analyzers) == {"classify", "embed"}


def test_only_the_allowed_plugins_load(make_config: Callable[..., Config]) -> None:
    analyzers, _ = register(make_config(), plugins="faces")
    assert set(analyzers) == {"faces"}


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("plugins.classify.threshold", "2", ["plugins.classify.threshold", "less than or equal to 1"]),
        ("plugins.detect.colour", "red", ["plugins.detect.colour", "unknown key"]),
        ("plugins.faces.model", "retinaface", ["plugins.faces.model", "opencv-haar"]),
        ("plugins.embed.resize", "stretch", ["plugins.embed.resize", "squash"]),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(
    make_config: Callable[..., Config], key: str, value: str, words: list[str]
) -> None:
    plugin = key.split(".")[1]
    analyzers, errors = register(make_config(**{key: value}))
    assert plugin not in analyzers
    assert set(errors) == {plugin}
    assert isinstance(errors[plugin], ConfigError)
    for word in words:
        assert word in str(errors[plugin])
    assert set(analyzers) == set(OFFLINE) - {plugin}  # the other plugins are unaffected


def test_a_hub_id_goes_to_the_transformers_backend(make_config: Callable[..., Config]) -> None:
    from phototag.hf.classify import HFClassifier

    config = make_config(**{"plugins.classify.model": "openai/clip-vit-base-patch32"})
    analyzers, errors = register(config, plugins="classify")
    assert errors == {}
    assert type(analyzers["classify"]) is HFClassifier
