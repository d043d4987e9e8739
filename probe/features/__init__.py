"""Features of every encoder on every dataset split, computed once into a content-addressed cache.

:func:`split_features` is the entry point over datasets (``cache`` holds the layout, ``extract``
the resumable computation, ``roles`` the features a pair runner needs per split role).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from probe.features.cache import ExtractionStats, FeatureSet
from probe.features.fitted import FitSource, FitTexts, SavedFit, fitted_on_corpus
from probe.features.options import ExtractOptions
from probe.settings import default_cache_dir

if TYPE_CHECKING:
    import numpy as np

    from probe.data.base import SplitData
    from probe.encoder_spec import EncoderSpec

__all__ = ["ExtractOptions", "ExtractionStats", "FeatureSet", "SavedFit", "default_cache_dir", "fitted_on_corpus",
           "get_features", "n_inputs", "split_features"]


def split_inputs(spec: EncoderSpec, data: SplitData, fit_data: FitSource | None = None, input_set: str | None = None,
                 texts: Sequence[str] | None = None) -> tuple[Sequence[Any], str, str, FitTexts | None]:
    """``(inputs, content fingerprint, input set name, corpus to fit on)`` of one encoder on a split."""
    from probe.data.base import text_fingerprint

    fit_texts: FitTexts | None = None
    if spec.modality == "vision":
        return data.images, data.image_fingerprint(), input_set or "images", None
    inputs = list(texts) if texts is not None else data.captions
    if fitted_on_corpus(spec):
        fit_texts = fit_data if isinstance(fit_data, SavedFit) else (fit_data or data).captions
    return inputs, text_fingerprint(inputs), input_set or "captions", fit_texts


def n_inputs(spec: EncoderSpec, data: SplitData) -> int:
    """Rows of ``spec``'s features on ``data``: one per image (vision) or caption (text)."""
    return data.n_images if spec.modality == "vision" else len(data.captions)


def is_cached(spec: EncoderSpec, data: SplitData, options: ExtractOptions, fit_data: FitSource | None = None,
              input_set: str | None = None) -> bool:
    """Whether finished features of ``spec`` on ``data`` are in the cache; reads only (nothing is
    repaired or removed), so a dry run may ask too."""
    from probe.features.extract import serving_entries

    _, content, name, fit_texts = split_inputs(spec, data, fit_data, input_set)
    return any(entry.looks_finished()
               for entry in serving_entries(spec, data.dataset, data.split, name, content, options, fit_texts))


def split_features(spec: EncoderSpec, data: SplitData, options: ExtractOptions | None = None, *,
                   fit_data: FitSource | None = None, input_set: str | None = None,
                   texts: Sequence[str] | None = None, encoder: Any = None,
                   encoder_factory: Callable[[], Any] | None = None,
                   stats: ExtractionStats | None = None) -> FeatureSet:
    """Image features of a split (vision spec) or features of its captions / given texts (text spec).

    ``encoder`` reuses an already loaded encoder on a miss; ``encoder_factory`` is called only on a
    miss (a sweep loads each model at most once, and not at all when everything is cached). An
    encoder fitted on a corpus is fitted on ``fit_data``'s captions (``data``'s when absent); where
    ``fit_data`` is a :class:`SavedFit`, the encoder given must already hold that fit.
    """
    from probe.features.extract import extract

    options = options or ExtractOptions()
    inputs, content, name, fit_texts = split_inputs(spec, data, fit_data, input_set, texts)

    def load() -> Any:
        if encoder is not None:
            return encoder
        if encoder_factory is not None:
            return encoder_factory()
        from probe.encoders import load_encoder

        return load_encoder(spec, device=options.device, allow_download=options.allow_download)

    return extract(spec, data.dataset, data.split, name, inputs, content, load_encoder=load, options=options,
                   fit_texts=fit_texts, stats=stats)


def get_features(model: str | EncoderSpec, dataset: str, split: str, **options: Any) -> np.ndarray:
    """float32 features of ``dataset``/``split`` for ``model``, extracted on a cache miss.

    ``options`` are :class:`ExtractOptions` fields (``cache_dir``, ``dtype``, ``device`` ...). Vision
    models give one row per image, text models one row per caption (rows of skipped images are NaN
    so rows stay aligned with the split).
    """
    from probe.data import get_dataset
    from probe.registry import Registry

    spec = Registry.load().get(model) if isinstance(model, str) else model
    ds = get_dataset(dataset)
    data = ds.load(split)
    fit = ds.load("train") if fitted_on_corpus(spec) and "train" in ds.info.splits else None
    result = split_features(spec, data, ExtractOptions(**options), fit_data=fit)
    return result.dense(n_inputs(spec, data))
