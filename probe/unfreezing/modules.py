"""An encoder as a trainable torch module: the loaded encoder's own network, its output pooled.

``probe tune`` trains through these. A vision module takes normalised pixels; a text module takes
the token tensors its :meth:`TunableText.tokenize` makes. Both pool as the run asks: ``cls`` (the CLS
token's output, as Aczel & Wattenhofer align; an encoder without one, a CNN, keeps its own pooling)
or ``entry`` (the registry entry's pooling, the features ``probe run`` caches).

:class:`TunedEncoder` puts a module back behind the :class:`~probe.encoders.base.Encoder` protocol,
so the feature cache, evaluation and saved models use a tuned encoder like any other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch  # this module is imported only where tuning starts
from torch import nn

from probe.encoder_spec import EncoderSpec
from probe.encoders.base import Encoder
from probe.errors import ProbeError

POOLINGS = ("cls", "entry")
#: loader families whose encoders hold no weights that training could change, with the reason
NOT_TRAINABLE = {"onnx": "an ONNX graph has fixed weights", "word-vectors": "a word-vector table is not a network",
                 "aim-v1": "its loader has no trainable module yet"}


def not_trainable(spec: EncoderSpec) -> str | None:
    """Why no training can change ``spec`` (a control without weights, an ONNX graph), or None."""
    if spec.loader in NOT_TRAINABLE:
        return (f"{spec.name} cannot be tuned: {NOT_TRAINABLE[spec.loader]} ({spec.loader} loader); "
                "tune a timm vision model or a transformers / sentence-transformers text model")
    if spec.loader == "transformers" and spec.modality == "vision":
        return (f"{spec.name} cannot be tuned yet: its parts are named for timm vision models; use a timm entry of "
                "the same weights")
    if spec.loader == "baseline" and spec.weights in ("pixels", "tfidf-svd"):
        return f"{spec.name} cannot be tuned: it is a control with no weights to train ({spec.weights})"
    return None


class TunableVision(nn.Module):
    """A timm vision model, pooled: ``forward(pixels) -> [N, dim]``."""

    modality = "vision"

    def __init__(self, encoder: Any, pooling: str):
        super().__init__()
        model = getattr(encoder, "model", None)
        if model is None or not hasattr(model, "forward_features"):
            raise ProbeError(f"{encoder.spec.name} cannot be tuned: only timm vision models are trainable here")
        self.encoder, self.backbone = encoder, model
        self.prefix_tokens = int(getattr(model, "num_prefix_tokens", encoder.spec.prefix_tokens))
        has_cls = bool(self.prefix_tokens) and hasattr(model, "cls_token") and model.cls_token is not None
        self.pooling = "cls" if pooling == "cls" and has_cls else encoder.spec.pooling
        self.dim = int(getattr(model, "embed_dim", 0)) if self.pooling == "cls" else encoder.spec.embed_dim

    def forward(self, pixels: Any) -> Any:
        from probe.encoders.pooling import pool_vision_tokens

        feats = self.backbone.forward_features(pixels.contiguous(memory_format=torch.channels_last))
        if self.pooling == "pooler":
            return self.backbone.forward_head(feats, pre_logits=True)
        return pool_vision_tokens(feats, self.pooling, self.prefix_tokens)

    def inputs(self, batch: Any) -> Any:
        """uint8 images (as the DataLoader gives them) normalised on the module's device."""
        return self.encoder.pixels(batch)


class TunableText(nn.Module):
    """A Hugging Face text transformer (bare, or inside a sentence-transformers pipeline), pooled."""

    modality = "text"

    def __init__(self, encoder: Any, pooling: str):
        super().__init__()
        from probe.encoders.st_encoder import SentenceTransformerEncoder

        self.encoder, self.spec = encoder, encoder.spec
        self.pipeline = encoder.model if isinstance(encoder, SentenceTransformerEncoder) else None
        if self.pipeline is not None:
            self.backbone, self.tokenizer = self.pipeline[0].auto_model, self.pipeline.tokenizer
        else:
            self.backbone, self.tokenizer = getattr(encoder, "model", None), getattr(encoder, "tokenizer", None)
        if self.backbone is None or self.tokenizer is None or not hasattr(self.backbone, "get_input_embeddings"):
            raise ProbeError(f"{self.spec.name} cannot be tuned: only transformers and sentence-transformers text "
                             "models are trainable here")
        self.pooling = pooling if pooling == "cls" and self.cls_id is not None else "entry"
        self.dim = int(self.backbone.config.hidden_size) if self.pooling == "cls" else self.spec.embed_dim

    @property
    def cls_id(self) -> int | None:
        """The CLS token's row in the token-embedding matrix ([CLS], or <s> for RoBERTa and MPNet)."""
        token = getattr(self.tokenizer, "cls_token_id", None)
        return int(token) if token is not None else None

    def tokenize(self, texts: Sequence[str]) -> dict[str, Any]:
        prepared = self.encoder.prepare(list(texts))
        if self.pipeline is not None:  # sentence-transformers 6 calls it preprocess; older releases, tokenize
            tokens = getattr(self.pipeline, "preprocess", self.pipeline.tokenize)(prepared)
        else:
            tokens = self.tokenizer(prepared, padding=True, truncation=True, max_length=self.spec.max_length,
                                    return_tensors="pt")
        device = next(self.backbone.parameters()).device
        return {k: v.to(device) for k, v in tokens.items() if hasattr(v, "to")}

    inputs = tokenize

    def forward(self, tokens: dict[str, Any]) -> Any:
        from probe.encoders.pooling import pool_text_tokens

        if self.pipeline is not None:
            if self.pooling == "cls":
                return self.pipeline[0](dict(tokens))["token_embeddings"][:, 0]
            return self.pipeline(dict(tokens))["sentence_embedding"]
        hidden = self.backbone(**tokens).last_hidden_state
        pooling = "cls" if self.pooling == "cls" else self.spec.pooling
        return pool_text_tokens(hidden, tokens["attention_mask"], pooling)


def checkpoint_blocks(backbone: nn.Module, modality: str, on: bool) -> int:
    """Gradient checkpointing of each block (:func:`probe.unfreezing.parts.block_modules`): its activations
    are recomputed in the backward pass instead of kept. The number of blocks wrapped.

    probe wraps the blocks itself rather than calling the libraries' switches: Hugging Face models
    checkpoint only in training mode, and encoders tune in eval mode (no dropout, BatchNorm fixed);
    timm's reentrant variant would pass no gradient into trainable blocks behind frozen embeddings.
    Non-reentrant checkpointing does both, with keyword arguments, under autocast."""
    from probe.unfreezing.parts import block_modules

    names = block_modules(backbone, modality)
    for name in names:
        block = backbone.get_submodule(name)
        block.__dict__.pop("forward", None)  # the class's forward again
        if on:
            block.forward = _checkpointed(block.forward)
    return len(names) if on else 0


def _checkpointed(forward: Any) -> Any:
    import functools

    from torch.utils.checkpoint import checkpoint

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


def tunable(encoder: Any, pooling: str) -> Any:
    """The trainable module of a loaded encoder (every parameter frozen until parts are chosen)."""
    if pooling not in POOLINGS:
        raise ProbeError(f"unknown pooling {pooling!r} for tuning; valid: {', '.join(POOLINGS)}")
    module = (TunableVision if encoder.spec.modality == "vision" else TunableText)(encoder, pooling)
    module.float()  # master weights in float32; accelerators compute in bf16 under autocast
    for param in module.parameters():
        param.requires_grad_(False)
    return module


def module_parts(module: Any) -> tuple[dict[str, Any], list[str]]:
    """:func:`probe.unfreezing.parts.part_map` of a tunable module's network (a text module's CLS row included)."""
    from probe.unfreezing.parts import part_map

    return part_map(module.backbone, module.modality, cls_row=getattr(module, "cls_id", None))


def pooled_spec(spec: EncoderSpec, module: Any, revision_suffix: str = "") -> EncoderSpec:
    """The entry as the module pools it: features of another pooling (or of tuned weights, by
    ``revision_suffix``) get cache keys of their own."""
    pooling = spec.pooling if module.pooling == "entry" else module.pooling
    return dataclasses.replace(spec, pooling=pooling, embed_dim=module.dim,
                               revision=spec.revision + revision_suffix)


class TunedEncoder(Encoder):
    """A tunable module behind the :class:`Encoder` protocol (inference, float32 features out)."""

    def __init__(self, spec: EncoderSpec, module: Any, device: str):
        super().__init__(spec, device)
        self.module = module
        self.modality = module.modality

    def transform(self) -> Any:
        return self.module.encoder.transform()

    def prepare(self, texts: Sequence[str]) -> list[str]:  # the module prepares (prefixes) its own texts
        return list(texts)

    def encode(self, batch: Any) -> np.ndarray:
        from probe.encoders.base import autocast, to_numpy

        self.module.eval()
        with torch.inference_mode(), autocast(self.device):
            out = self.module(self.module.inputs(batch))
        return self._check_dim(to_numpy(out))
