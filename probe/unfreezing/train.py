"""The training loop of ``probe tune``: heads and the chosen encoder parts, end to end.

Batches are drawn exactly as :func:`probe.align.train.fit_grid` draws them (caption rows, a seeded
permutation per epoch, the ragged last batch dropped, every caption of an image in the batch a
positive), the heads start from the same seeded weights, and early stopping keeps the epoch with the
best validation probing score. So a run with both encoders frozen is ``probe run`` with the same
head, computed by a second implementation. A side with trainable parts runs its encoder in the loop
(images decoded by DataLoader workers, captions tokenized per batch); a frozen side reads its cached
features.

Encoders run in eval mode throughout (no dropout, BatchNorm statistics fixed): a frozen tensor,
parameter or buffer, is the same after training, bit for bit. On accelerators the encoders compute
in bf16 (autocast) with gradient checkpointing; weights stay float32. Both can be asked for on a
CPU too (:attr:`TuneConfig.precision`, :attr:`TuneConfig.grad_checkpointing`), where the tests check them.

A checkpoint (every ``checkpoint_every`` steps and at every epoch's end) holds the trained tensors,
heads, optimiser, schedule, history and early-stopping state; a killed run resumes from it and ends
with the weights an uninterrupted run ends with. A checkpoint written for another configuration is
refused.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.align.config import ProbeConfig
from probe.errors import ProbeError
from probe.unfreezing.config import TuneConfig

CHECKPOINT = "checkpoint.pt"


@dataclass
class Side:
    """One encoder of the pair: a trainable module over raw inputs, or cached features (frozen)."""

    features: Any  # the fit split's cached features (every side has them: they say which rows are usable)
    module: Any = None  # TunableVision / TunableText when parts of it train
    trainable: Any = None  # probe.unfreezing.parts.Trainable
    inputs: Sequence[Any] = ()  # image refs or captions of the fit split (trainable side)

    @property
    def trains(self) -> bool:
        return self.module is not None

    def tensors(self) -> dict[str, Any]:
        """The trained tensors, by parameter name (what a checkpoint and a saved model keep)."""
        if not self.trains:
            return {}
        params = dict(self.module.backbone.named_parameters())
        return {name: params[name] for name in self.trainable.names}


@dataclass
class TuneResult:
    """What a finished run holds: the heads (as a fitted probe), history and cost."""

    probe: Any  # AlignmentProbe with vision_head_, text_head_, loss_ set
    history: list[dict[str, float]]
    best_epoch: int
    steps: int
    pairs_seen: int
    flops_per_step: float | None
    wall_s: float
    resumed_at: int | None = None
    error: str | None = None


@dataclass
class _State:
    epoch: int = 0  # the epoch in progress
    step: int = 0  # steps finished in that epoch
    global_step: int = 0
    losses: list[Any] = field(default_factory=list)  # this epoch's losses so far
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -math.inf
    best_state: dict | None = None
    bad_epochs: int = 0
    done: bool = False
    flops_per_step: float | None = None
    wall_s: float = 0.0


def fingerprint(*parts: Any) -> str:
    """What a checkpoint must have been written for (configurations, encoders, corpus)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tune_fit(vision: Side, text: Side, caption_image: np.ndarray, pairs: np.ndarray, cfg: ProbeConfig,
             tcfg: TuneConfig, device: str, *, validate: Callable[[Any], float] | None = None,
             run_dir: Path | None = None, run_key: str = "", workers: int = 0,
             progress: bool = True) -> TuneResult:
    """Train the heads and the sides' trainable parts; see the module docstring.

    ``pairs`` are the usable caption rows; ``validate(embedder)`` scores the current weights on the
    held-out split (the embedder maps features of each side with the heads); ``run_dir`` holds the
    checkpoint, ``run_key`` says which configuration it belongs to."""
    import torch
    from tqdm.auto import tqdm

    from probe.align.train import (
        AlignmentProbe,
        config_schedule,
        fresh_heads,
        head_groups,
        make_optimiser,
        steps_per_epoch,
    )
    from probe.unfreezing.modules import checkpoint_blocks

    if len(pairs) < 2:
        raise ProbeError(f"need at least 2 usable training pairs, got {len(pairs)}")
    tcfg = tcfg.resolved(device)
    batch_size = min(cfg.batch_size, len(pairs))
    per_epoch = steps_per_epoch(len(pairs), batch_size)
    total_steps = tcfg.total_steps(per_epoch, cfg.epochs, batch_size)
    epochs = math.ceil(total_steps / per_epoch)  # with samples_seen, the last pass over the corpus is cut short
    dims = [side.module.dim if side.trains else side.features.shape[1] for side in (vision, text)]
    v_head, t_head, loss_fn = fresh_heads(cfg, dims[0], dims[1], device)
    groups = head_groups(cfg, v_head, t_head, loss_fn) + _encoder_groups(tcfg, vision, text)
    optimiser = make_optimiser(cfg, groups)
    schedule = config_schedule(optimiser, cfg, total_steps)
    for side in (vision, text):
        if side.trains:
            side.module.to(device).eval()
            checkpoint_blocks(side.module.backbone, side.module.modality, bool(tcfg.grad_checkpointing))
    frozen = {name: torch.as_tensor(np.ascontiguousarray(side.features, dtype=np.float32), device=device)
              for name, side in (("vision", vision), ("text", text)) if not side.trains}
    owner = torch.as_tensor(caption_image, dtype=torch.long, device=device)
    state = _State()
    checkpoint = run_dir / CHECKPOINT if run_dir is not None else None
    resumed_at = None
    if checkpoint is not None and checkpoint.is_file():
        state = _load(checkpoint, run_key, vision, text, (v_head, t_head, loss_fn), optimiser, schedule)
        resumed_at = state.global_step
    probe = AlignmentProbe(cfg)

    def embedder() -> Any:
        probe.vision_head_, probe.text_head_, probe.loss_ = v_head, t_head, loss_fn
        return probe

    def save() -> None:
        if checkpoint is not None:
            _save(checkpoint, run_key, state, vision, text, (v_head, t_head, loss_fn), optimiser, schedule)

    rng = np.random.default_rng(cfg.seed)
    started = time.perf_counter() - state.wall_s
    bar = tqdm(total=total_steps, initial=state.global_step, desc="tuning", unit=" step", leave=False,
               disable=None if progress else True)
    try:
        for epoch in range(epochs):
            order = pairs[rng.permutation(len(pairs))]  # drawn for every epoch, so a resumed run draws the same
            if epoch < state.epoch or state.done:
                continue
            steps = min(per_epoch, total_steps - epoch * per_epoch)
            images = _image_batches(vision, caption_image, order, batch_size, steps, state.step, workers)
            for step in range(state.step, steps):
                rows = order[step * batch_size:(step + 1) * batch_size]
                img_rows = owner[torch.as_tensor(rows, device=device)]
                loss = _step(vision, text, frozen, img_rows, rows, images, (v_head, t_head, loss_fn), optimiser,
                             state, device, tcfg.precision, cfg.max_logit_scale)
                schedule.step()
                state.losses.append(loss)
                state.step, state.global_step = step + 1, state.global_step + 1
                bar.update(1)
                if tcfg.checkpoint_every and state.global_step % tcfg.checkpoint_every == 0:
                    state.wall_s = time.perf_counter() - started
                    save()
            _end_epoch(state, epoch, cfg, validate, embedder, vision, text, (v_head, t_head, loss_fn))
            bar.set_postfix_str(f"loss {state.history[-1]['loss']:.3f}" if state.history else "")
            state.epoch, state.step, state.losses = epoch + 1, 0, []
            state.wall_s = time.perf_counter() - started
            save()
            if state.done:
                break
    finally:
        bar.close()
    error = None
    if state.history and not math.isfinite(state.history[-1]["loss"]):
        error = f"loss became {state.history[-1]['loss']} in epoch {state.history[-1]['epoch']}"
    if state.best_state is not None:
        _restore(state.best_state, vision, text, (v_head, t_head, loss_fn))
    v_head.eval()
    t_head.eval()
    scored = [h for h in state.history if "val_probing_score" in h]
    best_epoch = int(max(scored, key=lambda h: h["val_probing_score"])["epoch"]) if scored else len(state.history)
    steps = min(len(state.history) * per_epoch, total_steps)
    return TuneResult(embedder(), state.history, best_epoch, steps, steps * batch_size, state.flops_per_step,
                      round(time.perf_counter() - started, 3), resumed_at, error)


def _encoder_groups(tcfg: TuneConfig, *sides: Side) -> list[dict[str, Any]]:
    """Optimiser groups of the trainable encoder tensors, at the encoders' learning rate: weight decay
    on matrices; none on vectors, on what the model exempts (timm: CLS token, position embeddings) or,
    under ``decay_rule = "open_clip"``, on what open_clip's rule exempts; never on row-masked tensors
    (decay would move their frozen rows)."""
    decay: list[Any] = []
    no_decay: list[Any] = []
    for side in sides:
        if not side.trains:
            continue
        exempt = set(getattr(side.module.backbone, "no_weight_decay", set)())  # timm's: tokens, position embeddings
        for name, param in side.tensors().items():
            masked = name in side.trainable.rows or name in side.trainable.frozen_rows
            if tcfg.decay_rule == "open_clip":
                spared = open_clip_spares(name, param.ndim)
            else:
                spared = param.ndim <= 1 or name in exempt
            (no_decay if spared or masked else decay).append(param)
    return [group for group in ({"params": decay, "weight_decay": tcfg.encoder_weight_decay, "lr": tcfg.encoder_lr},
                                {"params": no_decay, "weight_decay": 0.0, "lr": tcfg.encoder_lr}) if group["params"]]


def open_clip_spares(name: str, ndim: int) -> bool:
    """open_clip's weight-decay exemption (v2.16.1 src/training/main.py:292), as DataComp trained with it."""
    return ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def _image_batches(vision: Side, caption_image: np.ndarray, order: np.ndarray, batch_size: int, steps: int,
                   start: int, workers: int) -> Any:
    """An iterator of uint8 image batches for steps ``start..steps`` (None when vision is frozen)."""
    if not vision.trains:
        return None
    from torch.utils.data import DataLoader

    from probe.features.batches import ImageInputs, collate_images

    positions = caption_image[order[start * batch_size:steps * batch_size]]
    dataset: Any = ImageInputs(vision.inputs, positions.tolist(), vision.module.encoder.transform())
    loader: Any = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                             collate_fn=collate_images, prefetch_factor=2 if workers else None)
    return iter(loader)


def _step(vision: Side, text: Side, frozen: dict[str, Any], img_rows: Any, rows: np.ndarray, images: Any,
          heads: tuple[Any, Any, Any], optimiser: Any, state: _State, device: str, precision: str,
          max_scale: float | None = None) -> Any:
    """One optimiser step; its loss (a tensor: read back once per epoch). The first step is counted."""
    import torch

    from probe.align.losses import batch_positive_pairs, clamp_scale
    from probe.encoders.base import autocast
    from probe.flops import counted

    v_head, t_head, loss_fn = heads
    batch: Any = next(images) if images is not None else None
    if batch is not None and batch[2]:
        position, error = batch[2][0]
        raise ProbeError(f"training image #{position} could not be read: {error}")

    def forward() -> Any:
        if vision.trains:
            with autocast(device, precision):
                x_img = vision.module(vision.module.inputs(batch[1])).float()
        else:
            x_img = frozen["vision"][img_rows]
        if text.trains:
            with autocast(device, precision):
                x_txt = text.module(text.module.inputs([text.inputs[r] for r in rows])).float()
        else:
            x_txt = frozen["text"][torch.as_tensor(rows, device=device)]
        a = torch.nn.functional.normalize(v_head(x_img), dim=-1)
        b = torch.nn.functional.normalize(t_head(x_txt), dim=-1)
        return loss_fn(a, b, batch_positive_pairs(img_rows))

    first = state.flops_per_step is None and state.global_step == 0
    loss, forward_flops = counted(forward) if first else (forward(), None)
    optimiser.zero_grad(set_to_none=True)
    if first:
        _, backward_flops = counted(loss.backward)
        state.flops_per_step = (forward_flops or 0.0) + (backward_flops or 0.0) or None
    else:
        loss.backward()
    optimiser.step()
    clamp_scale(loss_fn, max_scale)
    return loss.detach()


def _end_epoch(state: _State, epoch: int, cfg: ProbeConfig, validate: Callable[[Any], float] | None,
               embedder: Callable[[], Any], vision: Side, text: Side, heads: tuple[Any, Any, Any]) -> None:
    """The epoch's mean loss, validation, the best state so far and early stopping."""
    import torch

    from probe.align.train import early_stopping_step

    values = torch.stack(state.losses).float().cpu() if state.losses else torch.zeros(0)
    entry: dict[str, float] = {"epoch": epoch + 1, "loss": float(values.mean()) if len(values) else float("nan")}
    if len(values) and not torch.isfinite(values).all():
        entry["loss"] = float(values[~torch.isfinite(values)][0])
        state.history.append(entry)
        state.done = True
        return
    if validate is not None:
        for head in heads[:2]:
            head.eval()
        entry["val_probing_score"] = score = validate(embedder())
        for head in heads[:2]:
            head.train()
        early_stopping_step(state, score, cfg, lambda: _snapshot(vision, text, heads))
    state.history.append(entry)


def _snapshot(vision: Side, text: Side, heads: tuple[Any, Any, Any]) -> dict[str, Any]:
    return copy.deepcopy({"vision": {k: v.detach() for k, v in vision.tensors().items()},
                          "text": {k: v.detach() for k, v in text.tensors().items()},
                          "heads": [h.state_dict() for h in heads]})


def _restore(snapshot: dict[str, Any], vision: Side, text: Side, heads: tuple[Any, Any, Any]) -> None:
    import torch

    with torch.no_grad():
        for side, name in ((vision, "vision"), (text, "text")):
            for key, tensor in side.tensors().items():
                tensor.copy_(snapshot[name][key])
    for head, state in zip(heads, snapshot["heads"], strict=True):
        head.load_state_dict(state)


def _save(path: Path, run_key: str, state: _State, vision: Side, text: Side, heads: tuple[Any, Any, Any],
          optimiser: Any, schedule: Any) -> None:
    """The run's whole state, written to a temporary file and renamed (a kill leaves the last one)."""
    import torch

    from probe.io import atomic_open

    payload = {"run_key": run_key, "epoch": state.epoch, "step": state.step, "global_step": state.global_step,
               "losses_tensor": torch.stack(state.losses).cpu() if state.losses else torch.zeros(0),
               "history": state.history, "best_score": state.best_score, "best_state": state.best_state,
               "bad_epochs": state.bad_epochs, "done": state.done,
               "flops_per_step": state.flops_per_step, "wall_s": state.wall_s,
               "weights": _snapshot(vision, text, heads), "optimiser": optimiser.state_dict(),
               "schedule": schedule.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def _load(path: Path, run_key: str, vision: Side, text: Side, heads: tuple[Any, Any, Any], optimiser: Any,
          schedule: Any) -> _State:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file: pickle, zip and tensor errors
        raise ProbeError(f"cannot read the checkpoint {path} ({type(exc).__name__}); delete it to start over") from None
    if not isinstance(payload, dict):
        raise ProbeError(f"the checkpoint {path} holds a {type(payload).__name__}, not a probe tune checkpoint; delete "
                         "it to start over")
    if payload.get("run_key") != run_key:
        raise ProbeError(f"the checkpoint {path} was written by another configuration (key {payload.get('run_key')!r}, "
                         f"this run {run_key!r}); delete it to start over, or use another --results folder")
    device = next(heads[0].parameters()).device
    try:
        _restore(payload["weights"], vision, text, heads)
        optimiser.load_state_dict(payload["optimiser"])
        schedule.load_state_dict(payload["schedule"])
        losses = payload["losses_tensor"]
        return _load_state(payload, losses, device)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProbeError(f"the checkpoint {path} does not fit this run ({type(exc).__name__}: {first[:200]}); "
                         "delete it to start over") from None


def _load_state(payload: dict[str, Any], losses: Any, device: Any) -> _State:
    return _State(epoch=payload["epoch"], step=payload["step"], global_step=payload["global_step"],
                  losses=[v.to(device) for v in losses] if len(losses) else [], history=payload["history"],
                  best_score=payload["best_score"], best_state=payload["best_state"],
                  bad_epochs=payload["bad_epochs"], done=payload["done"], flops_per_step=payload["flops_per_step"],
                  wall_s=payload["wall_s"])
