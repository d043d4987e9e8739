"""Text encoders loaded with sentence-transformers, using the model's own pooling module.

The registry's ``pooling`` must agree with the model's pooling configuration; a disagreement is an
error rather than a silent choice, so the catalogue documents what really happens. An entry may
leave ``pooling`` out when the model's own module is not one of the standard ones (it is then used
as it is, unchecked).

An entry's ``model_kwargs`` holds keyword arguments for ``SentenceTransformer`` (``config_kwargs``,
``model_kwargs``, ``tokenizer_kwargs``; e.g. ``config_kwargs = { use_cache = false }`` for remote code
written for an older transformers) and ``append_eos = true`` for models whose card says to end every
text with the tokenizer's EOS token (NV-Embed-v2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import hf_cache_dir
from probe.encoders.base import TextEncoder, cuda_dtype, quiet_transformers
from probe.encoders.families import TOKEN_POOLINGS, LoaderFamily
from probe.errors import ProbeError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

#: ``model_kwargs`` keys forwarded to ``SentenceTransformer(...)``; ``append_eos`` is probe's own
ST_KWARGS = ("config_kwargs", "model_kwargs", "tokenizer_kwargs")
_MODES = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "last": "pooling_mode_lasttoken"}


def model_pooling(model: Any) -> str | None:
    """The pooling a SentenceTransformer applies, in registry terms (None if not a Pooling module)."""
    for module in model:
        config = getattr(module, "get_config_dict", None)
        if type(module).__name__ == "Pooling" and config is not None:
            settings = config()
            mode = settings.get("pooling_mode")
            if isinstance(mode, str):
                return {"lasttoken": "last"}.get(mode, mode)
            for name, key in _MODES.items():
                if settings.get(key):
                    return name
    return None


class SentenceTransformerEncoder(TextEncoder):
    def __init__(self, spec: EncoderSpec, model: Any, device: str):
        super().__init__(spec, device)
        self.model = model
        actual = model_pooling(model)
        if spec.pooling is not None and actual is not None and actual != spec.pooling:
            raise ProbeError(
                f"model {spec.name!r} pools with {actual!r} but its registry entry says {spec.pooling!r}"
            )
        if spec.max_length < model.max_seq_length:
            model.max_seq_length = spec.max_length
        if spec.tokens is not None and spec.tokens < model.max_seq_length:
            model.max_seq_length = spec.tokens

    def prepare(self, texts: Sequence[str]) -> list[str]:
        prepared = super().prepare(texts)
        if self.spec.model_kwargs.get("append_eos"):
            eos = self.model.tokenizer.eos_token or ""
            prepared = [t + eos for t in prepared]
        return prepared

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        import numpy as np

        if self.spec.pooling == "tokens":
            return self._check_dim(self._token_rows(batch))
        if self.spec.read_layers:
            return self._check_dim(self._layer_rows(batch))
        out = self.model.encode(
            self.prepare(batch),
            batch_size=max(1, len(batch)),
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        return self._check_dim(np.asarray(out, dtype=np.float32))

    def _preprocess(self, texts: list[str]) -> dict[str, Any]:
        """The pipeline's own tokenisation (``preprocess``; ``tokenize`` before sentence-transformers 6)."""
        preprocess = getattr(self.model, "preprocess", None)
        return preprocess(texts) if preprocess is not None else self.model.tokenize(texts)

    @property
    def hidden_model(self) -> Any:
        """The pipeline's transformer (its first module's model), whose hidden states are its layers."""
        return self.model[0].auto_model

    def _layer_rows(self, batch: Sequence[str]) -> np.ndarray:
        """Hidden layers of the pipeline's transformer, pooled by the pipeline's own pooling mode (a
        Normalize module after the pooling is not applied: a layer is pooled, as the output is before it)."""
        import torch

        from probe.encoders.base import to_numpy
        from probe.encoders.layers import text_layer_features

        features = self._preprocess(self.prepare(batch))
        tokens = {k: v.to(self.model.device) for k, v in features.items()
                  if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode():
            pooled = text_layer_features(self.hidden_model, tokens, self.spec.read_layers,
                                         self.spec.pooling or model_pooling(self.model))
        return to_numpy(pooled)

    def _token_rows(self, batch: Sequence[str]) -> np.ndarray:
        """The model's first module's token embeddings (the transformer's last hidden state, before the
        pipeline's pooling and normalisation) as :func:`~probe.encoders.pooling.token_rows`."""
        import torch

        from probe.encoders.base import to_numpy
        from probe.encoders.pooling import token_rows

        features = self._preprocess(self.prepare(batch))
        features = {k: v.to(self.model.device) for k, v in features.items()}
        with torch.inference_mode():
            out = self.model[0](features)
        return to_numpy(token_rows(out["token_embeddings"], out["attention_mask"], int(self.spec.tokens or 0)))


def load_sentence_transformer(spec: EncoderSpec, device: str, path: str | None = None,
                              allow_download: bool = False) -> SentenceTransformerEncoder:
    from sentence_transformers import SentenceTransformer

    quiet_transformers()
    kwargs: dict[str, Any] = {"device": device, "trust_remote_code": spec.trust_remote_code,
                              **{k: dict(v) for k, v in spec.model_kwargs.items() if k in ST_KWARGS}}
    if path is None:
        kwargs["revision"] = spec.revision
        kwargs["local_files_only"] = not allow_download
        kwargs["cache_folder"] = str(hf_cache_dir())
    model = SentenceTransformer(path or spec.weights, **kwargs)
    if device.startswith("cuda"):
        model = model.to(dtype=cuda_dtype())
    return SentenceTransformerEncoder(spec, model, device)


class SentenceTransformersFamily(LoaderFamily):
    """Text models loaded by sentence-transformers with their own pooling module."""

    name = "sentence-transformers"
    poolings = {"text": (*TOKEN_POOLINGS["text"], None)}

    def validate(self, values: Any) -> None:
        super().validate(values)
        kwargs = values.get("model_kwargs") or {}
        unknown = sorted(set(kwargs) - {*ST_KWARGS, "append_eos"})
        if unknown:
            raise ValueError(f"model_kwargs {unknown[0]!r} is not one of {', '.join((*ST_KWARGS, 'append_eos'))}")
        for key in ST_KWARGS:
            if key in kwargs and not isinstance(kwargs[key], dict):
                raise ValueError(f"model_kwargs.{key} must be a table")

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> SentenceTransformerEncoder:
        return load_sentence_transformer(spec, device, allow_download=allow_download)


FAMILY = SentenceTransformersFamily()
