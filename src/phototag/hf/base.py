"""What every transformers analyzer shares: its identity, and the helpers that identity is built from.

:class:`HFAnalyzer` holds the name, settings and config an analyzer is constructed with (``cls(name, settings,
config)``), the lazily resolved model (:class:`~phototag.hf.loading.LazySource`), and answers ``input_size``,
``model_info()`` and ``fingerprint()`` without loading anything and without raising (the pipeline asks for them
for every file). Each task module subclasses it and adds ``load``, ``analyze`` and ``unload``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from ..config import Config
from ..errors import PhototagError
from ..types import Device, ModelInfo, Needs, fingerprint_of
from .loading import LazySource, model_info, processor_input_size


class ModelSettings(Protocol):
    """The settings every transformers analyzer has: which model, at which hub revision."""

    @property
    def model(self) -> str: ...

    @property
    def revision(self) -> str | None: ...


SettingsT = TypeVar("SettingsT", bound=ModelSettings)
T = TypeVar("T")


def cpu_float32(device: Device) -> Device:
    """``device``, forced to float32 on the CPU: half precision there is slower and less accurate."""
    return replace(device, dtype="float32") if device.kind == "cpu" else device


def settings_fingerprint(kind: str, settings: Any, source: LazySource) -> str:
    """A fingerprint of the resolved model revision and every setting that changes results (not ``enabled``
    or ``device``). Cheap and never raises: ``source`` resolves once and remembers a failure."""
    data = settings.model_dump(mode="json", exclude={"enabled", "device"})
    return fingerprint_of(kind, data, source.revision_or_unresolved)


class HFAnalyzer(Generic[SettingsT]):
    """Identity of an analyzer on a transformers model; construction is cheap (nothing is resolved or loaded).

    Subclasses set ``Settings``, ``task``, ``fingerprint_kind`` and, where they differ, ``needs`` and
    ``default_input_size``.
    """

    needs = Needs(min_ram_mb=1024, min_vram_mb=1024)
    fingerprint_kind: ClassVar[str]
    """First part of :meth:`fingerprint` ("hf-caption"): results of different tasks never share a key."""
    default_input_size: ClassVar[int] = 224
    """``input_size`` when neither the settings nor the model's image processor tell."""
    info_names_revision: ClassVar[bool] = True
    """While the model is unavailable, ``model_info()`` reports the configured revision (True) or none."""

    def __init__(self, name: str, settings: SettingsT, config: Config) -> None:
        self.name = name
        self.settings = settings
        self.config = config
        self._source = LazySource(settings.model, settings.revision)

    @property
    def input_size(self) -> int:
        """``settings.input_size`` when the settings have one and it is set, else the size the model's image
        processor works at (read from its ``preprocessor_config.json``), else ``default_input_size``."""
        configured = getattr(self.settings, "input_size", None)
        if configured is not None:
            return int(configured)
        return processor_input_size(self._source.peek(), default=self.default_input_size)

    def model_info(self) -> ModelInfo:
        """The configured id and the resolved revision; before the model is found, what was configured."""
        source = self._source.peek()
        if source is not None:
            return model_info(source)
        revision = (self.settings.revision or "") if self.info_names_revision else ""
        return ModelInfo(self.settings.model, revision)

    def fingerprint(self) -> str:
        """``fingerprint_kind``, the resolved revision and every setting that changes results."""
        return settings_fingerprint(self.fingerprint_kind, self.settings, self._source)

    def _require(self, loaded: T | None) -> T:
        """``loaded`` (a model, a generator), or the error for ``analyze()`` before ``load()``."""
        if loaded is None:
            raise PhototagError(f"analyzer {self.name}: analyze() called before load()")
        return loaded

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.settings.model!r})"
