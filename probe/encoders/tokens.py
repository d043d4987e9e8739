"""An entry's output tokens, unpooled, as a feature-cache variant: what token heads (freeze-align's
projectors) read.

A token variant (:meth:`~probe.encoder_spec.EncoderSpec.as_tokens`) is cached like any pooled entry
(content-addressed, resumable, memory-mapped float16), one row per image or caption: the count of real
tokens, then every token, zeros past the count (:func:`~probe.encoders.pooling.token_rows`). Its width
must be known before any model loads, so that a cached variant is found without loading one: a ViT's
token count is its prefix tokens plus (image size / patch size)^2, a text encoder's the slots asked
for. An extraction that sees another count says so in one line.
"""

from __future__ import annotations

import re

from probe.encoder_spec import EncoderSpec
from probe.errors import ProbeError

#: the loader families whose entries give token sequences, by modality
TOKEN_FAMILIES = {"vision": ("timm",), "text": ("transformers", "sentence-transformers")}


def token_width(spec: EncoderSpec) -> int:
    """The width of one output token (a ``cls+mean`` entry's output is two tokens wide)."""
    return spec.embed_dim // 2 if spec.pooling == "cls+mean" else spec.embed_dim


def width_of_rows(row_width: int, slots: int) -> int:
    """The token width of token rows ``row_width`` wide holding ``slots`` tokens (rows are
    ``1 + slots x width``: the count, then the tokens; :meth:`~probe.encoder_spec.EncoderSpec.as_tokens`)."""
    return (row_width - 1) // slots


def vision_token_count(spec: EncoderSpec) -> int:
    """Prefix tokens (CLS, registers) plus patches of a timm ViT at the entry's image size; the patch size
    from ``arch_kwargs`` or the architecture's name (``..._patch14_...``)."""
    patch = spec.arch_kwargs.get("patch_size")
    if patch is None:
        found = re.search(r"patch(\d+)", spec.arch or spec.weights)
        if found is None:
            raise ProbeError(f"{spec.name} has no patch tokens to keep (its architecture names no patch size)")
        patch = int(found.group(1))
    size = spec.model_kwargs.get("img_size") or spec.arch_kwargs.get("img_size") or spec.image_size
    if size is None:
        raise ProbeError(f"{spec.name} names no image size, so its token count is not known before it loads")
    size = int(size)
    return spec.prefix_tokens + (size // int(patch)) ** 2


def token_spec(spec: EncoderSpec, text_slots: int) -> EncoderSpec:
    """``spec``'s token variant: every token of a vision entry, or a text entry's first ``text_slots``
    (its ``max_length`` if shorter)."""
    random_network = spec.loader == "baseline" and spec.weights == "random-init"  # a control of the same kinds
    if not (random_network or spec.loader in TOKEN_FAMILIES.get(spec.modality, ())) or bool(spec.read_layers) or \
            spec.pooling in ("pooler", "projection"):
        raise ProbeError(f"{spec.name} gives no output tokens to a token head (loader {spec.loader}, pooling "
                         f"{spec.pooling}); token heads take {', '.join(TOKEN_FAMILIES['vision'])} vision entries and "
                         f"{', '.join(TOKEN_FAMILIES['text'])} text entries")
    if spec.modality == "vision":
        return spec.as_tokens(vision_token_count(spec), token_width(spec))
    return spec.as_tokens(min(text_slots, spec.max_length), token_width(spec))
