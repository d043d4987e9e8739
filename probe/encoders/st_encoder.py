"""Text encoders loaded with sentence-transformers, using the model's own pooling module.

The registry's ``pooling`` must agree with the model's pooling configuration; a disagreement is an
error rather than a silent choice, so the catalogue documents what really happens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probe.encoders.base import TextEncoder, cuda_dtype
from probe.errors import ProbeError
from probe.registry import EncoderSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

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
        if spec.pooling != "model" and actual is not None and actual != spec.pooling:
            raise ProbeError(
                f"model {spec.name!r} pools with {actual!r} but its registry entry says {spec.pooling!r}"
            )
        if spec.max_length < model.max_seq_length:
            model.max_seq_length = spec.max_length

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = self.model.encode(
            self.prepare(batch),
            batch_size=max(1, len(batch)),
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )
        return self._check_dim(np.asarray(out, dtype=np.float32))


def load_sentence_transformer(spec: EncoderSpec, device: str, path: str | None = None) -> SentenceTransformerEncoder:
    from sentence_transformers import SentenceTransformer

    kwargs: dict[str, Any] = {"device": device, "trust_remote_code": spec.trust_remote_code}
    if path is None:
        kwargs["revision"] = spec.revision
    model = SentenceTransformer(path or spec.weights, **kwargs)
    if device.startswith("cuda"):
        model = model.to(dtype=cuda_dtype())
    return SentenceTransformerEncoder(spec, model, device)

