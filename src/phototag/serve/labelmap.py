"""phototag's keywords as PhotoPrism labels: ``name``, ``confidence``, ``topicality``, ``priority``, ``categories``.

PhotoPrism stores a label from a "vision" service exactly as given (its ``rules.yml`` mapping runs only for the
Ollama/OpenAI engines), so a phototag server must bring PhotoPrism's own categories with each label. phototag's
keywords already sit in one tree, whichever backend made them: the bundled ImageNet classifier
(:mod:`phototag.bundled.imagenet`), the COCO detector (:mod:`phototag.bundled.coco`) and the zero-shot vocabulary
(``data/vocabulary.yaml``) all use ``Animals|Pets|Cat``, ``Objects|Vehicles|Car``, ``Food and drink|Food|Fruit``.
So the categories come from the *nodes of a keyword's path* (:data:`CATEGORIES`): ``Animals|Wildlife|Bird|Owl``
gives ``["animal", "wildlife", "bird"]``, the words PhotoPrism's ``rules.yml`` uses (``animal``, ``bird``,
``water``, ``vehicle``, ``food``, ``architecture``...). A keyword whose path is unknown (a custom vocabulary)
gets no category rather than a guessed one.

Priority follows ``rules.yml`` where it sets one for the same subject (cats and dogs 5, wildlife 3, people and
monkeys 2, buildings 1); everything else is 0, PhotoPrism's default.

Pure: no I/O, no models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..types import Tag

# A node of phototag's keyword tree -> PhotoPrism categories (lower-case words from rules.yml).
# fmt: off
CATEGORIES: Mapping[str, tuple[str, ...]] = {
    "Animals": ("animal",), "Farm animals": ("farm",), "Wildlife": ("wildlife",), "Sea life": ("water",),
    "Bird": ("bird",), "Fish": ("fish", "water"), "Insect": ("insect",), "Butterfly": ("insect",),
    "Bee": ("insect",), "Lizard": ("reptile",), "Snake": ("reptile",), "Turtle": ("reptile",),
    "Whale": ("water",), "Crab": ("water",), "Cat": ("cat",), "Dog": ("dog",), "Monkey": ("monkey",),
    "People": ("people",), "Portrait": ("portrait",), "Baby": ("baby",),
    "Nature": ("nature",), "Mountain": ("mountain", "landscape"), "Beach": ("beach", "water"),
    "Lake": ("water",), "Sea": ("water",), "Sky": ("nature",),
    "Urban": ("outdoor",), "Bridge": ("architecture",), "Church": ("building", "architecture"),
    "Castle": ("historic", "architecture"), "Monument": ("historic",), "Indoors": ("indoor",),
    "Shop": ("shop",),
    "Food": ("food",), "Bread": ("bakery",), "Dessert": ("dessert",), "Fruit": ("fruit",),
    "Vegetables": ("vegetables",), "Drinks": ("beverage",), "Coffee": ("coffee",), "Wine": ("drinks",),
    "Vehicles": ("vehicle",), "Car": ("car",), "Boat": ("water",), "Train": ("train",),
    "Airplane": ("aircraft",), "Bicycle": ("bike",),
    "Electronics": ("electronics",), "Computer": ("computer",), "Camera": ("photography",),
    "Home": ("indoor",), "Chair": ("furniture",), "Table": ("furniture",), "Sofa": ("furniture",),
    "Bed": ("furniture",), "Book": ("book",),
    "Clothing": ("fashion",), "Hat": ("fashion",), "Shoes": ("shoe",), "Glasses": ("portrait",),
    "Guitar": ("music",), "Piano": ("music",), "Flower": ("plant", "nature"), "Plant": ("plant", "nature"),
    "Tree": ("plant", "nature"), "Mushroom": ("nature",),
    "Activities": ("event",), "Events": ("event",), "Photo types": ("info",),
}
# A keyword or one of its path nodes -> PhotoPrism priority (rules.yml's value for the same subject).
PRIORITY: Mapping[str, int] = {
    "Cat": 5, "Dog": 5, "Wildlife": 3, "People": 2, "Portrait": 2, "Monkey": 2, "Elephant": 2, "Building": 1,
    "Church": 1, "Castle": 1,
}
# fmt: on


def categories_of(tag: Tag) -> list[str]:
    """PhotoPrism categories of ``tag``: those of every node above it (and of the keyword itself when it is a
    node, e.g. the generic ``Bird``), in path order, without repeats and without the label's own name."""
    own = tag.name.lower()
    out: list[str] = []
    for node in tag.hierarchy:
        for category in CATEGORIES.get(node, ()):
            if category not in out and category != own:
                out.append(category)
    return out


def priority_of(tag: Tag) -> int:
    """The highest priority any node of ``tag``'s path has (0 when none has one)."""
    return max((PRIORITY.get(node, 0) for node in tag.hierarchy), default=0)


def photoprism_label(tag: Tag, *, topicality: float | None = None, source: str = "image") -> dict[str, Any]:
    """One label in PhotoPrism's "vision" response shape. ``topicality`` (how central the subject is) defaults
    to the confidence: phototag's classifiers score the whole photo, so the two are one number."""
    confidence = round(min(max(float(tag.score), 0.0), 1.0), 4)
    return {
        "name": tag.name,
        "source": source,
        "priority": priority_of(tag),
        "confidence": confidence,
        "topicality": confidence if topicality is None else round(topicality, 4),
        "categories": categories_of(tag),
        "nsfw": False,
        "nsfw_confidence": 0,
    }


def merge_tags(per_image: Iterable[Sequence[Tag]]) -> list[Tag]:
    """One list for several images of one photo (PhotoPrism sends up to three crops of it): a keyword found in
    any of them once, with its highest score, best first (ties by name, so the order repeats)."""
    best: dict[str, Tag] = {}
    for tags in per_image:
        for tag in tags:
            have = best.get(tag.name)
            if have is None or tag.score > have.score:
                best[tag.name] = tag
    return sorted(best.values(), key=lambda t: (-t.score, t.name))


def llm_labels(tags: Sequence[Tag]) -> list[dict[str, Any]]:
    """Labels in the JSON PhotoPrism asks its Ollama/OpenAI engines for: ``{name, confidence, topicality}``
    (its own ``rules.yml`` then adds priority and categories)."""
    return [
        {"name": t.name, "confidence": round(float(t.score), 4), "topicality": round(float(t.score), 4)}
        for t in tags
    ]
