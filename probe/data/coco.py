"""COCO captions in COCO's own layout: ``FOLDER/annotations/captions_<split>.json`` and the images
in ``FOLDER/<split>/<file_name>`` (what val2017.zip and annotations_trainval2017.zip unpack to).

Images are taken in ascending image id and each image's captions in the order the annotation file
lists them, as torchvision's ``CocoCaptions`` (through pycocotools) reads them; SAIL's COCO
retrieval evaluation reads val2017 that way and keeps each image's first five captions
(lezhang7/SAIL@b39de67 evaluation/coco_dataset.py:37, evaluation/coco_zs_retrieval.py:68,88,265),
which ``captions_per_image=5`` reproduces. Captions beyond those are counted in the split's
``dropped``, never silently left out.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from probe.data.base import DatasetInfo, FileImage, SplitData
from probe.errors import ProbeError

log = logging.getLogger("probe.data")

ANNOTATIONS = "annotations"


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ProbeError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{file}: not a COCO captions file (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
            not isinstance(data.get("annotations"), list):
        raise ProbeError(f"{file}: not a COCO captions file (needs an object with 'images' and 'annotations' lists)")
    return data


class CocoCaptionsDataset:
    """``coco:FOLDER``: every ``captions_<split>.json`` under ``FOLDER/annotations`` is a split."""

    def __init__(self, path: str, name: str | None = None, captions_per_image: int | None = None):
        self.root = Path(path).expanduser().absolute()
        if not (self.root / ANNOTATIONS).is_dir():
            raise ProbeError(f"coco:{self.root}: no {ANNOTATIONS}/ folder; COCO's layout is FOLDER/{ANNOTATIONS}/"
                             "captions_<split>.json with the images in FOLDER/<split>/")
        splits = sorted(p.name.removeprefix("captions_").removesuffix(".json")
                        for p in (self.root / ANNOTATIONS).glob("captions_*.json"))
        if not splits:
            raise ProbeError(f"coco:{self.root}: no {ANNOTATIONS}/captions_<split>.json (e.g. captions_val2017.json)")
        if captions_per_image is not None and captions_per_image < 1:
            raise ProbeError(f"captions_per_image must be at least 1, got {captions_per_image}")
        self.captions_per_image = captions_per_image
        kept = f", the first {captions_per_image} captions per image" if captions_per_image else ", all captions"
        self.info = DatasetInfo(name or f"coco:{self.root}", tuple(splits),
                                f"COCO captions in COCO's layout (images by ascending id{kept})",
                                "image-caption retrieval")

    def load(self, split: str) -> SplitData:
        if split not in self.info.splits:
            raise ProbeError(f"dataset {self.info.name!r} has no split {split!r}; valid: {', '.join(self.info.splits)}")
        file = self.root / ANNOTATIONS / f"captions_{split}.json"
        data = _read_json(file)
        files: dict[int, str] = {}
        for i, image in enumerate(data["images"]):
            if not isinstance(image, dict) or not isinstance(image.get("id"), int) or \
                    not isinstance(image.get("file_name"), str):
                raise ProbeError(f"{file}: images[{i}] needs an integer 'id' and a 'file_name'")
            files[image["id"]] = image["file_name"]
        captions: dict[int, list[str]] = {image_id: [] for image_id in files}
        unknown = 0
        for j, annotation in enumerate(data["annotations"]):
            if not isinstance(annotation, dict) or not isinstance(annotation.get("caption"), str):
                raise ProbeError(f"{file}: annotations[{j}] needs an 'image_id' and a 'caption' string")
            if annotation.get("image_id") not in captions:
                unknown += 1
                continue
            captions[annotation["image_id"]].append(annotation["caption"].strip())
        ids = [image_id for image_id in sorted(files) if captions[image_id]]
        if not ids:
            raise ProbeError(f"{file}: no image with a caption")
        limit = self.captions_per_image
        kept = {image_id: captions[image_id][:limit] if limit else captions[image_id] for image_id in ids}
        dropped = {"images without a caption": len(files) - len(ids),
                   f"captions beyond the first {limit} of an image": sum(len(captions[i]) - len(kept[i]) for i in ids)
                   if limit else 0,
                   "captions of an image the file does not list": unknown}
        dropped = {reason: n for reason, n in dropped.items() if n}
        if dropped:
            log.info("%s/%s: %s", self.info.name, split, "; ".join(f"{reason}: {n}" for reason, n in dropped.items()))
        return SplitData(dataset=self.info.name, split=split,
                         images=[FileImage(str(self.root / split / files[i])) for i in ids],
                         captions=[c for i in ids for c in kept[i]],
                         caption_image=np.array([n for n, i in enumerate(ids) for _ in kept[i]], dtype=np.int64),
                         labels={}, classes={}, protocol=self.info.protocol, dropped=dropped)
