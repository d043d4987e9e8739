"""The features of one split as heads are fitted and scored on them: image rows, caption rows and
which image each caption describes. A value type of the features layer, so that training
(:mod:`probe.align.train`) and scoring (:mod:`probe.evaluation`) both take it without one importing
the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PairedFeatures:
    """Features of one split: ``texts[j]`` describes ``images[caption_image[j]]``.

    Either side may be a :class:`~probe.features.mapped.FeatureRows` (features streamed from the
    cache): training then reads each batch from it instead of holding the split.
    """

    images: Any
    texts: Any
    caption_image: np.ndarray
    #: equal for identical caption texts (see :attr:`SplitData.caption_groups`): interchangeable in
    #: retrieval; None treats every caption as distinct
    text_groups: np.ndarray | None = None

    def usable_pairs(self) -> np.ndarray:
        """Caption indices whose caption and image both have finite features (skipped images are NaN)."""
        ok_image, ok_text = finite_rows(self.images), finite_rows(self.texts)
        return np.flatnonzero(ok_text & ok_image[self.caption_image])

    @property
    def streamed(self) -> bool:
        return is_streamed(self.images) or is_streamed(self.texts)


def is_streamed(x: Any) -> bool:
    return hasattr(x, "take") and hasattr(x, "finite_rows")


def finite_rows(x: Any) -> np.ndarray:
    return x.finite_rows() if is_streamed(x) else np.isfinite(x).all(axis=1)
