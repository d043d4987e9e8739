"""Winoground-style compositional scores (Thrush et al. 2022) on swap pairs.

A swap pair is two images (i0, i1) whose captions (c0, c1) use the same words in another order
("a red circle left of a blue square" / "a blue circle left of a red square"). With s(c, i) the
similarity: text score = s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1); image score = s(c0,i0) > s(c0,i1)
and s(c1,i1) > s(c1,i0); group score = both. Chance is 0.25, 0.25 and 1/6.
"""

from __future__ import annotations

import numpy as np

from probe.metrics.vectors import TIE


def winoground_scores(image_emb: np.ndarray, text_emb: np.ndarray, caption_image: np.ndarray,
                      swap_pairs: np.ndarray) -> dict[str, float]:
    """Mean text, image and group scores; each image's first caption is its Winoground caption."""
    return {name: float(np.mean(hits)) for name, hits in
            winoground_hits(image_emb, text_emb, caption_image, swap_pairs).items()}


def winoground_hits(image_emb: np.ndarray, text_emb: np.ndarray, caption_image: np.ndarray,
                    swap_pairs: np.ndarray) -> dict[str, np.ndarray]:
    """Per swap pair: text, image and group success (booleans), for means and their intervals."""
    caption_image = np.asarray(caption_image)
    first: dict[int, int] = {}
    for j, image in enumerate(caption_image):
        first.setdefault(int(image), j)
    text, image, group = [], [], []
    for i0, i1 in np.asarray(swap_pairs):
        c0, c1 = first[int(i0)], first[int(i1)]
        s = np.asarray(text_emb, dtype=np.float64)[[c0, c1]] @ np.asarray(image_emb, dtype=np.float64)[[i0, i1]].T
        # s[c, i]: caption c of the pair vs image i of the pair
        # strictly greater, by more than float noise (:data:`~probe.metrics.vectors.TIE`)
        t_ok = s[0, 0] > s[1, 0] + TIE and s[1, 1] > s[0, 1] + TIE
        i_ok = s[0, 0] > s[0, 1] + TIE and s[1, 1] > s[1, 0] + TIE
        text.append(t_ok)
        image.append(i_ok)
        group.append(t_ok and i_ok)
    return {"text": np.array(text, dtype=bool), "image": np.array(image, dtype=bool),
            "group": np.array(group, dtype=bool)}
