"""Encoders loaded with Hugging Face transformers (ViT-style vision models, BERT-style text models)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import hf_cache_dir
from probe.encoders.base import TextEncoder, TorchVisionEncoder, autocast, quiet_transformers, to_numpy
from probe.encoders.families import TOKEN_POOLINGS, LoaderFamily
from probe.encoders.pooling import pool_text_tokens, pool_vision_tokens

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import torch


def model_class(spec: EncoderSpec) -> Any:
    import transformers

    return getattr(transformers, spec.auto_class or "AutoModel")


def load_pretrained(spec: EncoderSpec, allow_download: bool = False) -> Any:
    return model_class(spec).from_pretrained(
        spec.weights,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        local_files_only=not allow_download,
        cache_dir=hf_cache_dir(),
        **spec.model_kwargs,
    )


class TransformersVisionEncoder(TorchVisionEncoder):
    def __init__(self, spec: EncoderSpec, model: Any, device: str):
        super().__init__(spec, device)
        self.model = model.eval().to(device)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixels)
        if self.spec.pooling == "projection":
            return out.image_embeds
        if self.spec.pooling == "pooler":
            return out.pooler_output
        return pool_vision_tokens(out.last_hidden_state, self.spec.pooling, self.spec.prefix_tokens)


class TransformersTextEncoder(TextEncoder):
    def __init__(self, spec: EncoderSpec, model: Any, tokenizer: Any, device: str):
        super().__init__(spec, device)
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(
            self.prepare(batch),
            padding=True,
            truncation=True,
            max_length=min(self.spec.max_length, self.spec.tokens or self.spec.max_length),
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode(), autocast(self.device):
            if self.spec.read_layers:
                from probe.encoders.layers import text_layer_features

                return self._check_dim(to_numpy(text_layer_features(self.model, tokens, self.spec.read_layers,
                                                                    self.spec.pooling)))
            out = self.model(**tokens)
            if self.spec.pooling == "projection":
                pooled = out.text_embeds
            elif self.spec.pooling == "pooler":
                pooled = out.pooler_output
            elif self.spec.pooling == "tokens":
                from probe.encoders.pooling import token_rows

                pooled = token_rows(out.last_hidden_state, tokens["attention_mask"], int(self.spec.tokens or 0))
            else:
                pooled = pool_text_tokens(out.last_hidden_state, tokens["attention_mask"], self.spec.pooling)
        return self._check_dim(to_numpy(pooled))


def load_transformers(spec: EncoderSpec, device: str, allow_download: bool = False
                      ) -> TransformersVisionEncoder | TransformersTextEncoder:
    quiet_transformers()
    model = load_pretrained(spec, allow_download)
    if spec.modality == "vision":
        return TransformersVisionEncoder(spec, model, device)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        spec.weights, revision=spec.revision, trust_remote_code=spec.trust_remote_code,
        local_files_only=not allow_download, cache_dir=hf_cache_dir(),
    )
    return TransformersTextEncoder(spec, model, tokenizer, device)


class TransformersFamily(LoaderFamily):
    """ViT-style vision models and BERT-style text models through ``transformers`` Auto classes."""

    name = "transformers"
    poolings = {"vision": (*TOKEN_POOLINGS["vision"], "pooler", "projection"),
                "text": (*TOKEN_POOLINGS["text"], "pooler", "projection")}

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> TransformersVisionEncoder | TransformersTextEncoder:
        return load_transformers(spec, device, allow_download)


FAMILY = TransformersFamily()
