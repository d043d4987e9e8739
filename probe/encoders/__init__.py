"""Load an encoder from its registry entry: ``load_encoder(spec) -> Encoder``.

One module per loader family; each is imported only when an entry of that family is loaded.
"""

from __future__ import annotations

import os
import sys

from probe.availability import check, downloads_allowed
from probe.encoders.base import Encoder, TextEncoder, VisionEncoder, pick_device
from probe.errors import UnavailableError
from probe.registry import EncoderSpec

__all__ = ["Encoder", "TextEncoder", "VisionEncoder", "load_encoder", "pick_device"]


def load_encoder(spec: EncoderSpec, device: str | None = None) -> Encoder:
    """Load ``spec`` on ``device`` (CUDA when present, else CPU).

    Raises :class:`UnavailableError` naming the entry and what to do when its weights are not on
    this machine. Unless downloads are allowed, the Hugging Face libraries are put in offline mode
    first so nothing reaches for the network.
    """
    status = check(spec)
    if not status.ok:
        raise UnavailableError(f"model {spec.name!r} cannot be loaded here: {status.reason}")
    if not downloads_allowed():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not sys.stderr.isatty():
        # transformers draws its own "Loading weights" bar; off a terminal it only clutters logs
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if spec.modality == "text" and spec.weights != "tfidf-svd" or spec.loader == "transformers":
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
    device = pick_device(device)
    if spec.loader == "timm":
        from probe.encoders.timm_encoder import load_timm

        return load_timm(spec, device)
    if spec.loader == "transformers":
        from probe.encoders.transformers_encoder import load_transformers

        return load_transformers(spec, device)
    if spec.loader == "sentence-transformers":
        from probe.encoders.st_encoder import load_sentence_transformer

        return load_sentence_transformer(spec, device)
    if spec.loader == "packaged":
        from probe.encoders.packaged import load_packaged

        return load_packaged(spec, device)
    from probe.encoders.baselines import load_baseline

    return load_baseline(spec, device)
