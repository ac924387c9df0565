"""Find, load and share Hugging Face models: a hub id or a local folder -> one loaded model per device.

Every transformers backend goes through this module:

- :func:`resolve_model` turns the configured ``model:`` (a hub id such as ``openai/clip-vit-base-patch32``
  or a folder with a ``config.json``) into a :class:`ModelSource`: a local folder plus a revision that changes
  whenever the weights do. Hub ids are looked up in the Hugging Face cache first (``HF_HUB_CACHE``,
  ``HF_HOME``); a download is attempted only when ``HF_HUB_OFFLINE`` is not set. Anything that cannot be found
  raises ONE :class:`~phototag.errors.ModelUnavailableError` that names the model, the places looked and how
  to provide it.
- :func:`load_model` loads ``auto_class.from_pretrained(folder)`` once per (model, revision, class, device,
  dtype, kwargs) in :func:`phototag.models.shared_pool`, so classify and embed on the same CLIP share one
  copy.
- :func:`load_processor` and :func:`load_config` cache processors and configs the same way (they are cheap and
  device-independent, so they live in a small dict, not in the model pool).

Why one module of ~460 lines: resolving a model (folder, cache, hub), checking its files, sharing loaded
weights and the lazy source used by fingerprints are one policy (what is available offline and how that is
told to the user).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelUnavailableError
from ..models import shared_pool
from ..types import Device, ModelInfo

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Weight files transformers can load; one of them must be present for a folder to count as a model.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Formats we never load: skipping them keeps a hub download to what torch needs.
_IGNORE_PATTERNS = [
    "*.h5", "*.msgpack", "*.onnx", "*.onnx_data", "*.ot", "*.tflite", "*.gguf", "*.mlmodel", "*.pb",
    "onnx/*", "coreml/*", "openvino/*", "tf_model*", "flax_model*", "rust_model*", "*.mlpackage/*",
]  # fmt: skip
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ModelSource:
    """A model that exists on this machine.

    ``id`` is what was configured (hub id or folder), ``path`` a local folder with ``config.json`` (the folder
    itself, or the snapshot folder in the HF cache), ``revision`` the hub commit hash, or for a local folder a
    short hash of its config and its weight files' names, sizes and mtimes.
    """

    id: str
    path: Path
    revision: str


# -- where models live ---------------------------------------------------------------------------------------


def hf_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The hub cache folder, read from the environment now (not at import): ``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``."""
    env = os.environ if environ is None else environ
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def is_offline(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    env = os.environ if environ is None else environ
    return any(env.get(n, "").strip().lower() in _TRUE for n in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or "\\" in model or not _HUB_ID.match(model)


def _how_to_fix(model: str) -> str:
    return (
        "To provide it: run once with network access (phototag downloads it into the cache); or copy a "
        "cache that has it and point HF_HOME (or HF_HUB_CACHE) at it; or run "
        f"`huggingface-cli download {model}` on a machine with access and copy the cache; or set "
        f"plugins.<task>.model to a local folder holding config.json and the weights (model.safetensors)."
    )


def _check_folder(folder: Path, model: str, what: str) -> None:
    """Raise a clear error unless ``folder`` holds a readable config.json and a weights file."""
    config = folder / "config.json"
    if not config.is_file():
        raise ModelUnavailableError(
            f"model {model!r}: {what} {folder} has no config.json, so it is not a transformers model folder. "
            "Point plugins.<task>.model at the folder that holds config.json (save it with save_pretrained "
            "or `huggingface-cli download MODEL --local-dir DIR`)."
        )
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelUnavailableError(
            f"model {model!r}: {config} is not readable JSON ({e}). The folder is damaged: download or save "
            "the model again."
        ) from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise ModelUnavailableError(
            f"model {model!r}: {config} has no model_type, so transformers cannot tell which model it is. "
            "The folder is damaged or not a transformers model: download or save the model again."
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ModelUnavailableError(
            f"model {model!r}: {what} {folder} has config.json but no weights ({', '.join(WEIGHT_FILES)}). "
            "The copy is incomplete: download or save the model again."
        )


def _folder_revision(folder: Path) -> str:
    """A short hash of config.json and the weight files' names, sizes and mtimes (cheap: no weights read)."""
    h = hashlib.blake2b(digest_size=6)
    h.update((folder / "config.json").read_bytes())
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin") or f.name in WEIGHT_FILES:
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "local-" + h.hexdigest()


def resolve_model(model: str, revision: str | None = None, *, download: bool = True) -> ModelSource:
    """Find ``model`` (hub id or folder) on this machine, downloading it only when the hub may be used and
    ``download`` is on (off: local folders and the HF cache only, for ``fingerprint()``/``model_info()``, which
    must stay offline and fast).

    Raises :class:`ModelUnavailableError` naming the model, the places looked (the folder, the HF cache) and
    how to provide it. Never raises anything else for a missing or damaged model.
    """
    model = str(model).strip()
    if not model:
        raise ModelUnavailableError("no model configured: set plugins.<task>.model to a hub id or a folder")
    folder = Path(model).expanduser()
    if folder.is_dir():
        _check_folder(folder, model, "folder")
        return ModelSource(model, folder.resolve(), _folder_revision(folder))
    if _looks_like_path(model):
        raise ModelUnavailableError(
            f"model {model!r}: the folder {folder.resolve()} does not exist (and {model!r} is not a hub id "
            "like 'openai/clip-vit-base-patch32'). Check the path in plugins.<task>.model."
        )
    return _resolve_hub(model, revision, download)


def _resolve_hub(model: str, revision: str | None, download: bool = True) -> ModelSource:
    from huggingface_hub import snapshot_download

    cache = hf_cache_dir()
    offline = is_offline() or not download
    path: str | None = None
    try:
        path = str(snapshot_download(model, revision=revision, cache_dir=cache, local_files_only=True))
    except Exception:  # not in the cache (or a partial cache entry): fall through to a download
        path = None
    if path is not None and Path(path).is_dir():
        try:
            _check_folder(Path(path), model, "cached copy")
        except ModelUnavailableError:
            if offline:
                raise
            path = None  # incomplete cache entry: let a download complete it
    reason = ""
    if path is None and not offline:
        log.info("downloading %s from the Hugging Face hub into %s", model, cache)
        try:
            path = _download(model, revision, cache)
        except Exception as e:  # network, DNS, 404, gated: all the same to the user here
            reason = _short_reason(e)
    if path is None:
        looked = [
            f"the Hugging Face cache {cache} (from HF_HUB_CACHE / HF_HOME)",
            f"a local folder {Path(model).absolute()}",
        ]
        if offline:
            looked.append("not the hub: HF_HUB_OFFLINE is set")
        else:
            looked.append(f"the hub: {reason or 'download failed'}")
        raise ModelUnavailableError(
            f"model {model!r}{f' (revision {revision})' if revision else ''} is not available here. "
            f"Looked in: {'; '.join(looked)}. {_how_to_fix(model)}"
        )
    _check_folder(Path(path), model, "downloaded copy")
    return ModelSource(model, Path(path), Path(path).name)


def _download(model: str, revision: str | None, cache: Path) -> str:
    from huggingface_hub import snapshot_download

    # safetensors first; only a repo without them needs the (larger, pickle-based) .bin files.
    path = str(
        snapshot_download(
            model,
            revision=revision,
            cache_dir=cache,
            ignore_patterns=[*_IGNORE_PATTERNS, "*.bin", "*.pt", "*.pth"],
        )
    )
    if not any((Path(path) / n).is_file() for n in WEIGHT_FILES):
        path = str(
            snapshot_download(model, revision=revision, cache_dir=cache, ignore_patterns=_IGNORE_PATTERNS)
        )
    return path


def _short_reason(e: Exception) -> str:
    name = type(e).__name__
    if name in ("RepositoryNotFoundError", "GatedRepoError"):
        return "no such model on the hub, or it is private/gated (check the id; `huggingface-cli login`)"
    if name == "RevisionNotFoundError":
        return "no such revision on the hub"
    first = str(e).strip().splitlines()[0] if str(e).strip() else name
    return f"{name}: {first}"[:300]


# -- loading -------------------------------------------------------------------------------------------------

_DTYPES = {
    "float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}  # fmt: skip


def torch_dtype(device: Device) -> torch.dtype:
    """The torch dtype for ``device.dtype``; ``auto`` means float16 on CUDA/MPS and float32 on the CPU."""
    import torch

    name = (device.dtype or "auto").lower()
    if name == "auto":
        return torch.float32 if device.kind == "cpu" else torch.float16
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {device.dtype!r}: use float32, float16 or bfloat16")
    return getattr(torch, _DTYPES[name])


def _kwargs_key(kwargs: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in kwargs.items()))


def _class_name(auto_class: Any) -> str:
    return str(getattr(auto_class, "__name__", auto_class))


def model_key(source: ModelSource, auto_class: Any, device: Device, **kwargs: Any) -> Hashable:
    """The :func:`shared_pool` key of a model: equal keys share one loaded copy."""
    dtype = str(torch_dtype(device)).removeprefix("torch.")
    return ("transformers", source.id, source.revision, _class_name(auto_class), device.torch_device, dtype,
            _kwargs_key(kwargs))  # fmt: skip


def load_model(source: ModelSource, auto_class: Any, device: Device, **kwargs: Any) -> Any:
    """``auto_class.from_pretrained(source.path, dtype=..., **kwargs)`` in eval mode on ``device``, loaded
    once and shared through :func:`shared_pool`. Pair every call with :func:`release_model`.

    A folder that transformers cannot load (wrong architecture for ``auto_class``, damaged weights) raises
    :class:`ModelUnavailableError` naming the folder.
    """

    def loader() -> Any:
        _quiet_transformers()
        try:
            model = auto_class.from_pretrained(str(source.path), dtype=torch_dtype(device), **kwargs)
        except Exception as e:
            raise ModelUnavailableError(
                f"model {source.id!r} in {source.path} cannot be loaded as {_class_name(auto_class)}: "
                f"{_short_reason(e)}. Check that it is the right kind of model for this task, or download it "
                "again."
            ) from e
        model.eval()
        return model.to(device.torch_device)

    return shared_pool().acquire(model_key(source, auto_class, device, **kwargs), loader)


def release_model(source: ModelSource, auto_class: Any, device: Device, **kwargs: Any) -> None:
    """Drop one user of a model from :func:`load_model` (it stays cached until the pool unloads idle
    models)."""
    shared_pool().release(model_key(source, auto_class, device, **kwargs))


_small_cache: dict[Hashable, Any] = {}
_small_lock = threading.Lock()


def _cached(key: Hashable, make: Any) -> Any:
    with _small_lock:
        if key not in _small_cache:
            _small_cache[key] = make()
        return _small_cache[key]


def load_processor(source: ModelSource, auto_class: Any = None, **kwargs: Any) -> Any:
    """The processor (``AutoProcessor`` unless ``auto_class`` says otherwise, e.g. ``AutoTokenizer``), cached
    per model revision. A missing or damaged processor raises :class:`ModelUnavailableError` naming the
    folder."""
    if auto_class is None:
        from transformers import AutoProcessor

        auto_class = AutoProcessor

    def make() -> Any:
        _quiet_transformers()
        try:
            return auto_class.from_pretrained(str(source.path), **kwargs)
        except Exception as e:
            raise ModelUnavailableError(
                f"model {source.id!r} in {source.path}: cannot load its {_class_name(auto_class)}: "
                f"{_short_reason(e)}. The folder needs the processor/tokenizer files saved with the model "
                "(preprocessor_config.json, tokenizer files): save or download them again."
            ) from e

    return _cached(
        ("processor", source.id, source.revision, _class_name(auto_class), _kwargs_key(kwargs)), make
    )


def load_config(source: ModelSource) -> Any:
    """The model's ``PretrainedConfig`` (AutoConfig), cached per revision; a bad config is a clear error."""

    def make() -> Any:
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(str(source.path))
        except Exception as e:
            raise ModelUnavailableError(
                f"model {source.id!r}: {source.path / 'config.json'} is not a config this transformers can "
                f"read: {_short_reason(e)}. Upgrade transformers or download the model again."
            ) from e

    return _cached(("config", source.id, source.revision), make)


def model_info(source: ModelSource) -> ModelInfo:
    """Provenance for results: the configured id and the resolved revision."""
    return ModelInfo(source.id, source.revision)


_quiet_done = False


def _quiet_transformers() -> None:
    """No per-load progress bars: phototag runs as a service whose log must not fill with tqdm frames."""
    global _quiet_done
    if not _quiet_done:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        _quiet_done = True


class LazySource:
    """Resolve a configured model on first use, once, thread-safe; never raises from :meth:`peek`.

    Analyzers call :meth:`peek` from ``fingerprint()`` and ``input_size`` (which must be cheap and must not
    raise: the pipeline asks for them for every file) and :meth:`get` from ``load()``. A failure is remembered
    for ``retry_after`` seconds so that a missing model costs one lookup, not one per file, while a daemon
    still notices a model that was copied in later.
    """

    def __init__(
        self,
        model: str,
        revision: str | None = None,
        retry_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.revision = revision
        self.retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._source: ModelSource | None = None
        self._error: ModelUnavailableError | None = None
        self._failed_at = 0.0
        self._peek_failed_at: float | None = None

    def get(self) -> ModelSource:
        """The resolved source; raises :class:`ModelUnavailableError` (remembered for ``retry_after``)."""
        with self._lock:
            if self._source is not None:
                return self._source
            if self._error is not None and self._clock() - self._failed_at < self.retry_after:
                raise self._error
            try:
                self._source = resolve_model(self.model, self.revision)
            except ModelUnavailableError as e:
                self._error, self._failed_at = e, self._clock()
                raise
            self._error = None
            return self._source

    def peek(self) -> ModelSource | None:
        """The resolved source if it is on this machine (a folder, the HF cache), else ``None``. Never
        downloads: ``fingerprint()`` and ``model_info()`` call it, and ``doctor --no-load`` and the daemon's
        start-up must stay offline and fast. A miss is remembered for ``retry_after`` seconds."""
        with self._lock:
            if self._source is not None:
                return self._source
            if self._peek_failed_at is not None and self._clock() - self._peek_failed_at < self.retry_after:
                return None
        try:
            source = resolve_model(self.model, self.revision, download=False)
        except ModelUnavailableError:
            with self._lock:
                self._peek_failed_at = self._clock()
            return None
        with self._lock:
            if self._source is None:
                self._source = source
            return self._source

    @property
    def revision_or_unresolved(self) -> str:
        """For fingerprints: the revision, or a marker while the model is not available."""
        source = self.peek()
        return source.revision if source is not None else "unresolved"


def processor_input_size(source: ModelSource | None, default: int = 224) -> int:
    """The shorter side in pixels the model's image processor works at (its crop or resize size), read from
    ``preprocessor_config.json`` without loading anything; ``default`` when that cannot be told."""
    if source is None:
        return default
    try:
        data = json.loads((source.path / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
    sizes: list[int] = []
    for key in ("crop_size", "size"):
        value = data.get(key)
        if isinstance(value, int):
            sizes.append(value)
        elif isinstance(value, Mapping):
            sizes += [int(v) for k, v in value.items() if k in ("shortest_edge", "height", "width") and v]
    return max(sizes) if sizes else default
