"""The configuration of one alignment probe: head, loss and optimisation settings.

Kept apart from the training code so records and the command line can use it without torch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from probe.errors import ProbeError

#: heads on each encoder's pooled output, and heads that read every output token (freeze-align's
#: projectors, :mod:`probe.align.token_heads`, fed from token-row cache entries)
POOLED_HEADS = ("linear", "mlp", "star")
TOKEN_HEADS = ("freeze-align",)
HEADS = (*POOLED_HEADS, *TOKEN_HEADS)
LOSSES = ("infonce", "siglip")
HEAD_INITS = ("torch", "xavier")
OPTIMIZERS = ("adamw", "lion")
SIGLIP_REDUCTIONS = ("batch", "pairs")
MLP_HIDDEN = ("out_dim", "in_dim")
WARMUP_ROUNDING = ("floor", "ceil")
#: settings added after records held their identity: at their defaults they are left out of a
#: configuration's identity, so records written before them still stand for the same fit
LATER_SETTINGS = ("early_stopping", "decay_all", "siglip_reduction", "max_logit_scale", "mlp_hidden", "star_clamp",
                  "warmup_round", "warmup_steps", "eps")


def check_head(kind: str) -> str:
    if kind not in HEADS:
        raise ProbeError(f"unknown head {kind!r}; valid: {', '.join(HEADS)}")
    return kind


def check_loss(kind: str) -> str:
    if kind not in LOSSES:
        raise ProbeError(f"unknown loss {kind!r}; valid: {', '.join(LOSSES)}")
    return kind


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
    #: stop once the val score has not improved for ``patience`` epochs and keep the best epoch's heads;
    #: False trains every epoch and keeps the last (as SAIL does: main.py trains ``args.epochs`` epochs)
    early_stopping: bool = True
    #: weight decay on every parameter, norms, biases and the loss's scale and bias included (SAIL's Lion
    #: over ``model.parameters()``); False exempts those, as CLIP's AdamW groups do
    decay_all: bool = False
    #: SigLIP's summed log-sigmoid terms divided by the batch ("batch": the SigLIP paper, big_vision) or
    #: by the number of logits, B^2 ("pairs": SAIL's ``-torch.mean``)
    siglip_reduction: str = "batch"
    #: after every optimiser step the loss's scale is clamped to [1, this] (SAIL and open_clip: 100);
    #: None: InfoNCE's scale is capped at 100 inside the loss and SigLIP's is not capped
    max_logit_scale: float | None = None
    #: the MLP head's hidden width: 4 x out_dim ("out_dim") or 4 x its input width ("in_dim": SAIL's SiglipMLP)
    mlp_hidden: str = "out_dim"
    #: the star head's two branches clamped to [-this, this] before they multiply (SAIL: 1000); None: not
    star_clamp: float | None = None
    #: warmup steps = warmup x total steps, rounded down ("floor") or up ("ceil": SAIL's math.ceil)
    warmup_round: str = "floor"
    #: a fixed number of warmup steps instead of the fraction ``warmup`` (open_clip's ``--warmup``);
    #: None: the fraction
    warmup_steps: int | None = None
    #: AdamW's epsilon (torch's 1e-8; open_clip sets 1e-6 for ViTs)
    eps: float = 1e-8
    #: the training preset these values started from (``--preset``), named in records and file names
    #: (stored under this name, as records written before presets were called presets have it)
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
        for name in ("lr", "weight_decay", "warmup", "beta1", "beta2", "logit_scale_init", "logit_bias_init", "eps"):
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
        if self.warmup_steps is not None and (isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int)
                                              or self.warmup_steps < 0):
            raise ProbeError(f"warmup_steps must be a whole number >= 0 (or unset), got {self.warmup_steps!r}")
        if not self.eps > 0:
            raise ProbeError(f"eps must be positive, got {self.eps}")
        if self.logit_scale_init is not None and not self.logit_scale_init > 0:
            raise ProbeError(f"logit_scale_init must be positive, got {self.logit_scale_init}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ProbeError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name, allowed in (("head_init", HEAD_INITS), ("optimizer", OPTIMIZERS), ("siglip_reduction", SIGLIP_REDUCTIONS),
                              ("mlp_hidden", MLP_HIDDEN), ("warmup_round", WARMUP_ROUNDING)):
            if getattr(self, name) not in allowed:
                raise ProbeError(f"{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ("early_stopping", "decay_all", "norm"):
            if not isinstance(getattr(self, name), bool):
                raise ProbeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name, floor in (("max_logit_scale", 1), ("star_clamp", 0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= floor):
                raise ProbeError(f"{name} must be a number above {floor} (or unset), got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity_dict(self) -> dict[str, Any]:
        """What a record's identity holds of this configuration: every setting, except those added
        later (:data:`LATER_SETTINGS`) while they are at their defaults, which train as before them."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in asdict(self).items() if k not in LATER_SETTINGS or v != defaults[k]}

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

    @property
    def preset_changes(self) -> dict[str, list[Any]]:
        """``{setting: [the preset's value, this configuration's]}`` for every setting given that
        differs from the preset named (a typed option or a config file wins over the preset); empty
        without a preset. Runs say these in one line, and records hold them beside the config."""
        if not self.recipe:
            return {}
        preset = preset_values(self.recipe)
        return {k: [v, getattr(self, k)] for k, v in preset.items() if getattr(self, k) != v}

    def _tag(self, with_seed: bool) -> str:
        base = ProbeConfig(**preset_values(self.recipe)) if self.recipe else ProbeConfig()
        skipped = ("head", "loss", "recipe") if with_seed else ("head", "loss", "recipe", "seed")
        extra = [f"{k}{v}" for k, v in asdict(self).items() if k not in skipped and v != getattr(base, k)]
        return "-".join([self.head, self.loss, *([self.recipe] if self.recipe else []), *extra])


def preset_values(name: str, *, to_run: bool = False) -> dict[str, Any]:
    """The values of a shipped preset by name, or of a preset file by path, checked. ``to_run``: a
    preset that says probe cannot do what its source did is refused, naming why."""
    from probe.align.presets import preset_path

    preset = read_preset(str(preset_path(name)))
    if to_run and preset["unsupported"]:
        raise ProbeError(f"preset {name!r} cannot run as its source did: {preset['unsupported']}")
    if to_run and preset["tune"]:
        raise ProbeError(f"preset {name!r} trains encoder parts with the heads: run it with probe tune --preset {name} "
                         "(probe.tune(preset=...))")
    return dict(preset["values"])


def read_preset(path: str) -> dict[str, Any]:
    """``{"description", "source", "values"}`` of a preset file; an unknown setting or a value of the
    wrong kind is an error naming the file, the setting and what it takes. Read again whenever the
    file changes (a notebook that edits its config file and reruns gets the new values)."""
    try:
        stat = Path(path).stat()
    except OSError:
        stat = None
    return _read_preset(path, (stat.st_mtime_ns, stat.st_size, stat.st_ino) if stat else None)


@functools.lru_cache(maxsize=64)
def _read_preset(path: str, version: tuple[int, int, int] | None) -> dict[str, Any]:
    from probe.align.presets import read_preset_file

    data = read_preset_file(Path(path))
    from probe.tomlfiles import unknown_key

    unknown = unknown_key(data["values"], {f.name for f in fields(ProbeConfig)} - {"recipe", "seed"}, "setting")
    if unknown:
        raise ProbeError(f"{path}: [values]: {unknown}")
    defaults = ProbeConfig().to_dict()
    for name, value in data["values"].items():
        wanted = kind_of(defaults[name])
        if not is_kind(value, wanted):
            raise ProbeError(f"{path}: {name} = {value!r} must be {wanted}")
    return data


def kind_of(default: Any) -> str:
    """What a setting takes, from its default: a bool, a whole number, a number (int or float; None
    defaults are optional numbers) or text."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float) or default is None:
        return "a number"
    return "text"


def is_kind(value: Any, kind: str) -> bool:
    if kind == "true or false":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "a whole number":
        return isinstance(value, int)
    if kind == "a number":
        return isinstance(value, (int, float))
    return isinstance(value, str)
