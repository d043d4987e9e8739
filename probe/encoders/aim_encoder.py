"""AIM v1 (El-Nouby et al. 2024, autoregressive image models) through the authors' own package.

AIM v1 has no timm or transformers class and no CLS token; its weights load only through Apple's
``aim-v1`` package (``pip install 'aim-v1 @ git+https://github.com/apple/ml-aim.git#subdirectory=aim-v1'``),
whose ``AIMForImageClassification.from_pretrained`` reads the hub repo (``apple/aim-600M`` ...).
The model is a patch embedding (``preprocessor``), a ``trunk`` of blocks that returns the average of
the blocks its attentive probe reads (the last six) together with every block's output, and that
probe (``head``, trained on ImageNet labels, so never used here). Poolings:

- ``probe-layers``: the mean over patches of the average of the probed blocks: the frozen-trunk
  features the paper's numbers come from.
- ``mean``: the mean over patches of the last block's output after the trunk's final norm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import Availability
from probe.encoders.base import TorchVisionEncoder
from probe.encoders.families import LoaderFamily
from probe.errors import UnavailableError

if TYPE_CHECKING:
    import torch

#: where the package keeps the model class: today's layout, then its first release's
MODULES = ("aim.v1.torch.models", "aim.torch.models")
INSTALL = "pip install 'aim-v1 @ git+https://github.com/apple/ml-aim.git#subdirectory=aim-v1'"


def model_class() -> Any | None:
    """``AIMForImageClassification`` from the installed package, or None when it is not installed."""
    for name in MODULES:
        try:
            return importlib.import_module(name).AIMForImageClassification
        except (ImportError, AttributeError):
            continue
    return None


class AimVisionEncoder(TorchVisionEncoder):
    def __init__(self, spec: EncoderSpec, model: Any, device: str):
        super().__init__(spec, device)
        self.model = model.eval().to(device)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        trunk = self.model.trunk
        averaged, blocks = trunk(self.model.preprocessor(pixels))
        if self.spec.pooling == "probe-layers":
            return averaged.mean(dim=1)
        last = blocks[-1] if trunk.post_trunk_norm is None else trunk.post_trunk_norm(blocks[-1])
        return last.mean(dim=1)


class AimFamily(LoaderFamily):
    name = "aim-v1"
    poolings = {"vision": ("probe-layers", "mean")}

    def availability(self, spec: EncoderSpec, allow_download: bool) -> Availability:
        if model_class() is None:
            return Availability(False, f"needs Apple's aim-v1 package (not on PyPI): `{INSTALL}`")
        return super().availability(spec, allow_download)

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> AimVisionEncoder:
        cls = model_class()
        if cls is None:
            raise UnavailableError(f"model {spec.name!r} needs Apple's aim-v1 package: `{INSTALL}`")
        from probe.encoders.availability import hf_cache_dir

        model = cls.from_pretrained(spec.weights, revision=spec.revision, cache_dir=hf_cache_dir(),
                                    local_files_only=not allow_download)
        return AimVisionEncoder(spec, model, device)


FAMILY = AimFamily()
