"""The recipes: where each source's images and words are, read as the source gives them.

Captions are never invented: Tux Paint's stamp caption is the first line of the .txt beside each
PNG; Fashion-MNIST's labels are its published ten classes. What a recipe cannot use it drops with
a reason (a symbol stamp, an image without caption), and the build counts every drop.
"""

from __future__ import annotations

import gzip
import html
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.errors import ProbeError
from probe.recipes.base import Recipe, SourceItem


@dataclass(frozen=True)
class TuxPaintStamps(Recipe):
    """Tux Paint's default stamps: real photo cut-outs and drawings with an English caption each.

    ``symbols/`` (letters, digits, currency, signs) is dropped: those captions name a glyph, not a scene.
    """

    def items(self, root: Path) -> Iterator[SourceItem]:
        for png in sorted(root.rglob("*.png")):
            key = png.relative_to(root).as_posix()
            if key.split("/", 1)[0] == "symbols":
                yield SourceItem(key, drop="symbol")
                continue
            text = png.with_suffix(".txt")
            caption = _first_line(text) if text.is_file() else ""
            if not caption:
                yield SourceItem(key, drop="no caption")
                continue
            # stamps drawn twice (frog-1, frog-2) share a caption: one group, one split
            yield SourceItem(key, image=png, captions=(caption,), group=caption.lower())

    def source_files(self, root: Path) -> Iterator[tuple[str, Path]]:
        # the stamps and their captions; not the spoken descriptions (.ogg) beside them
        for name, path in super().source_files(root):
            if path.suffix.lower() in (".png", ".txt"):
                yield name, path


def _first_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return lines[0].strip() if lines else ""


@dataclass(frozen=True)
class OpenClipart(Recipe):
    """Openclipart 0.18's clip art: PNG renderings with the title (and description) from each SVG.

    A title shared by more than ``MAX_SHARED_TITLE`` images names a collection ("Etiquette Icons"),
    not the picture, and is dropped, as are untitled images.
    """

    def items(self, root: Path) -> Iterator[SourceItem]:
        svg_root = root.parent / "svg"
        words = []
        for png in sorted(root.rglob("*.png")):
            key = png.relative_to(root).as_posix()
            svg = svg_root / Path(key).with_suffix(".svg")
            title, description = svg_metadata(svg) if svg.is_file() else ("", "")
            words.append((key, png, title, description))
        shared = Counter(title.lower() for _, _, title, _ in words if title)
        for key, png, title, description in words:
            if not title:
                yield SourceItem(key, drop="no title")
            elif shared[title.lower()] > MAX_SHARED_TITLE:
                yield SourceItem(key, drop="collection title")
            else:
                useful = len(description) >= 3 and description.lower() != title.lower()  # not "s", not the title again
                captions = (title,) + ((description,) if useful else ())
                yield SourceItem(key, image=png, captions=captions, group=title.lower())

    def source_present(self, root: Path) -> bool:
        return root.is_dir() and (root.parent / "svg").is_dir()

    def source_files(self, root: Path) -> Iterator[tuple[str, Path]]:
        # the renderings and the SVGs whose metadata gives the captions
        yield from super().source_files(root)
        for name, path in super().source_files(root.parent / "svg"):
            yield f"svg/{name}", path


MAX_SHARED_TITLE = 3
_TITLE = re.compile(r"<dc:title>(.*?)</dc:title>", re.S)
_DESCRIPTION = re.compile(r"<dc:description>(.*?)</dc:description>", re.S)
#: the library's own name, which some files carry as the first title
_NOT_A_TITLE = {"open clip art library", "openclipart", "untitled"}


def svg_metadata(path: Path) -> tuple[str, str]:
    """(title, description) of the work in an SVG's RDF metadata, whitespace collapsed, entities decoded."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", ""
    titles = [_clean(t) for t in _TITLE.findall(text)]
    titles = [t for t in titles if t and t.lower() not in _NOT_A_TITLE]
    descriptions = [_clean(d) for d in _DESCRIPTION.findall(text)]
    return (titles[0] if titles else ""), next((d for d in descriptions if d), "")


def _clean(value: str) -> str:
    return html.unescape(" ".join(value.split()))


@dataclass(frozen=True)
class EmojiGoogle(Recipe):
    """Google's emoji images from the emoji-datasource-google npm package, captioned with the emoji's
    Unicode name; skin-tone variants (other images of the same name) and the Component category
    (bare skin-tone swatches) are not used."""

    def items(self, root: Path) -> Iterator[SourceItem]:
        import json

        try:
            entries = json.loads((root / "emoji.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ProbeError(f"{root / 'emoji.json'}: unreadable ({exc})") from None
        for entry in entries:
            key = str(entry.get("unified", entry.get("image", "")))
            name, category = str(entry.get("name") or ""), str(entry.get("category") or "")
            image = root / "img" / "google" / "64" / str(entry.get("image", ""))
            if category == "Component":
                yield SourceItem(key, drop="skin-tone swatch")
            elif not entry.get("has_img_google") or not image.is_file():
                yield SourceItem(key, drop="no image")
            elif not name:
                yield SourceItem(key, drop="no name")
            else:
                caption = name.capitalize() if name.isupper() else name
                yield SourceItem(key, image=image, captions=(caption,), group=category + "/" + str(
                    entry.get("subcategory", "")))

    def source_present(self, root: Path) -> bool:
        return (root / "emoji.json").is_file()


FASHION_CLASSES = ("t-shirt or top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle boot")


@dataclass(frozen=True)
class FashionMnist(Recipe):
    """Zalando's Fashion-MNIST from its idx files: the published train/t10k split kept as train/test."""

    def items(self, root: Path) -> Iterator[SourceItem]:
        for prefix, split in (("train", "train"), ("t10k", "test")):
            images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
            labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
            if len(images) != len(labels):
                raise ProbeError(f"{root}: {prefix} has {len(images)} images but {len(labels)} labels")
            for index in range(len(images)):
                yield SourceItem(f"{prefix}/{index:05d}", label=int(labels[index]), split=split,
                                 pixels=images[index])

    def source_present(self, root: Path) -> bool:
        return (root / "t10k-images-idx3-ubyte.gz").is_file()


def read_idx(path: Path) -> np.ndarray:
    """An idx(.gz) file as a uint8 array (LeCun's format: magic, big-endian dimension sizes, data)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise ProbeError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ProbeError(f"{path}: not an idx file of unsigned bytes")
    n_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * n_dims)
    if data.size != int(np.prod(shape)):
        raise ProbeError(f"{path}: header says {shape} but the file holds {data.size} values (truncated?)")
    return data.reshape(shape)


RECIPES: dict[str, Recipe] = {
    "tuxpaint": TuxPaintStamps(
        name="tuxpaint", kind="captions", title="Tux Paint stamps: photo cut-outs and drawings, one caption each",
        licence="GPL-2 (the built dataset stays on your machine; never redistribute it with your code)",
        install="sudo apt-get install tuxpaint-stamps-default", default_root="/usr/share/tuxpaint/stamps",
        notes="caption = first line of the stamp's .txt; symbols/ dropped"),
    "openclipart": OpenClipart(
        name="openclipart", kind="captions",
        title="Openclipart 0.18: clip art with its title (and description) as caption",
        licence="public domain", install="sudo apt-get install openclipart-png openclipart-svg",
        default_root="/usr/share/openclipart/png",
        notes="captions = the SVG's dc:title, plus dc:description when it differs (3+ characters); titles shared by more than "
              f"{MAX_SHARED_TITLE} images (collection names) and untitled images dropped"),
    "emoji": EmojiGoogle(
        name="emoji", kind="captions", title="Google emoji (64 px) captioned with their Unicode names",
        licence="Apache-2.0 (images)",
        install="npm pack emoji-datasource-google@16.0.0 && mkdir -p ~/.cache/probe/sources/emoji && "
                "tar xzf emoji-datasource-google-16.0.0.tgz -C ~/.cache/probe/sources/emoji --strip-components 1",
        default_root="~/.cache/probe/sources/emoji",
        notes="caption = the emoji's name; split by subcategory so that near-identical emoji never straddle "
              "train and test"),
    "fashion-mnist": FashionMnist(
        name="fashion-mnist", kind="classification",
        title="Fashion-MNIST: 28x28 greyscale photos of clothing, 10 classes (zero-shot; kNN of train on test)",
        licence="MIT", install="sudo apt-get install dataset-fashion-mnist",
        default_root="/usr/share/datasets/fashion-mnist", classnames=FASHION_CLASSES,
        templates=("a photo of a {}.", "a black and white photo of a {}.", "a low resolution photo of a {}.",
                   "a photo of the {}, a type of clothing.", "a greyscale product photo of a {}."),
        limit={"train": 500, "test": 500},
        notes="the published split; stated subsets: 500 train (kNN) and 500 test images chosen by a hash of "
              "their index; templates: probe's five (CLIP-style, stating greyscale and low resolution)"),
}
