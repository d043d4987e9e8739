"""The loader registry: each loader family is one module that declares what it accepts and does.

A family (a :class:`LoaderFamily` subclass named ``FAMILY`` in its module) says which modalities
and poolings its entries may use, whether an entry is fitted on a corpus before encoding, whether
its weights can load on this machine (and why not), and how to load it. Registry validation,
availability, feature extraction and loading all ask the family, so a new family is one module
plus its line in :data:`FAMILY_MODULES`. Family modules import torch and friends only inside the
functions that load weights, so asking a family a question stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from probe.encoder_spec import EncoderSpec
    from probe.encoders.availability import Availability
    from probe.encoders.base import Encoder

#: registry ``loader`` value -> the module holding its ``FAMILY``
FAMILY_MODULES = {
    "timm": "probe.encoders.timm_encoder",
    "transformers": "probe.encoders.transformers_encoder",
    "sentence-transformers": "probe.encoders.st_encoder",
    "packaged": "probe.encoders.packaged",
    "baseline": "probe.encoders.baselines",
    "onnx": "probe.encoders.onnx_encoder",
    "word-vectors": "probe.encoders.word_vectors",
    "aim-v1": "probe.encoders.aim_encoder",
}
#: Poolings shared by the families that see token sequences (see :mod:`probe.encoders.pooling`).
TOKEN_POOLINGS = {"vision": ("cls", "mean", "cls+mean", "mean_all"), "text": ("mean", "cls", "last")}


class LoaderFamily:
    """What a loader family declares; subclasses override what differs from these defaults."""

    name: ClassVar[str] = ""
    #: extraction batch on a CPU when the user gives none (measured: `python -m benchmarks cpu-batch`)
    cpu_batch_size: ClassVar[int] = 16
    #: modality -> valid ``pooling`` values; ``None`` among them means the field may be left out
    poolings: ClassVar[Mapping[str, tuple[str | None, ...]]] = {}

    def valid_poolings(self, modality: str, weights: str) -> tuple[str | None, ...]:
        """Poolings an entry of this family, modality and weights may declare."""
        return self.poolings.get(modality, ())

    def validate(self, values: Mapping[str, Any]) -> None:
        """Raise ValueError naming the field when a registry entry cannot work with this family."""
        modality, pooling = values.get("modality"), values.get("pooling")
        if modality not in self.poolings:
            raise ValueError(f"loader {self.name!r} has no {modality} encoders (it loads: "
                             f"{', '.join(self.poolings)})")
        allowed = self.valid_poolings(str(modality), str(values.get("weights")))
        if pooling not in allowed:
            named = [p for p in allowed if p is not None]
            if pooling is None:
                raise ValueError(f"missing field pooling (one of {', '.join(named)})")
            if not named:
                raise ValueError(f"pooling does not apply to {values.get('weights')!r} entries of loader "
                                 f"{self.name!r}; remove it")
            raise ValueError(f"pooling {pooling!r} is not one of {', '.join(named)}"
                             + (" (or leave it out)" if None in allowed else ""))

    def fitted_on_corpus(self, spec: EncoderSpec) -> bool:
        """Whether the encoder is fitted on the training captions before it encodes (TF-IDF)."""
        return False

    def half_precision(self, spec: EncoderSpec, device: str) -> bool:
        """Whether the encoder computes in half precision on ``device`` (torch models on a GPU)."""
        return device.startswith("cuda")

    def availability(self, spec: EncoderSpec, allow_download: bool) -> Availability:
        """Whether ``spec`` can load here, with a one-line reason either way (no network, no torch)."""
        from probe.encoders.availability import hub_availability

        return hub_availability(spec, allow_download)

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> Encoder:
        raise NotImplementedError


def family(name: str) -> LoaderFamily:
    """The family registered under ``name``; ValueError listing the valid names otherwise."""
    if name not in FAMILY_MODULES:
        raise ValueError(f"loader {name!r} is not one of {', '.join(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name]).FAMILY


def family_of(spec: EncoderSpec) -> LoaderFamily:
    return family(spec.loader)
