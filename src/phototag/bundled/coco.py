"""COCO object classes (the 90-id numbering the TensorFlow detection zoo uses) as keywords in a hierarchy.

Paths are those of :mod:`phototag.bundled.imagenet` and the default zero-shot vocabulary where they overlap
(``Animals|Pets|Cat``, ``Objects|Vehicles|Motorcycle``, ``Food and drink|Food|Fruit|Banana``), so a detected
cat and a classified cat land on one keyword. Some COCO names are changed to the word the other backends use
(``couch`` -> ``Sofa``, ``tv`` -> ``Television``, ``cell phone`` -> ``Mobile phone``, ``mouse`` ->
``Computer mouse``). Ids that COCO reserved but never annotated (12, 26, 29, 30, 45, 66, 68, 69, 71, 83) are
absent.
"""

from __future__ import annotations

_FOOD = "Food and drink|Food"

# id -> full tag path, "|"-separated; the keyword is the last part
_PATHS: dict[int, str] = {
    1: "People|Person",
    2: "Objects|Vehicles|Bicycle",
    3: "Objects|Vehicles|Car",
    4: "Objects|Vehicles|Motorcycle",
    5: "Objects|Vehicles|Airplane",
    6: "Objects|Vehicles|Bus",
    7: "Objects|Vehicles|Train",
    8: "Objects|Vehicles|Truck",
    9: "Objects|Vehicles|Boat",
    10: "Objects|Things|Traffic light",
    11: "Objects|Things|Fire hydrant",
    13: "Objects|Things|Stop sign",
    14: "Objects|Things|Parking meter",
    15: "Objects|Things|Bench",
    16: "Animals|Wildlife|Bird",
    17: "Animals|Pets|Cat",
    18: "Animals|Pets|Dog",
    19: "Animals|Farm animals|Horse",
    20: "Animals|Farm animals|Sheep",
    21: "Animals|Farm animals|Cow",
    22: "Animals|Wildlife|Elephant",
    23: "Animals|Wildlife|Bear",
    24: "Animals|Wildlife|Zebra",
    25: "Animals|Wildlife|Giraffe",
    27: "Objects|Things|Bag|Backpack",
    28: "Objects|Things|Umbrella",
    31: "Objects|Things|Bag|Handbag",
    32: "Objects|Clothing|Tie",
    33: "Objects|Things|Suitcase",
    34: "Objects|Things|Frisbee",
    35: "Objects|Things|Skis",
    36: "Objects|Things|Snowboard",
    37: "Objects|Things|Ball",
    38: "Objects|Things|Kite",
    39: "Objects|Things|Baseball bat",
    40: "Objects|Things|Baseball glove",
    41: "Objects|Things|Skateboard",
    42: "Objects|Things|Surfboard",
    43: "Objects|Things|Tennis racket",
    44: "Objects|Things|Bottle",
    46: "Objects|Things|Wine glass",
    47: "Objects|Things|Cup",
    48: "Objects|Things|Fork",
    49: "Objects|Things|Knife",
    50: "Objects|Things|Spoon",
    51: "Objects|Things|Bowl",
    52: f"{_FOOD}|Fruit|Banana",
    53: f"{_FOOD}|Fruit|Apple",
    54: f"{_FOOD}|Sandwich",
    55: f"{_FOOD}|Fruit|Orange",
    56: f"{_FOOD}|Vegetables|Broccoli",
    57: f"{_FOOD}|Vegetables|Carrot",
    58: f"{_FOOD}|Hot dog",
    59: f"{_FOOD}|Pizza",
    60: f"{_FOOD}|Dessert|Donut",
    61: f"{_FOOD}|Dessert|Cake",
    62: "Objects|Home|Chair",
    63: "Objects|Home|Sofa",
    64: "Objects|Things|Plant|Potted plant",
    65: "Objects|Home|Bed",
    67: "Objects|Home|Table|Dining table",
    70: "Objects|Home|Toilet",
    72: "Objects|Electronics|Television",
    73: "Objects|Electronics|Computer|Laptop",
    74: "Objects|Electronics|Computer mouse",
    75: "Objects|Electronics|Remote control",
    76: "Objects|Electronics|Keyboard",
    77: "Objects|Electronics|Phone|Mobile phone",
    78: "Objects|Home|Microwave",
    79: "Objects|Home|Oven",
    80: "Objects|Home|Toaster",
    81: "Objects|Home|Sink",
    82: "Objects|Home|Refrigerator",
    84: "Objects|Home|Book",
    85: "Objects|Home|Clock",
    86: "Objects|Things|Vase",
    87: "Objects|Things|Scissors",
    88: "Objects|Home|Toy|Teddy bear",
    89: "Objects|Things|Hair dryer",
    90: "Objects|Things|Toothbrush",
}
LABELS: dict[int, tuple[str, ...]] = {i: tuple(p.split("|")) for i, p in _PATHS.items()}


def path_of(class_id: int) -> tuple[str, ...] | None:
    """The tag path of a COCO id (``("Objects", "Vehicles", "Motorcycle")``), or None for an unused id."""
    return LABELS.get(class_id)
