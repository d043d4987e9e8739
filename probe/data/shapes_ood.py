"""``shapes-ood``: the shapes world rendered and described another way, for zero-shot transfer.

Same 14 shape and 8 colour classes as ``shapes``, but nothing else shared: other backgrounds
(darker and more saturated), other fills (checked, ringed), heavier noise and clutter, smaller and
larger objects, other caption phrasings and other prompt templates, and its own seed space. Heads
fitted on ``shapes`` and scored here have never seen any of it. Splits: ``test`` (retrieval and
zero-shot classification) and ``winoground`` (colour-swap pairs).
"""

from __future__ import annotations

from probe.data.base import DatasetInfo, SplitData
from probe.data.shapes import Scene, SceneWords, Style, Variant, draw_scene
from probe.data.shapes import make_split as make_shapes_split

GENERATOR_VERSION = "shapes-ood-2"
SPLIT_SIZES = {"test": 450, "winoground": 240}  # enough for colour and swap-pair intervals to separate encoders
SPLIT_IDS = {"test": 103, "winoground": 104}  # a seed space of its own: no scene repeats one of shapes'
BACKGROUNDS = {"dark grey": (85, 85, 90), "lavender": (200, 185, 230), "peach": (245, 200, 160),
               "teal": (60, 140, 140), "cream": (245, 240, 210), "olive": (130, 135, 70)}
FILLS = ("solid", "checked", "ringed")
STYLE = Style(tuple(BACKGROUNDS.values()), FILLS, block_noise=26.0, pixel_noise=12.0, clutter=(4, 9), stripe_step=9)

INFO = DatasetInfo(
    name="shapes-ood",
    splits=tuple(SPLIT_SIZES),
    protocol="probe shapes-ood v2 (procedural; 450 test images, 5 captions each; zero-shot on single-object "
             "scenes; 120 swap pairs); other palettes, fills, scales, phrasings and prompts than shapes",
    description="the shapes classes drawn another way: a zero-shot transfer benchmark for heads fitted on shapes",
)


class OodScene(Scene):
    """A shapes scene painted in the out-of-distribution style."""

    def load(self):
        return draw_scene(self, style=STYLE)

    def fingerprint(self) -> str:
        return f"{GENERATOR_VERSION}:{self!r}"


def single_phrasings(w: SceneWords) -> list[str]:
    return [
        f"an illustration of a {w.colour} {w.shape}",
        f"a {w.shape} painted {w.colour}, {w.where}",
        f"{w.colour} {w.shape} with a {w.fill} pattern against {w.background}",
        f"a sketch showing one {w.size} {w.shape} in {w.colour}",
        f"the image contains a {w.colour} {w.shape} over a busy {w.background} backdrop",
        f"icon of a {w.shape}, colour {w.colour}",
        f"a {w.size} {w.colour} {w.shape} among scribbles",
    ]


def pair_phrasings(s1: str, c1: str, s2: str, c2: str) -> list[str]:
    return [
        f"an illustration with a {c1} {s1} on the left and a {c2} {s2} on the right",
        f"a {c2} {s2} placed right of a {c1} {s1}",
        f"two shapes, {c1} {s1} then {c2} {s2}",
        f"left: {c1} {s1}; right: {c2} {s2}",
        f"a sketch of a {c1} {s1} next to a {c2} {s2}",
        f"a {c1} {s1} paired with a {c2} {s2}",
    ]


TEMPLATES = {
    "shape": ["an illustration of a {}.", "a sketch of a {}.", "an icon of a {}.", "a {} among scribbles.",
              "a rendering of a {}."],
    "colour": ["an illustration of something {}.", "a {} icon.", "a sketch painted {}.", "a shape coloured {}."],
}

VARIANT = Variant(INFO, STYLE, tuple(BACKGROUNDS), {"solid": "flat", "checked": "checked", "ringed": "ringed"},
                  (0.3, 0.72, 0.36), single_phrasings, pair_phrasings, TEMPLATES, SPLIT_SIZES, SPLIT_IDS,
                  scene=OodScene)


def make_split(split: str, seed: int = 0) -> SplitData:
    return make_shapes_split(split, seed, VARIANT)
