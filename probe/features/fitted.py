"""What a corpus-fitted text encoder (TF-IDF, word vectors) is fitted on: a split's captions, or the
saved fit of an aligned model, which stands in for the captions it was fitted on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from probe.data.base import SplitData
    from probe.encoder_spec import EncoderSpec


@dataclass(frozen=True)
class SavedFit:
    """The corpus fit of a saved model's text encoder (TF-IDF), standing in for the corpus itself.

    A saved model carries the fitted state, not its training captions. Its features are keyed by the
    fingerprint of those captions, exactly as the run that fitted it keyed them (so that run's cache
    entries serve), and on a miss the encoder must arrive with its saved state loaded: nothing is ever
    refitted on the split being encoded, which would give the text head other features."""

    fingerprint: str


#: what a corpus-fitted encoder is fitted on: a split's captions, or a saved fit
FitSource = Union["SplitData", SavedFit]
#: what reaches the cache: the captions to fit on, or a saved fit's fingerprint
FitTexts = Sequence[str] | SavedFit


def fitted_on_corpus(spec: EncoderSpec) -> bool:
    """Whether ``spec`` is fitted on the training captions before it encodes (its loader family says)."""
    from probe.encoders.families import family_of

    return family_of(spec).fitted_on_corpus(spec)
