"""``shapes``: procedurally drawn scenes with paraphrased captions, deterministic from a seed.

Flat shapes on plain backgrounds saturate (a small and a large CNN score the same), so scenes mix
14 categories, half of them simple drawn objects (house, tree, fish, car, flower, ...), striped and
dotted fills, rotation and scale jitter, noisy coloured backgrounds and clutter strokes. A third of
the scenes hold two objects side by side; the ``winoground`` split holds pairs of such scenes with
the two colours swapped, captioned accordingly.

A scene is a small parameter record (:class:`Scene`); pixels are drawn from it on demand, in the
DataLoader workers. The dataset's content fingerprint is the parameter list plus
``GENERATOR_VERSION`` (bump it whenever drawing changes).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from probe.data.base import DatasetInfo, SplitData

GENERATOR_VERSION = "shapes-3"
CANVAS = 128
SPLIT_SIZES = {"train": 300, "val": 75, "test": 150, "winoground": 80}
SPLIT_IDS = {"train": 1, "val": 2, "test": 3, "winoground": 4}
TWO_OBJECT_FRACTION = 0.3

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "heart", "arrow",
          "house", "tree", "fish", "car", "flower", "moon")
COLOURS = {
    "red": (215, 38, 38), "orange": (245, 135, 20), "yellow": (238, 215, 35), "green": (35, 160, 60),
    "blue": (35, 75, 215), "purple": (135, 45, 185), "pink": (245, 120, 185), "black": (25, 25, 25),
}
BACKGROUNDS = {
    "grey": (150, 150, 150), "beige": (215, 200, 165), "light blue": (165, 200, 225),
    "light green": (180, 215, 170), "white": (235, 235, 235), "brown": (140, 110, 80),
}
FILLS = ("solid", "striped", "dotted")


@dataclass(frozen=True)
class Style:
    """How scenes are painted: palettes that a scene's indices point into, noise and clutter."""

    backgrounds: tuple[tuple[int, int, int], ...]
    fills: tuple[str, ...]
    block_noise: float = 18.0
    pixel_noise: float = 8.0
    clutter: tuple[int, int] = (2, 6)
    stripe_step: int = 7

POSITIONS = {"top left": (0.3, 0.3), "top right": (0.7, 0.3), "bottom left": (0.3, 0.7),
             "bottom right": (0.7, 0.7), "centre": (0.5, 0.5)}

STYLE = Style(tuple(BACKGROUNDS.values()), FILLS)

INFO = DatasetInfo(
    name="shapes",
    splits=tuple(SPLIT_SIZES),
    protocol="probe shapes v3 (procedural; 300/75/150 images, 5 captions each; zero-shot on single-object "
             "scenes; 40 swap pairs)",
    description="drawn scenes: 14 categories x 8 colours, textures, clutter; Winoground colour swaps",
)


@dataclass(frozen=True)
class Thing:
    shape: int
    colour: int
    fill: int
    cx: float
    cy: float
    scale: float
    angle: float


@dataclass(frozen=True)
class Scene:
    """Everything needed to draw one image; picklable and cheap."""

    things: tuple[Thing, ...]
    background: int
    noise_seed: int

    def load(self):
        return draw_scene(self)

    def fingerprint(self) -> str:
        return f"{GENERATOR_VERSION}:{self!r}"


# --- outlines in a unit frame ([-1, 1] square), as lists of polygons -------------------------------

def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n)) for i in range(n)]


def _star() -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        r = 1.0 if i % 2 == 0 else 0.42
        a = -math.pi / 2 + math.pi * i / 5
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def _heart() -> list[tuple[float, float]]:
    pts = []
    for i in range(40):
        t = 2 * math.pi * i / 40
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 17, -y / 17))
    return pts


def _moon() -> list[tuple[float, float]]:
    outer = [(math.cos(a), math.sin(a)) for a in np.linspace(math.pi / 2, 3 * math.pi / 2 + 0.0, 24)]
    inner = [(0.45 * math.cos(a) - 0.1, math.sin(a)) for a in np.linspace(3 * math.pi / 2, math.pi / 2, 24)]
    pts = outer + inner
    return [(x + 0.3, y) for x, y in pts]


def _flower() -> list[list[tuple[float, float]]]:
    petals = []
    for k in range(5):
        a = 2 * math.pi * k / 5
        cx, cy = 0.55 * math.cos(a), 0.55 * math.sin(a)
        petals.append([(cx + 0.42 * math.cos(t), cy + 0.42 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 16)])
    return petals


OUTLINES: dict[str, list[list[tuple[float, float]]]] = {
    "circle": [[(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, 40)]],
    "square": [[(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]],
    "triangle": [_regular(3)],
    "star": [_star()],
    "hexagon": [_regular(6, phase=0.0)],
    "cross": [[(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1),
               (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)]],
    "heart": [_heart()],
    "arrow": [[(-1, -0.25), (0.2, -0.25), (0.2, -0.65), (1, 0), (0.2, 0.65), (0.2, 0.25), (-1, 0.25)]],
    "house": [[(-0.75, 1), (-0.75, -0.1), (0, -0.9), (0.75, -0.1), (0.75, 1)]],
    "tree": [[(0, -1), (0.75, 0.35), (0.18, 0.35), (0.18, 1), (-0.18, 1), (-0.18, 0.35), (-0.75, 0.35)]],
    "fish": [[(-0.95, 0), (-0.45, -0.5), (0.25, -0.45), (0.6, 0), (1, -0.45), (1, 0.45), (0.6, 0),
              (0.25, 0.45), (-0.45, 0.5)]],
    "car": [[(-1, 0.45), (-1, 0.0), (-0.55, -0.05), (-0.3, -0.5), (0.35, -0.5), (0.6, -0.05), (1, 0.0), (1, 0.45)],
            [(-0.6 + 0.25 * math.cos(t), 0.5 + 0.25 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 12)],
            [(0.6 + 0.25 * math.cos(t), 0.5 + 0.25 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 12)]],
    "flower": _flower(),
    "moon": [_moon()],
}


def _place(poly, thing: Thing, size: int) -> list[tuple[float, float]]:
    c, s = math.cos(thing.angle), math.sin(thing.angle)
    r = thing.scale * size / 2
    return [(thing.cx * size + r * (x * c - y * s), thing.cy * size + r * (x * s + y * c)) for x, y in poly]


def draw_scene(scene: Scene, size: int = CANVAS, style: Style = STYLE):
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(scene.noise_seed)
    base = np.array(style.backgrounds[scene.background], dtype=np.float32)
    noise = rng.normal(0, style.block_noise, (size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)
    pixels = np.clip(base + noise + rng.normal(0, style.pixel_noise, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(*style.clutter))):  # clutter strokes
        pts = [tuple(rng.uniform(0, size, 2)) for _ in range(int(rng.integers(2, 4)))]
        tint = tuple(int(v) for v in rng.integers(60, 200, 3))
        draw.line(pts, fill=tint, width=int(rng.integers(1, 3)))
    for thing in scene.things:
        colour = list(COLOURS.values())[thing.colour]
        mask = Image.new("L", (size, size), 0)
        mask_draw = ImageDraw.Draw(mask)
        for poly in OUTLINES[SHAPES[thing.shape]]:
            mask_draw.polygon(_place(poly, thing, size), fill=255)
        fill = style.fills[thing.fill]
        texture = Image.new("RGB", (size, size), colour)
        if fill != "solid":
            tex_draw = ImageDraw.Draw(texture)
            light = tuple(min(255, v + 150) if sum(colour) < 300 else max(0, v - 120) for v in colour)
            step = style.stripe_step
            if fill == "striped":
                for k in range(-size, 2 * size, step):
                    tex_draw.line([(k, 0), (k + size, size)], fill=light, width=3)
            elif fill == "dotted":
                for yy in range(2, size, step):
                    for xx in range(2 + (yy // step % 2) * 3, size, step):
                        tex_draw.ellipse([xx - 1.6, yy - 1.6, xx + 1.6, yy + 1.6], fill=light)
            elif fill == "checked":
                for yy in range(0, size, step):
                    for xx in range((yy // step % 2) * step, size, 2 * step):
                        tex_draw.rectangle([xx, yy, xx + step - 1, yy + step - 1], fill=light)
            elif fill == "ringed":
                for radius in range(step, 2 * size, step):
                    tex_draw.ellipse([size / 2 - radius, size / 2 - radius, size / 2 + radius, size / 2 + radius],
                                     outline=light, width=2)
        image.paste(texture, (0, 0), mask)
        outline = OUTLINES[SHAPES[thing.shape]]
        for poly in outline:
            draw.line(_place(poly, thing, size) + [_place(poly, thing, size)[0]], fill=(20, 20, 20), width=1)
    return image


# --- scene sampling and captions --------------------------------------------------------------------

def _an(text: str) -> str:
    """Fix the article: 'a orange' -> 'an orange' (captions are built from templates)."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


@dataclass(frozen=True)
class SceneWords:
    """What one single-object scene is, in words, for caption templates."""

    shape: str
    colour: str
    fill: str
    background: str
    size: str
    where: str
    position: str


def single_phrasings(w: SceneWords) -> list[str]:
    return [
        f"a {w.colour} {w.shape}",
        f"a {w.size} {w.colour} {w.shape} {w.where}",
        f"a {w.fill} {w.colour} {w.shape} on a {w.background} background",
        f"a drawing of a {w.shape} coloured {w.colour}",
        f"there is one {w.colour} {w.shape} {w.where} of the picture",
        f"a {w.colour} {w.fill} {w.shape} drawn on a noisy {w.background} background",
        f"a simple picture showing a {w.colour} {w.shape}",
    ]


def pair_phrasings(s1: str, c1: str, s2: str, c2: str) -> list[str]:
    return [
        f"a {c1} {s1} left of a {c2} {s2}",
        f"a {c2} {s2} to the right of a {c1} {s1}",
        f"a {c1} {s1} and a {c2} {s2} side by side",
        f"on the left a {c1} {s1}, on the right a {c2} {s2}",
        f"two objects: a {c1} {s1} next to a {c2} {s2}",
        f"a {c1} {s1} beside a {c2} {s2}",
    ]


TEMPLATES = {
    "shape": ["a {}.", "a drawing of a {}.", "a picture of a {}.", "a {} on a textured background.",
              "a small {}.", "a large {}."],
    "colour": ["a {} shape.", "something {}.", "a drawing of something {}.", "a {} object.",
               "a picture of a {} thing."],
}


@dataclass(frozen=True)
class Variant:
    """One rendering of the shapes world: its palettes, scales, phrasings, prompts and splits.

    ``shapes`` is the default; ``shapes-ood`` (:mod:`probe.data.shapes_ood`) shares the classes but
    draws, sizes and describes scenes its own way, so it tests transfer.
    """

    info: DatasetInfo
    style: Style
    background_names: tuple[str, ...]
    fill_words: dict[str, str]
    scales: tuple[float, float, float]  # small single, large single, each of a pair
    single: Callable[[SceneWords], list[str]]
    pair: Callable[[str, str, str, str], list[str]]
    templates: dict[str, list[str]]
    split_sizes: dict[str, int]
    split_ids: dict[str, int]
    scene: type = Scene


VARIANT = Variant(INFO, STYLE, tuple(BACKGROUNDS), {"solid": "plain", "striped": "striped", "dotted": "dotted"},
                  (0.38, 0.62, 0.4), single_phrasings, pair_phrasings, TEMPLATES, SPLIT_SIZES, SPLIT_IDS)


def _thing(rng: np.random.Generator, v: Variant, shape: int, colour: int, cx: float, cy: float,
           scale: float) -> Thing:
    return Thing(shape=shape, colour=colour, fill=int(rng.integers(len(v.style.fills))),
                 cx=cx + rng.uniform(-0.05, 0.05), cy=cy + rng.uniform(-0.05, 0.05),
                 scale=scale * rng.uniform(0.85, 1.15), angle=float(rng.uniform(-0.5, 0.5)))


def _single(rng: np.random.Generator, v: Variant) -> tuple[Scene, dict]:
    shape, colour = int(rng.integers(len(SHAPES))), int(rng.integers(len(COLOURS)))
    position = str(rng.choice(list(POSITIONS)))
    big = bool(rng.random() < 0.5)
    cx, cy = POSITIONS[position] if not big else (0.5 + rng.uniform(-0.1, 0.1), 0.5 + rng.uniform(-0.1, 0.1))
    thing = _thing(rng, v, shape, colour, cx, cy, v.scales[1] if big else v.scales[0])
    scene = v.scene((thing,), int(rng.integers(len(v.style.backgrounds))), int(rng.integers(2**31)))
    return scene, {"position": "centre" if big else position, "size": "large" if big else "small"}


def _pair(rng: np.random.Generator, v: Variant, swap: bool = False, base: tuple | None = None) -> Scene:
    if base is None:
        s1, s2 = rng.choice(len(SHAPES), 2, replace=False)
        c1, c2 = rng.choice(len(COLOURS), 2, replace=False)
        base = (int(s1), int(s2), int(c1), int(c2), int(rng.integers(len(v.style.backgrounds))),
                int(rng.integers(2**31)))
    s1, s2, c1, c2, bg, noise = base
    if swap:
        c1, c2 = c2, c1
    left = _thing(rng, v, s1, c1, 0.27, 0.5, v.scales[2])
    right = _thing(rng, v, s2, c2, 0.73, 0.5, v.scales[2])
    return v.scene((left, right), bg, noise)


def _names(scene: Scene, v: Variant) -> list[tuple[str, str, str]]:
    return [(SHAPES[t.shape], list(COLOURS)[t.colour], v.style.fills[t.fill]) for t in scene.things]


def single_captions(scene: Scene, extra: dict, rng: np.random.Generator, v: Variant = VARIANT) -> list[str]:
    (shape, colour, fill), = _names(scene, v)
    where = "in the middle" if extra["position"] == "centre" else f"in the {extra['position']}"
    words = SceneWords(shape, colour, v.fill_words[fill], v.background_names[scene.background], extra["size"],
                       where, extra["position"])
    return _five_captions(v.single(words), rng)


def pair_captions(scene: Scene, rng: np.random.Generator, v: Variant = VARIANT) -> list[str]:
    (s1, c1, _), (s2, c2, _) = _names(scene, v)
    return _five_captions(v.pair(s1, c1, s2, c2), rng)


def _five_captions(options: list[str], rng: np.random.Generator) -> list[str]:
    """The plain first phrasing, then four others in a seeded random order (like COCO's five)."""
    order = rng.permutation(len(options))[:5]
    return [_an(t) for t in [options[0]] + [options[i] for i in order if i != 0][:4]]


def make_split(split: str, seed: int = 0, variant: Variant = VARIANT) -> SplitData:
    """Scenes, captions, labels (single-object scenes only; -1 elsewhere) and swap pairs."""
    v, name = variant, variant.info.name
    if split not in v.split_sizes:
        from probe.errors import ProbeError

        raise ProbeError(f"{name} has no split {split!r}; valid: {', '.join(v.split_sizes)}")
    split_id = v.split_ids[split]
    rng = np.random.default_rng([seed, split_id])
    scenes: list[Scene] = []
    captions: list[str] = []
    caption_image: list[int] = []
    shape_label, colour_label, n_objects = [], [], []
    swap_pairs = []
    n = v.split_sizes[split]
    if split == "winoground":
        for k in range(n // 2):
            base_rng = np.random.default_rng([seed, split_id, k])
            s1, s2 = base_rng.choice(len(SHAPES), 2, replace=False)
            c1, c2 = base_rng.choice(len(COLOURS), 2, replace=False)
            base = (int(s1), int(s2), int(c1), int(c2), int(base_rng.integers(len(v.style.backgrounds))),
                    int(base_rng.integers(2**31)))
            for swap in (False, True):
                scene = _pair(np.random.default_rng([seed, split_id, k, 7]), v, swap=swap, base=base)
                (a, ca, _), (b, cb, _) = _names(scene, v)
                captions.append(_an(v.pair(a, ca, b, cb)[0]))
                caption_image.append(len(scenes))
                scenes.append(scene)
                shape_label.append(-1)
                colour_label.append(-1)
                n_objects.append(2)
            swap_pairs.append((len(scenes) - 2, len(scenes) - 1))
    else:
        for _ in range(n):
            if rng.random() < TWO_OBJECT_FRACTION:
                scene = _pair(rng, v)
                texts = pair_captions(scene, rng, v)
                shape_label.append(-1)
                colour_label.append(-1)
                n_objects.append(2)
            else:
                scene, extra = _single(rng, v)
                texts = single_captions(scene, extra, rng, v)
                shape_label.append(scene.things[0].shape)
                colour_label.append(scene.things[0].colour)
                n_objects.append(1)
            captions.extend(texts)
            caption_image.extend([len(scenes)] * len(texts))
            scenes.append(scene)
    return SplitData(
        dataset=name,
        split=split,
        images=scenes,
        captions=captions,
        caption_image=np.array(caption_image),
        labels={"shape": np.array(shape_label), "colour": np.array(colour_label)},
        classes={"shape": list(SHAPES), "colour": list(COLOURS)},
        attributes={"n_objects": np.array(n_objects)},
        swap_pairs=np.array(swap_pairs, dtype=np.int64).reshape(-1, 2) if swap_pairs else None,
        protocol=v.info.protocol,
        templates=v.templates,
    )
