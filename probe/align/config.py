"""The configuration of one alignment probe: head, loss and optimisation settings.

Kept apart from the training code so records and the command line can use it without torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from probe.align.heads import check_head
from probe.align.losses import check_loss
from probe.errors import ProbeError

HEAD_INITS = ("torch", "xavier")
OPTIMIZERS = ("adamw", "lion")


@dataclass(frozen=True)
class ProbeConfig:
    head: str = "linear"
    loss: str = "siglip"
    out_dim: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 40
    batch_size: int = 256
    warmup: float = 0.05
    patience: int = 8
    norm: bool = True
    star_width: int = 8
    seed: int = 0
    #: the loss's starting logit scale (SigLIP: 10, InfoNCE: 1 / 0.07 when unset) and SigLIP bias (-10)
    logit_scale_init: float | None = None
    logit_bias_init: float | None = None
    #: "torch" (the layers' own initialisation) or "xavier" (uniform, zero biases: SAIL's)
    head_init: str = "torch"
    optimizer: str = "adamw"
    beta1: float = 0.9
    beta2: float = 0.999
    #: the preset these values started from (``--recipe``), named in records and file names
    recipe: str = ""
    #: records are validated by pydantic; a stored config with an unknown field is an error
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    def __post_init__(self) -> None:
        check_head(self.head)
        check_loss(self.loss)
        for name in ("out_dim", "epochs", "batch_size", "star_width", "patience", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ProbeError(f"{name} must be a whole number, got {value!r}")
        for name in ("out_dim", "epochs", "star_width"):
            if getattr(self, name) < 1:
                raise ProbeError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:  # a contrastive batch needs a negative
            raise ProbeError(f"batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}")
        if self.patience < 1:
            raise ProbeError(f"patience must be >= 1 (epochs without a better validation score before stopping), "
                             f"got {self.patience}")
        for name in ("lr", "weight_decay", "warmup", "beta1", "beta2", "logit_scale_init", "logit_bias_init"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ProbeError(f"{name} must be a finite number, got {value!r}")
        if self.weight_decay < 0:
            raise ProbeError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ProbeError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise ProbeError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.head_init not in HEAD_INITS:
            raise ProbeError(f"head_init {self.head_init!r} is not one of {', '.join(HEAD_INITS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ProbeError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.logit_scale_init is not None and not self.logit_scale_init > 0:
            raise ProbeError(f"logit_scale_init must be positive, got {self.logit_scale_init}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ProbeError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tag(self) -> str:
        """Short file-name-safe id: head, loss, the recipe, and only the values that differ from the
        recipe's (or from the defaults), so common runs get short names."""
        return self._tag(with_seed=True)

    @property
    def run_tag(self) -> str:
        """The tag with the seed always last and only once (``linear-siglip-seed0``): how records,
        saved models and run folders of this configuration are named."""
        return f"{self._tag(with_seed=False)}-seed{self.seed}"

    def _tag(self, with_seed: bool) -> str:
        from probe.align.recipes import recipe_values

        base = ProbeConfig(**recipe_values(self.recipe)) if self.recipe else ProbeConfig()
        skipped = ("head", "loss", "recipe") if with_seed else ("head", "loss", "recipe", "seed")
        extra = [f"{k}{v}" for k, v in asdict(self).items() if k not in skipped and v != getattr(base, k)]
        return "-".join([self.head, self.loss, *([self.recipe] if self.recipe else []), *extra])
