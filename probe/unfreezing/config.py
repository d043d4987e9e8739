"""The configuration of one ``probe tune`` run: which parts of each encoder train, and how.

The heads, loss and schedule are a :class:`~probe.align.config.ProbeConfig` (the same settings as
``probe run``); this adds the encoders' side. Kept free of torch so records can hold it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from probe.errors import ProbeError
from probe.unfreezing.parts import Selection, excluded_parts, notation, parse_parts

POOLINGS = ("cls", "entry")
#: which encoder tensors weight decay spares: "probe" (vectors, what the model's ``no_weight_decay``
#: names: timm's CLS token and position embeddings) or "open_clip" (v2.16.1 src/training/main.py:292:
#: ``p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n``)
DECAY_RULES = ("probe", "open_clip")
#: settings added after tune records held their identity: at their defaults they are left out of it
LATER_TUNE_SETTINGS = ("samples_seen", "decay_rule")
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
    #: train for this many pairs (ceil(samples_seen / batch) optimiser steps, the corpus drawn again in a new
    #: order each time it runs out, the last pass cut short) instead of the head configuration's epochs:
    #: how DataComp budgets training (``train_num_samples``); None: epochs
    samples_seen: int | None = None
    #: which encoder tensors weight decay spares (:data:`DECAY_RULES`)
    decay_rule: str = "probe"
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
        if self.samples_seen is not None and (isinstance(self.samples_seen, bool) or not isinstance(self.samples_seen, int)
                                              or self.samples_seen < 2):
            raise ProbeError(f"samples_seen must be a whole number >= 2 (or unset), got {self.samples_seen!r}")
        if self.decay_rule not in DECAY_RULES:
            raise ProbeError(f"unknown decay_rule {self.decay_rule!r}; valid: {', '.join(DECAY_RULES)}")
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

    def identity_dict(self) -> dict[str, Any]:
        """What a tune record's identity holds: every setting, except those added later
        (:data:`LATER_TUNE_SETTINGS`) while at their defaults, which train as before them."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in asdict(self).items() if k not in LATER_TUNE_SETTINGS or v != defaults[k]}

    def preset_changes(self, preset: str) -> dict[str, list[Any]]:
        """``{setting: [the preset's value, this configuration's]}`` for each encoder setting of the
        preset's [tune] table this configuration changes (empty without a preset)."""
        if not preset:
            return {}
        from probe.align.config import read_preset
        from probe.align.presets import preset_path

        table = read_preset(str(preset_path(preset)))["tune"]
        return {k: [v, getattr(self, k)] for k, v in table.items() if getattr(self, k) != v}

    def total_steps(self, per_epoch: int, epochs: int, batch_size: int) -> int:
        """Optimiser steps of a run: ``samples_seen`` pairs in batches, or ``epochs`` x ``per_epoch``."""
        if self.samples_seen is not None:
            return math.ceil(self.samples_seen / batch_size)
        return epochs * per_epoch


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


#: what ``probe tune`` takes where neither the call, a preset nor a config file says
TUNE_HEAD_DEFAULTS: dict[str, Any] = {"head": "linear", "loss": "infonce", "norm": False, "lr": 1e-3, "epochs": 10,
                                      "batch_size": 128, "out_dim": 512}
#: the encoders' settings a preset's or config file's [tune] table may set (the parts are the command's)
TUNE_TABLE_SETTINGS = ("encoder_lr", "encoder_weight_decay", "pooling", "precision", "samples_seen", "decay_rule",
                       "checkpoint_every", "grad_checkpointing")


@dataclass(frozen=True)
class TuneSettings:
    """Head and encoder settings of a tune grid after the preset, the config file and the caller's own
    (each later one winning); what they changed of the preset, the configurations say
    (``ProbeConfig.preset_changes``, ``TuneConfig.preset_changes``)."""

    head: dict[str, Any]
    tune: dict[str, Any]


def tune_settings(preset: str | None, config_file: str | None, head_given: dict[str, Any],
                  tune_given: dict[str, Any]) -> TuneSettings:
    """Resolve :class:`TuneSettings`: ``head_given`` / ``tune_given`` hold what the caller gave (None:
    not given). A preset without a [tune] table (a head fit's, like ``sail``) is refused: its source
    trained no encoder part, so running it here would run something else under its name."""
    from probe.align.config import preset_values, read_preset
    from probe.align.presets import preset_path

    head: dict[str, Any] = {}
    tune: dict[str, Any] = {}
    if preset:
        read = read_preset(str(preset_path(preset)))
        if read["unsupported"]:
            raise ProbeError(f"preset {preset!r} cannot run as its source did: {read['unsupported']}")
        if not read["tune"]:
            raise ProbeError(f"preset {preset!r} fits heads on frozen features, as its source did: run it with "
                             f"probe run --preset {preset}; probe tune takes presets with a [tune] table")
        head, tune = preset_values(preset), _tune_table(read["tune"], str(preset_path(preset)))
    if config_file:
        read = read_preset(str(config_file))
        head |= read["values"]
        tune |= _tune_table(read["tune"], str(config_file))
    head |= {k: v for k, v in head_given.items() if v is not None}
    tune |= {k: v for k, v in tune_given.items() if v is not None}
    for name, default in TUNE_HEAD_DEFAULTS.items():
        if name != "epochs" or tune.get("samples_seen") is None:  # a samples budget leaves epochs unused
            head.setdefault(name, default)
    return TuneSettings(head, tune)


def _tune_table(values: dict[str, Any], path: str) -> dict[str, Any]:
    """A [tune] table checked: known settings, each of the kind its default has."""
    from probe.align.config import is_kind, kind_of
    from probe.tomlfiles import unknown_key

    unknown = unknown_key(values, TUNE_TABLE_SETTINGS, "setting")
    if unknown:
        raise ProbeError(f"{path}: [tune]: {unknown}")
    defaults = {f.name: f.default for f in fields(TuneConfig)}
    for name, value in values.items():
        wanted = "a whole number" if name == "samples_seen" else kind_of(defaults[name])
        if not is_kind(value, wanted) and not (name == "grad_checkpointing" and isinstance(value, bool)):
            raise ProbeError(f"{path}: [tune] {name} = {value!r} must be {wanted}")
    return dict(values)
