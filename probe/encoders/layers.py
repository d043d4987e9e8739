"""Hidden layers of an encoder: how many it has, how wide each is, and its features at one of them.

A layer is read from the same forward pass's intermediate outputs (timm's ``forward_intermediates``,
transformers' ``output_hidden_states``) and pooled as the entry pools its output, so layer ``L`` (the
last block) differs from the entry's own output only by the final norm the entry applies after it.
Sentence-transformers pipelines are read through their transformer module, pooled by the pipeline's
pooling mode. An entry whose family gives no access to hidden layers says so (ONNX graphs, word
vectors, controls without blocks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from probe.encoders.pooling import pool_text_tokens, pool_vision_tokens
from probe.errors import ProbeError

if TYPE_CHECKING:
    import torch


def no_layers(spec: Any, why: str) -> ProbeError:
    return ProbeError(f"{spec.name} gives no hidden layers to read ({why}); only its output")


def check_layer(spec: Any, layer: int, count: int, first: int = 1) -> None:
    if not first <= layer <= count:
        raise ProbeError(f"layer {layer} of {spec.name} is out of range: it has layers {first} to {count}")


def timm_layer_count(model: Any) -> int:
    """Blocks of a ViT, or stages of a CNN (what ``forward_intermediates`` indexes)."""
    blocks = getattr(model, "blocks", None)
    if blocks is not None and hasattr(model, "num_prefix_tokens"):
        return len(blocks)
    info = getattr(model, "feature_info", None)
    if info is None:
        raise ProbeError(f"timm model {type(model).__name__} gives no intermediate features")
    return len(info)


def timm_layer_width(model: Any, layer: int, pooling: str | None) -> int:
    if hasattr(model, "num_prefix_tokens") and getattr(model, "blocks", None) is not None:
        width = int(model.embed_dim)
        return 2 * width if pooling == "cls+mean" else width
    return int(model.feature_info[layer - 1]["num_chs"])


def timm_layer_features(model: Any, pixels: torch.Tensor, layers: Sequence[int], pooling: str | None,
                        prefix_tokens: int) -> torch.Tensor:
    """Blocks ``layers`` (1-based, ascending) of a timm ViT, each as tokens pooled the entry's way, or
    stages of a CNN averaged over their positions (as timm's global pool does): all from one forward
    pass, side by side."""
    import torch

    indices = [layer - 1 for layer in layers]
    if hasattr(model, "num_prefix_tokens") and getattr(model, "blocks", None) is not None:
        if pooling == "pooler":
            raise ProbeError("a ViT's hidden layer has no pooler; read it with pooling cls, mean or cls+mean")
        pooled = []
        for patches, prefix in model.forward_intermediates(pixels, indices=indices, output_fmt="NLC",
                                                          intermediates_only=True, return_prefix_tokens=True,
                                                          norm=False):
            tokens = torch.cat([prefix, patches], dim=1) if prefix is not None else patches
            pooled.append(pool_vision_tokens(tokens, pooling, prefix.shape[1] if prefix is not None else 0))
        return torch.cat(pooled, dim=-1)
    maps = model.forward_intermediates(pixels, indices=indices, intermediates_only=True)
    return torch.cat([feature_map.mean(dim=(2, 3)) for feature_map in maps], dim=-1)


def text_layer_features(model: Any, tokens: Any, layers: Sequence[int], pooling: str | None) -> torch.Tensor:
    """Hidden states ``layers`` of a transformers text model (the outputs of those blocks) from one forward
    pass, each pooled under the attention mask as the entry pools its output, side by side."""
    import torch

    if pooling not in ("mean", "cls", "last"):
        raise ProbeError(f"a hidden layer is pooled from its tokens; pooling {pooling!r} reads the output only")
    hidden = model(**tokens, output_hidden_states=True).hidden_states
    return torch.cat([pool_text_tokens(hidden[layer], tokens["attention_mask"], pooling) for layer in layers], dim=-1)


def text_layer_count(model: Any) -> int:
    return int(model.config.num_hidden_layers)


def encoder_layers(encoder: Any) -> list[tuple[int, int]]:
    """``(layer, width)`` of every hidden layer probe can read from a loaded encoder: a timm model's
    blocks or stages, a BERT-style text model's hidden states after each block; one line naming the
    entry for any other."""
    spec = encoder.spec
    model = getattr(encoder, "model", None)
    if spec.modality == "vision":
        if model is None or not hasattr(model, "forward_intermediates"):
            raise no_layers(spec, f"its {spec.loader} loader reads the output only")
        count = timm_layer_count(model)
        return [(k, timm_layer_width(model, k, spec.pooling)) for k in range(1, count + 1)]
    hidden = getattr(encoder, "hidden_model", None)  # a sentence-transformers pipeline's transformer
    config = getattr(hidden if hidden is not None else model, "config", None)
    if config is None or not hasattr(config, "num_hidden_layers") or not (hidden is not None
                                                                           or hasattr(encoder, "tokenizer")):
        raise no_layers(spec, f"its {spec.loader} loader reads the output only")
    width = int(config.hidden_size)
    return [(k, width) for k in range(1, int(config.num_hidden_layers) + 1)]


def chosen_layers(spec: Any, available: list[tuple[int, int]], which: str) -> list[tuple[int, int]]:
    """The layers ``which`` names among ``available``: ``all``, ``last:K`` or a comma list (``2,4``)."""
    count = len(available)
    if which == "all":
        return available
    if which.startswith("last:"):
        k = which.partition(":")[2]
        if not k.isdigit() or not 1 <= int(k) <= count:
            raise ProbeError(f"--layers {which!r}: {spec.name} has {count} layers; give last:K with K from 1 to {count}")
        return available[-int(k):]
    try:
        wanted = [int(x) for x in which.split(",") if x.strip()]
    except ValueError:
        raise ProbeError(f"--layers {which!r} is not all, last:K or a list of layer numbers (2,4)") from None
    for layer in wanted:
        check_layer(spec, layer, count)
    return [available[k - 1] for k in dict.fromkeys(wanted)]

