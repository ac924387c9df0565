"""The zero-shot vocabulary: which labels a CLIP/SigLIP classifier chooses from, with their keyword hierarchy.

``plugins.classify.vocabulary`` names a YAML or a plain-text file; without it the bundled
``phototag/data/vocabulary.yaml`` (about 150 everyday photo subjects) is used.

Plain text (``.txt``, or any file that is not YAML): one label per line, its hierarchy separated by ``|``;
optional synonyms after ``=``, comma-separated; ``#`` starts a comment::

    Animals|Pets|Cat = cat, kitten
    Animals|Pets|Dog = dog, puppy
    Places|Beach

YAML (``.yaml``/``.yml``): the same labels as a list of ``A|B|C`` strings, or as a nested mapping where every
key is a category and the leaves are names; a leaf may carry options::

    templates: ["a photo of {}.", "a photo of a {}."]  # optional; overrides plugins.classify.templates
    threshold: 0.1                                      # optional default for every label
    labels:
      Animals:
        Pets:
          - Cat
          - Dog: {synonyms: [dog, puppy], threshold: 0.2}
        Wildlife: [Bird, Horse]
      "Food|Drinks|Coffee": {prompt: "a photo of a cup of coffee."}

Leaf options: ``synonyms`` (texts that stand for the label; default: the label's name), ``prompt``/``prompts``
(complete texts used as they are, instead of filling the templates), ``threshold`` (the minimum score to tag
this label). Each label's text embedding is the mean of the embeddings of all its texts (synonyms x templates,
plus prompts), which is the usual CLIP prompt ensembling. The tag written is the leaf name with its path, e.g.
``AI|Animals|Pets|Cat``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

OPTION_KEYS = frozenset({"synonyms", "prompt", "prompts", "threshold"})
DEFAULT_TEMPLATES = ("a photo of {}.",)


@dataclass(frozen=True)
class Label:
    """One label: its keyword path (ending with its name), the texts that describe it, a threshold."""

    path: tuple[str, ...]
    synonyms: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    threshold: float | None = None

    @property
    def name(self) -> str:
        return self.path[-1]

    def texts(self, templates: Iterable[str]) -> tuple[str, ...]:
        """The texts to embed: each synonym (default: the name) in each template, and the verbatim prompts."""
        words = self.synonyms or ((_spoken(self.name),) if not self.prompts else ())
        filled = tuple(t.format(w) if "{}" in t else f"{t} {w}" for w in words for t in templates)
        return tuple(dict.fromkeys(filled + self.prompts))


def _spoken(name: str) -> str:
    """``Cat`` -> ``cat`` for the prompt (keyword case is for people); ``Eiffel Tower`` stays as written."""
    return name.lower() if name == name.capitalize() else name


@dataclass(frozen=True)
class Vocabulary:
    """The labels, the templates and default threshold the file asked for, and where it came from."""

    labels: tuple[Label, ...]
    source: str
    templates: tuple[str, ...] | None = None
    threshold: float | None = None
    _digest: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # computed once: fingerprints ask for it for every file
        blob = repr((self.labels, self.templates, self.threshold)).encode()
        object.__setattr__(self, "_digest", hashlib.blake2b(blob, digest_size=8).hexdigest())

    def digest(self) -> str:
        """A hash of everything that changes the scores (for fingerprints and the text-embedding cache)."""
        return self._digest


def default_vocabulary_path() -> Path:
    """The bundled vocabulary file."""
    return Path(str(resources.files("phototag") / "data" / "vocabulary.yaml"))


def load_vocabulary(path: Path | str | None = None) -> Vocabulary:
    """Read a vocabulary file (``None``: the bundled default). Errors name the file, the line or entry, and
    the expected format."""
    file = Path(path).expanduser() if path is not None else default_vocabulary_path()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"cannot read the vocabulary file {file}: {reason}. Set plugins.classify.vocabulary to a YAML or "
            "text file of labels (one `A|B|Label` per line)."
        ) from None
    if file.suffix.lower() in (".yaml", ".yml"):
        vocab = _from_yaml(text, str(file))
    else:
        vocab = Vocabulary(tuple(_merge(_from_text(text, str(file)))), str(file))
    if not vocab.labels:
        raise ConfigError(
            f"the vocabulary file {file} has no labels. Add one label per line, e.g. Animals|Cat."
        )
    return vocab


def _split_path(raw: str, where: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in str(raw).split("|"))
    if not parts or any(not p for p in parts):
        raise ConfigError(f"{where}: label {raw!r} has an empty part; write it as A|B|Label")
    return parts


def _from_text(text: str, source: str) -> list[Label]:
    labels = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, _, tail = line.partition("=")
        synonyms = tuple(s.strip() for s in tail.split(",") if s.strip())
        labels.append(Label(_split_path(head, f"{source}:{n}"), synonyms))
    return labels


def _from_yaml(text: str, source: str) -> Vocabulary:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"the vocabulary file {source} is not valid YAML: {e}") from None
    templates = threshold = None
    if isinstance(data, Mapping) and "labels" in data:
        unknown = set(data) - {"labels", "templates", "threshold"}
        if unknown:
            raise ConfigError(
                f"{source}: unknown top-level keys {sorted(unknown)}; allowed: labels, templates, threshold"
            )
        templates = _templates(data.get("templates"), source)
        threshold = _threshold(data.get("threshold"), f"{source}: threshold")
        data = data["labels"]
    labels = _merge(_walk(data, (), source))
    return Vocabulary(tuple(labels), source, templates, threshold)


def _templates(raw: Any, source: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(t, str) and t.strip() for t in items):
        raise ConfigError(f"{source}: templates must be a non-empty list of texts like 'a photo of {{}}.'")
    return tuple(items)


def _threshold(raw: Any, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.0 <= raw <= 1.0:
        raise ConfigError(f"{where}: threshold must be a number between 0 and 1, got {raw!r}")
    return float(raw)


def _texts(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(t, str | int | float) for t in items):
        raise ConfigError(f"{where}: must be a text or a list of texts, got {raw!r}")
    return tuple(str(t).strip() for t in items if str(t).strip())


def _leaf(path: tuple[str, ...], options: Mapping[str, Any], source: str) -> Label:
    where = f"{source}: {'|'.join(path)}"
    return Label(
        path,
        _texts(options.get("synonyms"), f"{where}: synonyms"),
        _texts(options.get("prompts"), f"{where}: prompts")
        + _texts(options.get("prompt"), f"{where}: prompt"),
        _threshold(options.get("threshold"), where),
    )


def _walk(node: Any, prefix: tuple[str, ...], source: str) -> list[Label]:
    """Flatten the nested YAML form into labels with their full paths."""
    if node is None:
        return [Label(prefix)] if prefix else []
    if isinstance(node, str | int | float) and not isinstance(node, bool):
        return [Label(prefix + _split_path(str(node), source))]
    if isinstance(node, list):
        return [label for item in node for label in _walk(item, prefix, source)]
    if isinstance(node, Mapping):
        if prefix and node and set(node) <= OPTION_KEYS:
            return [_leaf(prefix, node, source)]
        out = []
        for key, value in node.items():
            out.extend(_walk(value, prefix + _split_path(str(key), source), source))
        return out
    raise ConfigError(
        f"{source}: unexpected {type(node).__name__} {node!r} under {'|'.join(prefix) or 'the top'}"
    )


def _merge(labels: list[Label]) -> list[Label]:
    """One label per path: a path listed twice merges its texts (the last threshold wins)."""
    merged: dict[tuple[str, ...], Label] = {}
    for label in labels:
        old = merged.get(label.path)
        if old is None:
            merged[label.path] = label
        else:
            merged[label.path] = Label(
                label.path,
                tuple(dict.fromkeys(old.synonyms + label.synonyms)),
                tuple(dict.fromkeys(old.prompts + label.prompts)),
                label.threshold if label.threshold is not None else old.threshold,
            )
    return list(merged.values())
