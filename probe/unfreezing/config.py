"""The configuration of one ``probe tune`` run: which parts of each encoder train, and how.

The heads, loss and schedule are a :class:`~probe.align.config.ProbeConfig` (the same settings as
``probe run``); this adds the encoders' side. Kept free of torch so records can hold it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from probe.errors import ProbeError
from probe.unfreezing.parts import Selection, excluded_parts, notation, parse_parts

POOLINGS = ("cls", "entry")
#: what the encoders compute in while training ("auto": bf16 on a GPU that has it, else float32)
PRECISIONS = ("auto", "bf16", "fp32")
#: the named grids of ``--grid``: Aczel & Wattenhofer's Table 2 (their best setting and its four
#: one-change variants) and all 16 combinations of frozen / unfrozen embeddings and blocks per side
GRIDS = {
    "to-freeze": ("V_u^f,T_u^u", "V_f^f,T_u^u", "V_u^u,T_u^u", "V_u^f,T_f^u", "V_u^f,T_u^f"),
    "to-freeze-16": tuple(f"V_{a}^{b},T_{c}^{d}" for a in "uf" for b in "uf" for c in "uf" for d in "uf"),
}


@dataclass(frozen=True)
class TuneConfig:
    """What trains in each encoder (``parse_parts`` syntax, or stages from the paper's notation),
    the encoders' optimiser settings, the pooled output, and how often to checkpoint."""

    vision_parts: str = "none"
    text_parts: str = "none"
    encoder_lr: float = 1e-5
    encoder_weight_decay: float = 0.01
    pooling: str = "cls"
    #: optimiser steps between checkpoints (0: only at the end of each epoch)
    checkpoint_every: int = 50
    #: autocast dtype of the encoders' forward and backward; weights stay float32 ("auto": see resolved)
    precision: str = "auto"
    #: recompute each block's activations in the backward pass instead of keeping them (None: on GPUs)
    grad_checkpointing: bool | None = None
    #: records are validated by pydantic; a stored config with an unknown field is an error
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ProbeError(f"unknown pooling {self.pooling!r} for tuning; valid: {', '.join(POOLINGS)}")
        if not (self.encoder_lr > 0 and math.isfinite(self.encoder_lr)):
            raise ProbeError(f"encoder_lr must be a positive number, got {self.encoder_lr}")
        if self.encoder_weight_decay < 0:
            raise ProbeError(f"encoder_weight_decay must be >= 0, got {self.encoder_weight_decay}")
        if self.checkpoint_every < 0:
            raise ProbeError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.precision not in PRECISIONS:
            raise ProbeError(f"unknown precision {self.precision!r} for tuning; valid: {', '.join(PRECISIONS)}")
        self.selections()  # the syntax of both part lists

    def resolved(self, device: str) -> TuneConfig:
        """The configuration as it runs on ``device`` (what records and checkpoint keys hold): bf16
        and gradient checkpointing on a CUDA GPU with bf16 (fp16 would need loss scaling, so such a GPU
        runs float32), float32 without checkpointing elsewhere, unless asked otherwise."""
        import dataclasses

        cuda = device.startswith("cuda")
        precision = self.precision
        if precision == "auto":
            import torch

            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        checkpointing = cuda if self.grad_checkpointing is None else self.grad_checkpointing
        return dataclasses.replace(self, precision=precision, grad_checkpointing=checkpointing)

    def selections(self) -> tuple[Selection, Selection]:
        return _selection(self.vision_parts, "vision"), _selection(self.text_parts, "text")

    @property
    def setting(self) -> str:
        """The paper's notation where the parts are its stages (``V_u^f,T_u^u``), else the parts."""
        vision, text = self.selections()
        return notation(vision, text) or f"V[{vision.describe()}],T[{text.describe()}]"

    @property
    def tag(self) -> str:
        """File-name-safe id of the setting: ``Vuf-Tuu`` or ``v-patch_embed+cls_token.t-all``."""
        vision, text = self.selections()
        paper = notation(vision, text)
        if paper:
            return paper.replace("_", "").replace("^", "").replace(",", "-")
        return f"v-{vision.describe()}.t-{text.describe()}".replace(":", "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _selection(text: str, modality: str) -> Selection:
    if text.startswith("stages:"):  # written by from_notation: the paper's embedding / block stages
        head, *rest = text.split(",")
        names = [n for n in head.partition(":")[2].split("+") if n]
        return Selection({f"stage:{n}": None for n in names}, excluded_parts(rest, modality, text))
    return parse_parts(text, modality)


#: the CLS token of each side as a part: the vision CLS (with register tokens) and the text CLS row
CLS_PARTS = {"vision": "cls_token", "text": "cls"}


def with_cls_frozen(parts: str, modality: str) -> str:
    """``parts`` with the side's CLS token held frozen (``-cls_token`` / ``-cls``); a frozen side stays
    frozen. The ablation "To Freeze or Not to Freeze" reports in its abstract: freezing the image and
    text CLS tokens takes the mean over DataComp's 38 tasks from 37.5% to 19.4%."""
    if parts == "none":
        return parts
    return f"{parts},-{CLS_PARTS[modality]}"


def from_notation(text: str) -> tuple[str, str]:
    """``(vision_parts, text_parts)`` strings of the paper's notation (``V_u^f,T_u^u``)."""
    from probe.unfreezing.parts import parse_notation

    def stages(selection: Selection) -> str:
        if selection.frozen:
            return "none"
        return "stages:" + "+".join(k.partition(":")[2] for k in selection.parts)

    vision, text_side = parse_notation(text)
    return stages(vision), stages(text_side)
