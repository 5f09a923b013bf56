"""The nutrition table: coverage of every label the product can name, plausibility, scaling."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from nutrilearn.nutrition import (
    MAX_PORTION,
    NutritionFacts,
    NutritionTableError,
    facts_for,
    known_labels,
    load_table,
    read_table,
)

FOOD101 = """apple_pie baby_back_ribs baklava beef_carpaccio beef_tartare beet_salad beignets
bibimbap bread_pudding breakfast_burrito bruschetta caesar_salad cannoli caprese_salad
carrot_cake ceviche cheesecake cheese_plate chicken_curry chicken_quesadilla chicken_wings
chocolate_cake chocolate_mousse churros clam_chowder club_sandwich crab_cakes creme_brulee
croque_madame cup_cakes deviled_eggs donuts dumplings edamame eggs_benedict escargots falafel
filet_mignon fish_and_chips foie_gras french_fries french_onion_soup french_toast
fried_calamari fried_rice frozen_yogurt garlic_bread gnocchi greek_salad
grilled_cheese_sandwich grilled_salmon guacamole gyoza hamburger hot_and_sour_soup hot_dog
huevos_rancheros hummus ice_cream lasagna lobster_bisque lobster_roll_sandwich
macaroni_and_cheese macarons miso_soup mussels nachos omelette onion_rings oysters pad_thai
paella pancakes panna_cotta peking_duck pho pizza pork_chop poutine prime_rib
pulled_pork_sandwich ramen ravioli red_velvet_cake risotto samosa sashimi scallops
seaweed_salad shrimp_and_grits spaghetti_bolognese spaghetti_carbonara spring_rolls steak
strawberry_shortcake sushi tacos takoyaki tiramisu tuna_tartare waffles""".split()

IMAGENET_FOODS = """guacamole consomme hot_pot trifle ice_cream popsicle baguette bagel pretzel
cheeseburger hot_dog mashed_potatoes cabbage broccoli cauliflower zucchini spaghetti_squash
acorn_squash butternut_squash cucumber artichoke bell_pepper cardoon mushroom
granny_smith_apple strawberry orange lemon fig pineapple banana jackfruit custard_apple
pomegranate carbonara chocolate_sauce dough meatloaf pizza pot_pie burrito red_wine espresso
eggnog corn ear_of_corn""".split()

# Energy here comes mostly from something other than protein, carbohydrate and fat.
ENERGY_EXCEPTIONS = {"red_wine": "alcohol (7 kcal/g) is most of the energy"}


def test_label_lists_are_the_ones_the_product_uses() -> None:
    assert len(FOOD101) == 101 and len(set(FOOD101)) == 101
    assert len(IMAGENET_FOODS) == 46 and len(set(IMAGENET_FOODS)) == 46
    assert len(set(FOOD101) | set(IMAGENET_FOODS)) == 143


def test_every_food101_and_imagenet_food_label_has_a_row() -> None:
    missing = (set(FOOD101) | set(IMAGENET_FOODS)) - known_labels()
    assert not missing, f"no nutrition row for {sorted(missing)}"
    assert known_labels() == set(FOOD101) | set(IMAGENET_FOODS)


def test_table_shape_and_types() -> None:
    df = load_table()
    assert list(df.columns) == [
        "label", "name", "serving_g", "kcal", "protein_g",
        "carbohydrate_g", "fat_g", "fibre_g", "source",
    ]
    assert df["label"].is_unique
    assert (df["serving_g"] > 0).all()
    assert (df[["kcal", "protein_g", "carbohydrate_g", "fat_g", "fibre_g"]] >= 0).all().all()
    assert df["source"].str.contains("USDA").all(), "every row names its USDA source"
    # Fibre is part of USDA's carbohydrate by difference.
    assert (df["fibre_g"] <= df["carbohydrate_g"] + 1e-9).all()


def test_load_table_returns_a_copy() -> None:
    df = load_table()
    df.loc["pizza", "kcal"] = 1.0
    assert load_table().loc["pizza", "kcal"] != 1.0
    assert facts_for("pizza").kcal != 1.0


def test_energy_matches_macronutrients() -> None:
    """Atwater factors with fibre at 2 kcal/g: 4 P + 4 (C - fibre) + 2 fibre + 9 F."""
    df = load_table()
    expected = (
        4 * df["protein_g"]
        + 4 * (df["carbohydrate_g"] - df["fibre_g"])
        + 2 * df["fibre_g"]
        + 9 * df["fat_g"]
    )
    tolerance = (0.15 * df["kcal"]).clip(lower=8.0)
    off = df.loc[(expected - df["kcal"]).abs() > tolerance, "label"]
    assert set(off) == set(ENERGY_EXCEPTIONS), (
        f"energy inconsistent with macros: {sorted(set(off) - set(ENERGY_EXCEPTIONS))}"
    )


def test_serving_energy_is_plausible() -> None:
    df = load_table()
    assert df["kcal"].between(1, 1500).all(), "a serving is between an espresso and a feast"
    assert facts_for("grilled_salmon").protein_g > 25
    assert facts_for("broccoli").kcal < 50
    assert facts_for("cheesecake").fat_g > facts_for("sashimi").fat_g


def test_known_values() -> None:
    banana = facts_for("banana")
    assert banana is not None
    assert banana.serving_g == 118
    assert banana.kcal == pytest.approx(105, abs=1)  # USDA: 1 medium banana, 105 kcal
    assert banana.carbohydrate_g == pytest.approx(27.0, abs=0.2)
    assert facts_for("pizza") is facts_for("pizza")  # one row serves Food-101 and ImageNet


def test_unknown_label_is_none() -> None:
    assert facts_for("not_a_food") is None
    assert facts_for("") is None


def test_scaled_multiplies_every_amount() -> None:
    base = facts_for("hamburger")
    double = base.scaled(2)
    assert isinstance(double, NutritionFacts)
    assert double.kcal == pytest.approx(2 * base.kcal)
    assert double.protein_g == pytest.approx(2 * base.protein_g)
    assert double.serving_g == pytest.approx(2 * base.serving_g)
    half = base.scaled(0.5)
    assert half.fibre_g == pytest.approx(base.fibre_g / 2)
    assert base.scaled(0).kcal == 0
    assert base.scaled(MAX_PORTION).kcal == pytest.approx(MAX_PORTION * base.kcal)
    assert double.label == base.label and double.source == base.source


@pytest.mark.parametrize("bad", [-1, -0.01, math.nan, math.inf, -math.inf, 20.5, 1e6, "two", None])
def test_scaled_rejects_bad_portions(bad: object) -> None:
    with pytest.raises(ValueError, match=r"between 0 and 20"):
        facts_for("pizza").scaled(bad)  # type: ignore[arg-type]


HEADER = "label,name,serving_g,kcal,protein_g,carbohydrate_g,fat_g,fibre_g,source\n"


def test_read_table_rejects_duplicate_labels() -> None:
    text = HEADER + "a,A,100,10,1,1,0,0,x\n" + "a,A2,100,10,1,1,0,0,x\n"
    with pytest.raises(NutritionTableError, match="duplicate labels: a"):
        read_table(io.StringIO(text))


def test_read_table_rejects_negative_and_non_numeric() -> None:
    with pytest.raises(NutritionTableError, match="kcal.*bad rows: a"):
        read_table(io.StringIO(HEADER + "a,A,100,-5,1,1,0,0,x\n"))
    with pytest.raises(NutritionTableError, match="fat_g.*bad rows: b"):
        read_table(io.StringIO(HEADER + "b,B,100,5,1,1,lots,0,x\n"))
    with pytest.raises(NutritionTableError, match="serving_g must be positive"):
        read_table(io.StringIO(HEADER + "c,C,0,5,1,1,0,0,x\n"))


def test_read_table_rejects_missing_columns() -> None:
    with pytest.raises(NutritionTableError, match="missing columns: fibre_g, source"):
        read_table(io.StringIO("label,name,serving_g,kcal,protein_g,carbohydrate_g,fat_g\n"))


def test_read_table_accepts_good_rows() -> None:
    df = read_table(io.StringIO(HEADER + "a,A,100,10,1,1.5,0,0.5,x\n"))
    assert isinstance(df, pd.DataFrame)
    assert df.loc["a", "carbohydrate_g"] == 1.5
