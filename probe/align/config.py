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
    #: records are validated by pydantic; a stored config with an unknown field is an error
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    def __post_init__(self) -> None:
        check_head(self.head)
        check_loss(self.loss)
        for name in ("out_dim", "epochs", "batch_size", "star_width"):
            if getattr(self, name) < 1:
                raise ProbeError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ProbeError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise ProbeError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tag(self) -> str:
        """Short file-name-safe id; the defaults are left out so common runs get short names."""
        base = ProbeConfig()
        extra = [f"{k}{v}" for k, v in asdict(self).items() if k not in ("head", "loss") and v != getattr(base, k)]
        return "-".join([self.head, self.loss, *extra])
