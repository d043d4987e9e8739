"""Vision encoders built with timm: hub weights, arch + state dict, or random init."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probe.encoders.base import VisionEncoder, autocast, to_numpy
from probe.encoders.families import TOKEN_POOLINGS, LoaderFamily
from probe.encoders.pooling import pool_vision_tokens
from probe.errors import ProbeError
from probe.registry import EncoderSpec

if TYPE_CHECKING:
    import numpy as np
    import torch


class TimmVisionEncoder(VisionEncoder):
    """Wraps any timm model; ``pooler`` is timm's own pre-logits head (global pool for CNNs)."""

    def __init__(self, spec: EncoderSpec, model: Any, device: str):
        super().__init__(spec, device)
        self.model = model.eval().to(device)
        self.prefix_tokens = int(getattr(model, "num_prefix_tokens", spec.prefix_tokens))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(pixels)
        if self.spec.pooling == "pooler":
            return self.model.forward_head(feats, pre_logits=True)
        if feats.ndim != 3:
            raise ProbeError(
                f"model {self.spec.name!r} returns feature maps, not tokens; use pooling = \"pooler\""
            )
        return pool_vision_tokens(feats, self.spec.pooling, self.prefix_tokens)

    def encode(self, batch: torch.Tensor) -> np.ndarray:
        import torch

        with torch.inference_mode(), autocast(self.device):
            out = self.forward(self.pixels(batch))
        return self._check_dim(to_numpy(out))


def create_timm_model(spec: EncoderSpec, pretrained: bool, allow_download: bool = False) -> Any:
    """A timm model for ``spec``, headless (num_classes=0).

    Hub weights are fetched into (or, without ``allow_download``, only read from) the same Hugging
    Face cache that availability checks, then built by timm as a ``local-dir:`` model.
    """
    import timm

    kwargs = {**spec.arch_kwargs, **spec.model_kwargs}
    if pretrained and spec.arch is None:
        folder = hub_snapshot(spec, allow_download)
        return timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0, **kwargs)
    arch = spec.arch or spec.weights
    return timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)


def hub_snapshot(spec: EncoderSpec, allow_download: bool) -> str:
    """Local folder of a timm hub repo: its config and weights (safetensors, else the .bin)."""
    from pathlib import Path

    from huggingface_hub import snapshot_download

    from probe.encoders.availability import hf_cache_dir

    def fetch(patterns: list[str]) -> str:
        return snapshot_download(spec.weights, revision=spec.revision, cache_dir=hf_cache_dir(),
                                 local_files_only=not allow_download, allow_patterns=patterns)

    folder = fetch(["config.json", "*.safetensors"])
    if not any(Path(folder).glob("*.safetensors")):
        folder = fetch(["config.json", "*.bin"])
    return folder


def load_hub_state_dict(spec: EncoderSpec, allow_download: bool = False) -> dict[str, Any]:
    """``model.safetensors`` of a hub repo holding a plain state dict for ``spec.arch``."""
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file

    from probe.encoders.availability import hf_cache_dir

    path = hf_hub_download(spec.weights, "model.safetensors", revision=spec.revision, cache_dir=hf_cache_dir(),
                           local_files_only=not allow_download)
    return load_file(path)


def strip_prefixes(state: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    """Drop wrapper prefixes (``module.``, ``backbone.``, ``encoder.``) until keys match ``keys``."""
    for prefix in ("", "module.", "backbone.", "encoder.", "model.", "base_encoder.", "module.base_encoder."):
        renamed = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if renamed and set(renamed) & keys:
            return renamed
    return state


def load_timm(spec: EncoderSpec, device: str, allow_download: bool = False) -> TimmVisionEncoder:
    if spec.arch is None:
        return TimmVisionEncoder(spec, create_timm_model(spec, pretrained=True, allow_download=allow_download), device)
    model = create_timm_model(spec, pretrained=False)
    state = strip_prefixes(load_hub_state_dict(spec, allow_download), set(model.state_dict()))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("head")]
    if missing:
        raise ProbeError(
            f"weights {spec.weights!r} do not fit timm arch {spec.arch!r}: {len(missing)} missing keys "
            f"(first: {missing[0]!r}); fix 'arch' in the registry entry {spec.name!r}"
        )
    return TimmVisionEncoder(spec, model, device)


class TimmFamily(LoaderFamily):
    """Vision models built by timm: ``hf-hub:`` weights, or ``arch`` + a hub state dict."""

    name = "timm"
    poolings = {"vision": (*TOKEN_POOLINGS["vision"], "pooler")}

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> TimmVisionEncoder:
        return load_timm(spec, device, allow_download)


FAMILY = TimmFamily()
