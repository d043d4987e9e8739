"""Vision encoders built with timm: hub weights, arch + state dict, or random init.

``weights`` is a timm hub repo (``timm/<model>.<tag>``), or with ``arch``: a hub repo holding a
plain ``model.safetensors``, an ``https://`` URL of a released checkpoint (kept in torch's hub
cache, fetched only when downloads are allowed), or a local ``.pth`` / ``.safetensors`` file.
Checkpoints wrapped the usual ways (``{"state_dict": ...}``, ``teacher``, ``module.`` prefixes) are
unwrapped; a key that does not fit the arch is an error, never a silently random layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import Availability
from probe.encoders.base import TorchVisionEncoder
from probe.encoders.families import TOKEN_POOLINGS, LoaderFamily
from probe.encoders.pooling import pool_vision_tokens
from probe.errors import ProbeError, UnavailableError

if TYPE_CHECKING:
    import torch


class TimmVisionEncoder(TorchVisionEncoder):
    """Wraps any timm model; ``pooler`` is timm's own pre-logits head (global pool for CNNs).

    Weights and inputs are kept channels-last: convolutions run 1.6-1.8x faster that way on a CPU
    (EfficientNet-Lite0 and -Lite2 at batch 16; features equal to 1e-6) and use tensor cores on a
    GPU, while a ViT's one patch convolution runs as fast either way."""

    def __init__(self, spec: EncoderSpec, model: Any, device: str):
        import torch

        super().__init__(spec, device)
        self.model = model.eval().to(device, memory_format=torch.channels_last)
        self.prefix_tokens = int(getattr(model, "num_prefix_tokens", spec.prefix_tokens))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        pixels = pixels.contiguous(memory_format=torch.channels_last)
        if self.spec.read_layers:
            from probe.encoders.layers import timm_layer_features

            return timm_layer_features(self.model, pixels, self.spec.read_layers, self.spec.pooling, self.prefix_tokens)
        feats = self.model.forward_features(pixels)
        if self.spec.pooling == "pooler":
            return self.model.forward_head(feats, pre_logits=True)
        if feats.ndim != 3:
            raise ProbeError(
                f"model {self.spec.name!r} returns feature maps, not tokens; use pooling = \"pooler\""
            )
        if self.spec.pooling == "tokens":
            from probe.encoders.pooling import token_rows

            if feats.shape[1] != self.spec.tokens:
                raise ProbeError(f"model {self.spec.name!r} gives {feats.shape[1]} tokens at this image size, not the "
                                 f"{self.spec.tokens} its entry implies (prefix_tokens + (image_size / patch)^2); fix the entry")
            return token_rows(feats, None, feats.shape[1])
        return pool_vision_tokens(feats, self.spec.pooling, self.prefix_tokens)


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


#: top-level keys under which released checkpoints keep their weights (iBOT, DINO, MoCo v3, MAE)
WRAPPER_KEYS = ("state_dict", "teacher", "model", "module", "target_encoder")


def is_url(weights: str) -> bool:
    return weights.startswith(("https://", "http://"))


def is_local_file(weights: str) -> bool:
    return weights.endswith((".pth", ".pt", ".bin", ".safetensors")) and not is_url(weights)


def url_cache_path(url: str):
    """Where torch's hub cache keeps ``url``: the file name is prefixed with a hash of the URL,
    because releases reuse names (every iBOT size ships ``checkpoint_teacher.pth``)."""
    import hashlib
    import os
    from pathlib import Path

    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    name = hashlib.sha256(url.encode()).hexdigest()[:10] + "-" + url.rsplit("/", 1)[-1]
    return Path(home).expanduser() / "hub" / "checkpoints" / name


def read_checkpoint(spec: EncoderSpec, allow_download: bool = False) -> dict[str, Any]:
    """The raw state dict of an ``arch`` entry, from a hub repo, a URL or a local file."""
    from pathlib import Path

    if is_url(spec.weights):
        import torch

        path = url_cache_path(spec.weights)
        if not path.is_file():
            if not allow_download:
                raise UnavailableError(f"model {spec.name!r}: {path} is missing; pass --allow-download to fetch "
                                       f"{spec.weights}")
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(spec.weights, str(path), progress=True)
        return _load_file(spec, path)
    if is_local_file(spec.weights):
        path = Path(spec.weights).expanduser()
        if not path.is_file():
            raise UnavailableError(f"model {spec.name!r}: weights file {path} not found")
        return _load_file(spec, path)
    return load_hub_state_dict(spec, allow_download)


def _load_file(spec: EncoderSpec, path: Any) -> dict[str, Any]:
    import torch

    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and tensor errors of a damaged or foreign file
        raise ProbeError(f"model {spec.name!r}: cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    return unwrap_checkpoint(state)


def unwrap_checkpoint(state: Any) -> dict[str, Any]:
    """The tensor dict inside a released checkpoint (``{"state_dict": {...}, "epoch": ...}`` and kin)."""
    import torch

    while isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict):
        raise ProbeError(f"a checkpoint holding {type(state).__name__}, not a state dict")
    return state


def strip_prefixes(state: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    """Drop wrapper prefixes (``module.``, ``backbone.``, ``encoder.``, nested as in
    ``module.backbone.``) until keys match ``keys``; keys outside the wrapper (heads) are dropped."""
    current = state
    for _ in range(3):  # at most three nested wrappers
        if set(current) & keys:
            return current
        for prefix in ("module.", "backbone.", "encoder.", "model.", "base_encoder.", "teacher."):
            renamed = {k[len(prefix):]: v for k, v in current.items() if k.startswith(prefix)}
            if renamed:
                current = renamed
                break
        else:
            break
    return current if set(current) & keys else state


def load_timm(spec: EncoderSpec, device: str, allow_download: bool = False) -> TimmVisionEncoder:
    if spec.arch is None:
        return TimmVisionEncoder(spec, create_timm_model(spec, pretrained=True, allow_download=allow_download), device)
    model = create_timm_model(spec, pretrained=False)
    state = strip_prefixes(read_checkpoint(spec, allow_download), set(model.state_dict()))
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise ProbeError(f"weights {spec.weights!r} do not fit timm arch {spec.arch!r}: "
                         f"{str(exc).splitlines()[-1].strip()}; fix 'arch' in the registry entry {spec.name!r}") from None
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

    def availability(self, spec: EncoderSpec, allow_download: bool) -> Availability:
        if is_url(spec.weights):
            path = url_cache_path(spec.weights)
            if path.is_file():
                return Availability(True, f"checkpoint in torch's hub cache ({path})")
            if allow_download:
                return Availability(True, "will be downloaded from the authors' release (downloads are allowed)")
            return Availability(False, f"not in torch's hub cache ({path.parent}); needs network: pass "
                                       "--allow-download (or set PROBE_ALLOW_DOWNLOAD=1)")
        if is_local_file(spec.weights):
            from pathlib import Path

            path = Path(spec.weights).expanduser()
            return Availability(path.is_file(), f"weights file {path}" + ("" if path.is_file() else " not found"))
        return super().availability(spec, allow_download)

    def load(self, spec: EncoderSpec, device: str, allow_download: bool) -> TimmVisionEncoder:
        return load_timm(spec, device, allow_download)


FAMILY = TimmFamily()
