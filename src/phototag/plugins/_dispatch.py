"""Resolve a task plugin's ``model:`` setting to an analyzer class.

A bundled name (weights that a pip package carries) picks the bundled backend; anything else is a Hugging Face
hub id or a local model folder, loaded through transformers. An analyzer class is constructed as
``cls(name, settings, config)`` where ``settings`` is validated against ``cls.Settings``. A plugin with server
URLs (``plugins.<name>.remote`` or ``remote.urls``) is a :class:`~phototag.remote.RemoteAnalyzer` instead: its
model runs on those servers, with their settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any, cast

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
    # phototag.remote (and httpx, a fifth of a second to import) only when some server is configured
    remote_set = (isinstance(raw, Mapping) and raw.get("remote") is not None) or bool(config.remote.urls)
    urls: tuple[str, ...] = ()
    if remote_set:
        from ..remote import remote_urls

        urls = remote_urls(name, config)
    if urls:  # the model runs on phototag servers (plugins.<name>.remote, remote.urls): nothing loads here
        # task and input_size are read-only there (the server's), where the protocol declares plain attributes
        from ..remote import RemoteAnalyzer

        return cast(Analyzer, RemoteAnalyzer.from_config(name, urls, config))
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
