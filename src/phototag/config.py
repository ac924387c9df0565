"""YAML -> validated, frozen configuration.

Every error names the dotted key, the file and line, and what is allowed. Each plugin declares its own settings
model and reads only its own section (``plugins.<name>``) through :meth:`Config.plugin_settings`.

Overrides, strongest first: CLI ``--set key=value``, environment ``PHOTOTAG_<KEY>`` (``__`` for nesting, e.g.
``PHOTOTAG_METADATA__MODE=embed``), the config file, the built-in defaults (equal to the shipped config.yaml).
An error in an override names where it came from: ``--set`` or the environment variable.

Why one module of ~440 lines: the settings models, their validation messages and the loader that maps every
error back to its file line, --set or variable work on the same data; split, each part would need the others'
internals.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

M = TypeVar("M", bound=BaseModel)

ENV_PREFIX = "PHOTOTAG_"
DEFAULT_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif",
    ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf",
)  # fmt: skip


def _state_home() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "phototag"


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class PluginSettings(Section):
    """Base for a plugin's own settings; every plugin section has ``enabled``."""

    enabled: bool = True
    """Run this plugin."""
    device: str | None = None
    """Per-plugin device override (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); defaults to the global."""
    remote: tuple[str, ...] | None = None
    """URLs of ``phototag serve`` servers that run this analyzer instead of this machine (tried in order; the
    server's settings for it apply); unset: ``remote.urls``; ``[]``: run it here."""


class MetadataSettings(Section):
    mode: Literal["sidecar", "embed"] = "sidecar"
    """``sidecar`` writes ``photo.jpg.xmp`` beside the photo; ``embed`` writes into the file (pixels untouched)."""
    sidecar_name: Literal["append", "replace"] = "append"
    """``append``: ``photo.jpg.xmp`` (darktable, digiKam, Immich); ``replace``: ``photo.xmp`` (Lightroom, C1)."""
    keyword_root: str = "AI"
    """Root of phototag's keyword hierarchy (``AI|Animals|Cat``). Empty string: no root."""
    flat_ancestors: bool = False
    """Also write each keyword's ancestors below the root (``Animals``, ``Pets``) as flat keywords in
    dc:subject, as Lightroom's "include on export" does. Off: the keyword only (digiKam, DxO). Never the root."""
    sync_user_hierarchy: bool = True
    """Copy your hierarchy entries between lr:hierarchicalSubject and digiKam:TagsList where one list lacks
    them: Lightroom and darktable write only the first, digiKam and Immich read TagsList first, so without the
    copies your hierarchy vanishes there. The copies are recorded as phototag's (untag removes them)."""
    caption: Literal["keep", "replace"] = "keep"
    """``keep`` never overwrites a caption (or a VQA answer field) phototag did not write; ``replace`` does."""
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    """Tags below this score stay in the JSON sidecar but are not written as keywords."""
    json_sidecar: bool = True
    """Write ``photo.jpg.phototag.json`` with every score, box and model id."""
    xmp: bool = True
    """Write XMP/EXIF through exiftool. Off: JSON only."""
    write_read_only: bool = False
    """Rewrite sidecars and photos that have no write permission bit (``chmod a-w``). Off: such files are
    reported and left alone."""


class ExiftoolSettings(Section):
    path: str = "exiftool"
    timeout: float = Field(30.0, gt=0)
    """Seconds a single exiftool command may take before the process is killed and restarted."""


class ImageSettings(Section):
    max_megapixels: float = Field(120.0, gt=0)
    """Larger images are refused as possible decompression bombs."""
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS

    @field_validator("extensions")
    @classmethod
    def _dotted_lower(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in v)


class WatchSettings(Section):
    stability_delay: float = Field(2.0, ge=0)
    """Seconds without events and with unchanged size/mtime before a new file is processed."""
    rescan_interval: float = Field(900.0, ge=0)
    """Seconds between reconciling rescans (0: only at start)."""
    polling: bool = False
    """Poll instead of inotify for every folder (network shares); per folder with ``poll_folders``."""
    poll_folders: tuple[Path, ...] = ()
    """Watched folders (or folders above them) to poll even when ``polling`` is off: network shares (NFS, SMB),
    where inotify does not see other hosts' writes."""
    poll_interval: float = Field(5.0, gt=0)
    """Seconds between polls of a polled folder; each poll stats every file below it."""
    idle_unload: float = Field(600.0, ge=0)
    """Seconds without work before models are unloaded (0: never)."""
    open_write_timeout: float = Field(300.0, ge=0)
    """Seconds a file that a writer still holds open (inotify saw writes but no close) waits before it is
    processed anyway; a partial file then fails to decode, is not tagged, and is retried when it changes."""
    inotify_watch_limit: int = Field(0, ge=0)
    """Most inotify watches (one per folder) phototag may use; 0: the kernel's limit. Folders beyond it are
    polled. Leaves room for other programs of the same user (each watch costs about 1 KB of kernel memory)."""
    max_attempts: int = Field(5, ge=1)
    """Tries for a photo that fails for a passing reason (file busy, disk full, exiftool timeout)."""
    retry_delay: float = Field(30.0, ge=0)
    """Seconds before the first retry of such a failure; doubles each time, at most an hour."""
    batch_timeout: float = Field(900.0, gt=0)
    """A batch running longer than this is taken as hung: the daemon stops its systemd watchdog pings, so
    systemd restarts it; the batch's photos are then retried one at a time."""
    drain_timeout: float = Field(20.0, ge=0)
    """Seconds SIGTERM waits for the batch in progress; after that its photos go back to the queue and the
    daemon exits. Keep it below the unit's TimeoutStopSec."""


IMMICH_MODELS: dict[str, str] = {
    "ViT-B-32__openai": "openai/clip-vit-base-patch32",
    "ViT-B-16__openai": "openai/clip-vit-base-patch16",
    "ViT-L-14__openai": "openai/clip-vit-large-patch14",
    "ViT-L-14-336__openai": "openai/clip-vit-large-patch14-336",
    "ViT-B-16-SigLIP__webli": "google/siglip-base-patch16-224",
}
"""Immich's standard CLIP model names -> the transformers model with the same weights."""


class ServeSettings(Section):
    """``phototag serve`` (and ``phototag watch --serve``): the HTTP service."""

    host: str = "127.0.0.1"
    """Address to listen on. Any other than a loopback address needs ``api_key`` (or ``allow_unauthenticated``)."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port (0: any free port)."""
    api_key: str | None = None
    """Bearer token every request must carry (``Authorization: Bearer KEY``), except ``/healthz`` and ``/ping``.
    Or set PHOTOTAG_API_KEY. Unset: no authentication (only allowed on a loopback address)."""
    allow_unauthenticated: bool = False
    """Serve a non-loopback address without an API key (behind a reverse proxy that authenticates, or for
    Immich, which sends no key). Anyone who can reach the port can then use the models."""
    immich_models: Mapping[str, str] = Field(default_factory=lambda: dict(IMMICH_MODELS))
    """Immich model names -> the model (hub id or folder) of the configured analyzer that answers them. A name
    missing here is refused, never answered by another model."""
    batch_size: int = Field(8, ge=1, le=1024)
    """Most images one analyzer call gathers from concurrent requests."""
    batch_wait_ms: float = Field(5.0, ge=0, le=10_000)
    """How long the first request of a batch waits for others to join it."""
    queue_limit: int = Field(64, ge=1)
    """Requests waiting per analyzer; beyond it requests get 503 with Retry-After."""
    max_body_mb: float = Field(32.0, gt=0)
    """Largest request body (MB); larger ones get 413 before they are read."""
    deadline_s: float = Field(60.0, gt=0)
    """Seconds a request may wait and run before it gets 504 (its work is dropped if it has not started)."""
    fetch_urls: bool = False
    """Fetch images given as http(s) URLs. Off: only uploads and data URLs are accepted."""
    fetch_allowed_hosts: tuple[str, ...] = ()
    """Host names URLs may point at when ``fetch_urls`` is on; private, loopback and link-local addresses are
    refused even when listed."""
    fetch_max_mb: float = Field(32.0, gt=0)
    """Largest image fetched from a URL (MB)."""
    fetch_timeout_s: float = Field(10.0, gt=0)
    """Seconds a URL fetch may take in all (redirects included)."""


class RemoteSettings(Section):
    """Remote analyzers: ``scan``/``watch`` send decoded, downscaled photos to ``phototag serve`` servers."""

    urls: tuple[str, ...] = ()
    """Servers (``http://gpu-box:8000``) that run every model plugin without its own ``remote``, tried in
    order: the next one when one is down. Empty: the models run here."""
    api_key: str | None = None
    """The servers' ``serve.api_key`` (or set PHOTOTAG_REMOTE__API_KEY)."""
    timeout: float = Field(120.0, gt=0)
    """Seconds one request (a batch of photos) may take."""
    max_retry_wait: float = Field(60.0, ge=0)
    """Most seconds spent waiting on busy servers (503 with Retry-After) for one batch before giving up."""


class Config(Section):
    """The whole configuration. ``source`` is where it came from (for messages)."""

    folders: tuple[Path, ...] = ()
    """Folders ``watch`` watches and ``scan`` scans when no PATH is given."""
    exclude: tuple[str, ...] = ("*/@eaDir/*", "*/#recycle/*", "*/.thumbnails/*")
    """Glob patterns (fnmatch on the full path) never processed. Hidden files and folders are always skipped."""
    state_db: Path = Field(default_factory=lambda: _state_home() / "state.db")
    """SQLite database of what was done to which file (default under $XDG_STATE_HOME)."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    device_fallback: bool = True
    """When the configured device cannot be used (no such GPU, too little free memory): ``true`` runs on the
    CPU and logs why; ``false`` refuses to run that model, with the reason."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    threads: int = Field(0, ge=0)
    """Torch threads; 0 picks from the hardware probe."""
    batch_size: int = Field(8, ge=1, le=1024)
    decode_workers: int = Field(2, ge=1, le=64)
    analyze_workers: int = Field(0, ge=0, le=16)
    """Analyzers run at once on a batch (each on the whole batch). 0 picks: 2 when the machine has two or more
    CPU cores, else 1. Models that leave cores idle (dlib's faces use one core; OpenCV and ONNX Runtime release
    Python's lock) then overlap; 1 runs them one after the other."""
    image: ImageSettings = ImageSettings()
    metadata: MetadataSettings = MetadataSettings()
    exiftool: ExiftoolSettings = ExiftoolSettings()
    watch: WatchSettings = WatchSettings()
    serve: ServeSettings = ServeSettings()
    remote: RemoteSettings = RemoteSettings()
    plugins: Mapping[str, Mapping[str, Any]] = Field(default_factory=dict)
    source: str = "<defaults>"
    lines: Mapping[str, int] = Field(default_factory=dict, repr=False)
    origins: Mapping[str, str] = Field(default_factory=dict, repr=False, exclude=True)
    """Dotted key -> the override that set it (``--set`` or the environment variable's name), for messages."""

    @field_validator("folders", "state_db", mode="after")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        if isinstance(v, tuple):
            return tuple(Path(os.path.expandvars(str(p))).expanduser() for p in v)
        return Path(os.path.expandvars(str(v))).expanduser()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)

    def where(self, key: str) -> str:
        """``file:line`` of a dotted key, as precisely as the file allows; an overridden key: the override."""
        return _where(self.source, self.lines, key, self.origins)

    def plugin_settings(self, name: str, model: type[M]) -> M:
        """Validate and return the section ``plugins.<name>`` against the plugin's own settings model."""
        raw = self.plugins.get(name) or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(
                "must be a mapping of settings", f"plugins.{name}", self.where(f"plugins.{name}")
            )
        try:
            return model.model_validate(dict(raw))
        except ValidationError as e:
            raise _config_error(e, self.where, prefix=f"plugins.{name}") from None

    def plugin_enabled(self, name: str, default: bool = True) -> bool:
        raw = self.plugins.get(name) or {}
        return bool(raw.get("enabled", default)) if isinstance(raw, Mapping) else default


def check_device(v: str) -> str:
    v = v.strip().lower()
    kind, _, index = v.partition(":")
    if kind in ("auto", "cpu", "mps") and not index:
        return v
    if kind == "cuda" and (not index or index.isdigit()):
        return v
    raise ValueError("must be auto, cpu, cuda, cuda:N or mps")


# -- loading ------------------------------------------------------------------------------------------------------


MAX_VALUES = 100_000
"""A config expands to at most this many values (YAML aliases can make a few bytes expand to millions)."""


def _line_map(text: str, source: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line of that key in the YAML text. Raises ConfigError for YAML that refers to
    itself or expands (through aliases) to more than :data:`MAX_VALUES` values."""
    lines: dict[str, int] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return lines
    _check_expansion(root, source)
    walked: set[int] = set()  # an aliased node is walked once: its keys' lines are those of its first use

    def walk(node: yaml.Node, prefix: str) -> None:
        if id(node) in walked:
            return
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}.{k.value}" if prefix else str(k.value)
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                key = f"{prefix}.{i}"
                lines[key] = v.start_mark.line + 1
                walk(v, key)

    walk(root, "")
    return lines


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Count the values ``root`` stands for once aliases are expanded (each node counted once, memoised)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(
                "a YAML alias refers to the mapping that contains it: write the value out", source=source
            )
        open_nodes.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total = 1 + sum(size(c) for c in children)
        open_nodes.discard(key)
        if total > MAX_VALUES:
            raise ConfigError(
                f"the file expands to more than {MAX_VALUES:,} values (YAML aliases?): a configuration is much "
                "smaller; write it out",
                source=source,
            )
        sizes[key] = total
        return total

    size(root)


def _where(source: str, lines: Mapping[str, int], key: str, origins: Mapping[str, str] | None = None) -> str:
    """Where ``key`` (or the nearest key above it) was set: an override's name, else ``file:line``."""
    origins = origins or {}
    # set by no one but with overrides below it: `--set metadata.mode.x=1` made metadata.mode a mapping
    made_by = [origin for k, origin in origins.items() if k.startswith(key + ".")]
    if made_by and key not in origins and key not in lines:
        return made_by[-1]
    parts = key.split(".")
    while parts:
        dotted = ".".join(parts)
        if dotted in origins:
            return origins[dotted]
        line = lines.get(dotted)
        if line is not None:
            return f"{source}:{line}" if line else source
        parts.pop()
    return source


LIST_OF = {
    "folders": "folders",
    "exclude": "glob patterns",
    "image.extensions": "file extensions",
    "watch.poll_folders": "folders",
    "serve.fetch_allowed_hosts": "host names",
    "remote.urls": "URLs",
}
"""What the list-valued keys hold, for the message when a single value is given instead of a list."""

_LIST_ERRORS = frozenset({"tuple_type", "list_type", "set_type", "frozen_set_type"})


def _message(err: Any, key: str) -> str:
    """pydantic's message for one error, in the config's words where pydantic's would puzzle a user."""
    if err["type"] in _LIST_ERRORS:
        noun = f"a list of {LIST_OF[key]}" if key in LIST_OF else "a list"
        value = err.get("input")
        if isinstance(value, str | int | float):
            return f"should be {noun} (for just one: [{value}])"
        return f"should be {noun}"
    if err["type"] == "value_error":  # our validators' own words, without pydantic's "Value error, "
        return str(err.get("ctx", {}).get("error", err["msg"]))
    return str(err["msg"])


def _config_error(e: ValidationError, where: Callable[[str], str], prefix: str = "") -> ConfigError:
    msgs = []
    first_key = ""
    for err in e.errors():
        key = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"]))
        first_key = first_key or key
        allowed = ""
        if err["type"] == "extra_forbidden":
            allowed = " (unknown key: check the spelling against config.yaml)"
        got = repr(err.get("input"))
        got = got if len(got) <= 200 else got[:200] + "…"
        msgs.append(f"{where(key)}: {key}: {_message(err, key)}{allowed}, got {got}")
    error = ConfigError("\n".join(msgs))
    error.key = first_key
    return error


def _set_dotted(data: dict[str, Any], key: str, value: Any, origin: str) -> None:
    parts = [p for p in key.split(".") if p]
    if not parts:
        raise ConfigError("empty key in override", key, origin)
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set a key below a non-mapping ({p!r})", key, origin)
        node = nxt
    node[parts[-1]] = value


NOT_OVERRIDES = frozenset({"PHOTOTAG_CONFIG", "PHOTOTAG_PLUGINS", "PHOTOTAG_BLOCK", "PHOTOTAG_API_KEY"})
"""Variables that are not config overrides (``PHOTOTAG_API_KEY`` is ``serve.api_key``'s, read by the service)."""


def env_override_items(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``PHOTOTAG_METADATA__MODE=embed`` -> ``("metadata.mode", "embed", "PHOTOTAG_METADATA__MODE")``."""
    return [
        (name[len(ENV_PREFIX) :].lower().replace("__", "."), value, name)
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX) and name not in NOT_OVERRIDES
    ]


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """``PHOTOTAG_METADATA__MODE=embed`` -> ``{"metadata.mode": "embed"}`` (PHOTOTAG_CONFIG/PLUGINS excluded)."""
    return {key: value for key, value, _ in env_override_items(environ)}


def default_config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$PHOTOTAG_CONFIG``, else ``$XDG_CONFIG_HOME/phototag/config.yaml`` if it exists, else None."""
    environ = os.environ if environ is None else environ
    if environ.get("PHOTOTAG_CONFIG"):
        return Path(environ["PHOTOTAG_CONFIG"])
    base = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    candidate = base / "phototag" / "config.yaml"
    return candidate if candidate.is_file() else None


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read ``path`` (or the default location), apply environment and CLI overrides, validate, freeze."""
    environ = os.environ if environ is None else environ
    path = path if path is not None else default_config_path(environ)
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError(
                f"cannot read the config file: {e.strerror}. Pass an existing file to --config.",
                source=source,
            ) from e
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise ConfigError(
                f"the file is not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}): save it as UTF-8",
                source=source,
            ) from None
        try:
            lines = _line_map(text, source)  # first: it refuses self-reference and alias bombs
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {e}", source=source) from e
        except RecursionError:
            raise ConfigError(
                "the YAML is nested too deeply: a configuration is flat", source=source
            ) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("the top level must be a mapping of settings", source=source)
        data = loaded
    origins: dict[str, str] = {}
    cli = [(key, value, "--set") for key, value in (overrides or {}).items()]
    for key, value, origin in env_override_items(environ) + cli:  # --set last: it wins
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        _set_dotted(data, key, parsed, origin)
        key = ".".join(p for p in key.split(".") if p)
        for below in [k for k in (*lines, *origins) if k.startswith(key + ".")]:  # replaced wholesale
            lines.pop(below, None)
            origins.pop(below, None)
        origins[key] = origin
    data["source"] = source
    data["lines"] = lines
    data["origins"] = origins
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise _config_error(e, lambda key: _where(source, lines, key, origins)) from None


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``["metadata.mode=embed"]`` -> ``{"metadata.mode": "embed"}``; a missing ``=`` is a ConfigError."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"override {item!r} must look like key=value, e.g. metadata.mode=embed", "--set"
            )
        out[key.strip()] = value
    return out
