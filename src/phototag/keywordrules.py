"""The user's own corrections to generated keywords: a block list and a rename map; pure.

``plugins.classify.block: [Pill bottle, Objects|Home|Clock]`` drops keywords: an entry without ``|`` is a
keyword name (``Pill bottle``; a generic name such as ``Dog`` blocks that generic keyword, not the breeds), an
entry with ``|`` is a path and drops everything at or below it (``Objects|Home|Clock`` drops ``Clock``,
``Wall clock`` ...). ``plugins.classify.rename: {Tabby cat: Cat, Egyptian cat: Cat}`` changes a keyword's name
and the last level of its path. Names and paths compare without regard to case or surrounding spaces. When a
rename makes two keywords equal, the higher score is kept. Block applies before rename, so a block entry names
the model's keyword.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .types import Tag


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class KeywordRules:
    """A block list and a rename map (see the module docstring)."""

    block: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, block: Iterable[str], rename: Mapping[str, str]) -> KeywordRules:
        return cls(tuple(block), dict(rename))

    def blocked(self, tag: Tag) -> bool:
        """Whether ``tag`` is on the block list (by name, or by a path at or above its own)."""
        path = tuple(_key(p) for p in tag.hierarchy)
        for entry in self.block:
            if "|" in entry:
                prefix = tuple(_key(p) for p in entry.split("|"))
                if path[: len(prefix)] == prefix:
                    return True
            elif _key(entry) == _key(tag.name):
                return True
        return False

    def apply(self, tags: Sequence[Tag]) -> list[Tag]:
        """``tags`` without the blocked ones, renamed, best score first for each resulting path."""
        renames = {_key(k): v.strip() for k, v in self.rename.items() if v.strip()}
        out: dict[tuple[str, ...], Tag] = {}
        for tag in tags:
            if self.blocked(tag):
                continue
            new = renames.get(_key(tag.name))
            if new is not None:
                path = (*tag.path[:-1], new) if tag.path else ()
                # "Tabby cat" -> "Cat" under Animals|Pets|Cat: the path does not repeat the level
                if len(path) >= 2 and _key(path[-1]) == _key(path[-2]):
                    path = path[:-1]
                tag = Tag(new, tag.score, path)
            key = tuple(_key(p) for p in tag.hierarchy)
            if key not in out or out[key].score < tag.score:
                out[key] = tag
        return sorted(out.values(), key=lambda t: t.score, reverse=True)
