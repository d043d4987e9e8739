"""How a paper compared two encoders' embeddings of the same image-caption pairs, value by value.

A similarity protocol fixes which rows are compared (an image with its first caption, or with the
mean of all its captions), how the features are prepared (outliers clipped, rows L2-normalised or
left raw, features standardised before SVCCA), how a vision encoder that gives token sequences is
pooled, and which metrics are computed. ``probe select --protocol NAME`` runs one; its records say
which, and each setting below cites the file and line of the source it reproduces.

- ``probe``: probe's own defaults (every metric, L2-normalised rows, first caption).
- ``platonic``: platonic-rep (github.com/minyoungg/platonic-rep at dcd76ba), Huh et al. 2024.
- ``freeze-align``: freeze-align's encoder selection (github.com/mayug/freeze-align at 100745f),
  Maniparambil et al. 2024.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from probe.errors import ProbeError


@dataclass(frozen=True)
class SimilarityProtocol:
    """One way of comparing paired embeddings (see the module docstring)."""

    name: str
    #: one line for listings and records
    summary: str
    #: the metrics computed, the first being the one pairs are ranked by unless told otherwise
    metrics: tuple[str, ...]
    #: L2-normalise every row before the metrics
    normalize: bool = True
    #: clamp every feature value to ± the mean over rows of each row's ``q``-quantile of |x|
    clip_quantile: float | None = None
    #: scale each feature to unit variance before SVCCA's principal subspace
    standardize_svcca: bool = False
    #: an image's text row: its first caption, or the mean of all its captions' embeddings
    captions: Literal["first", "mean"] = "first"
    #: pooling used instead of the entry's own for vision encoders that give token sequences
    vision_pooling: str | None = None
    #: the source of each setting: ``(setting, "file:line")``
    sources: tuple[tuple[str, str], ...] = ()
    #: what probe does that the source did not, said in every run and record (None: nothing)
    unlike_source: str | None = None
    #: what probe does that the source did not when it compares one layer per encoder (no ``--layers``)
    unlike_source_one_layer: str | None = None

    def unlike(self, layers: str | None) -> str | None:
        """What this run does that the source did not: with ``layers`` (a layer search) or without."""
        parts = [self.unlike_source_one_layer if not layers else None, self.unlike_source]
        said = [part for part in parts if part]
        return "; ".join(said) if said else None

    def to_dict(self) -> dict[str, Any]:
        """What a similarity record holds of its protocol (and so its identity). The one-layer caveat
        is held only by a protocol that has one, so the other protocols' identities stay as they were."""
        held = {"name": self.name, "metrics": list(self.metrics), "normalize": self.normalize,
                "clip_quantile": self.clip_quantile, "standardize_svcca": self.standardize_svcca,
                "captions": self.captions, "vision_pooling": self.vision_pooling, "unlike_source": self.unlike_source}
        if self.unlike_source_one_layer is not None:
            held["unlike_source_one_layer"] = self.unlike_source_one_layer
        return held

    @property
    def pairs(self) -> str:
        """The compared rows, in words."""
        return "image + first caption" if self.captions == "first" else "image + mean of its captions"


PLATONIC = "minyoungg/platonic-rep@dcd76ba"
FREEZE_ALIGN = "mayug/freeze-align@100745f"

PROTOCOLS: dict[str, SimilarityProtocol] = {
    "probe": SimilarityProtocol(
        "probe", "every metric on L2-normalised rows of each image and its first caption",
        ("mutual_knn", "cka", "unbiased_cka", "cknna", "svcca")),
    "platonic": SimilarityProtocol(
        "platonic", "platonic-rep: outliers clipped at the 0.95 quantile, rows L2-normalised, SVCCA on "
                    "standardised features",
        ("mutual_knn", "cka", "unbiased_cka", "cknna", "svcca"),
        clip_quantile=0.95, standardize_svcca=True,
        sources=(
            ("clip_quantile 0.95", f"{PLATONIC} measure_alignment.py:16 (q=0.95)"),
            ("clipping bound not exact: mean of per-row quantiles",
             f"{PLATONIC} measure_alignment.py:103,117 (exact=precise), :160 (--precise off by default), :203; "
             "metrics.py:327-341"),
            ("rows L2-normalised", f"{PLATONIC} measure_alignment.py:34 (normalize=True), :55-57"),
            ("mutual_knn and cknna with k = 10", f"{PLATONIC} measure_alignment.py:156 (--topk 10), :63-64"),
            ("cknna unbiased", f"{PLATONIC} metrics.py:180 (unbiased=True)"),
            ("svcca on standardised features, 10 dimensions", f"{PLATONIC} metrics.py:129-135"),
        ),
        unlike_source_one_layer="one layer per encoder (the registry entry's output), where platonic-rep scores "
                                "every layer pair and keeps the best (measure_alignment.py:53-69); --layers all "
                                "searches every layer pair",
        unlike_source="the clipping bound is each layer's own, where platonic-rep takes it over all layers of a row "
                      "together (metrics.py:336); SVCCA's subspace is the exact top-10 SVD, where platonic-rep takes "
                      "torch.svd_lowrank's randomised estimate of it (metrics.py:141-142)"),
    "freeze-align": SimilarityProtocol(
        "freeze-align", "freeze-align: biased linear CKA on raw rows, vision = mean over all tokens, text = "
                        "mean of each image's captions",
        ("cka",), normalize=False, captions="mean", vision_pooling="mean_all",
        sources=(
            ("biased linear CKA", f"{FREEZE_ALIGN} alignment/get_semantic_sim.py:79-83; alignment/utils.py:42-52"),
            ("raw rows (no normalisation)", f"{FREEZE_ALIGN} alignment/utils.py:42-45"),
            ("vision: mean of last_hidden_state over all tokens", f"{FREEZE_ALIGN} alignment/get_embeds.py:54"),
            ("text: mean of each image's caption embeddings", f"{FREEZE_ALIGN} alignment/get_embeds.py:61-63"),
        )),
}


def check_protocol(name: str) -> SimilarityProtocol:
    """The protocol called ``name``, or one line naming the valid ones."""
    if name not in PROTOCOLS:
        raise ProbeError(f"unknown similarity protocol {name!r}; valid: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def clip_outliers(x: np.ndarray, q: float) -> np.ndarray:
    """platonic-rep's ``remove_outliers(feats, q, exact=False)`` (metrics.py:327-341): every value
    clamped to ± the mean over rows of each row's ``q``-quantile of absolute values (linear
    interpolation, as ``torch.quantile``)."""
    bound = float(np.quantile(np.abs(x.astype(np.float64)), q, axis=1).mean())
    return np.clip(x, -bound, bound).astype(x.dtype, copy=False)


def caption_means(texts: np.ndarray, caption_image: np.ndarray, n_images: int) -> np.ndarray:
    """Each image's mean caption embedding ``[n_images, d]`` (float32); NaN rows for images without
    a caption, and for images with a caption whose features are not finite."""
    owner = np.asarray(caption_image)
    sums = np.zeros((n_images, texts.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, texts.astype(np.float64))
    counts = np.bincount(owner, minlength=n_images).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts[:, None]).astype(np.float32)
