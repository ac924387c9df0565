"""Resolve a task plugin's ``model:`` setting to an analyzer class.

A bundled name (weights that a pip package carries) picks the bundled backend; anything else is a Hugging Face
hub id or a local model folder, loaded through transformers. An analyzer class is constructed as
``cls(name, settings, config)`` where ``settings`` is validated against ``cls.Settings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

from ..config import Config
from ..errors import ConfigError
from ..types import Analyzer


def import_string(dotted: str) -> Any:
    module, _, attr = dotted.rpartition(".")
    return getattr(import_module(module), attr)


def build_analyzer(
    name: str,
    config: Config,
    default_model: str,
    bundled: Mapping[str, str],
    transformers_backend: str | None,
) -> Analyzer:
    raw = config.plugins.get(name) or {}
    model = str(raw.get("model", default_model)) if isinstance(raw, Mapping) else default_model
    if model in bundled:
        cls = import_string(bundled[model])
    elif transformers_backend is not None:
        cls = import_string(transformers_backend)
    else:
        raise ConfigError(
            f"unknown model {model!r}; this plugin offers: {', '.join(sorted(bundled))}",
            f"plugins.{name}.model",
            config.where(f"plugins.{name}.model"),
        )
    settings = config.plugin_settings(name, cls.Settings)
    analyzer: Analyzer = cls(name, settings, config)
    return analyzer
