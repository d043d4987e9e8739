"""Fit alignment heads on cached frozen features.

An :class:`AlignmentProbe` follows scikit-learn's habits: the constructor stores a
:class:`ProbeConfig`, ``fit`` returns ``self``, learned state ends in ``_``. :func:`fit_grid` fits
several configurations in one pass over the features: configurations that share batch size,
epochs and seed see the very same batches, so a head/loss/lr grid costs one data pass.

Training pairs are (image, caption) rows; a batch holding two captions of one image marks both as
positives (multi-positive losses). AdamW, linear warmup then cosine decay, early stopping on the
validation probing score (best epoch kept). Deterministic on CPU for a given seed.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from probe.align.config import ProbeConfig
from probe.align.heads import heads_for
from probe.align.losses import batch_positive_pairs, clamp_scale, loss_for, make_loss
from probe.errors import ProbeError
from probe.features.paired import PairedFeatures, is_streamed
from probe.flops import counted


@dataclass
class _Trainer:
    """One configuration's modules, optimiser and early-stopping state inside a grid."""

    probe: AlignmentProbe
    vision: Any
    text: Any
    loss: Any
    optimiser: Any
    schedule: Any
    best_score: float = -math.inf
    best_state: dict | None = None
    bad_epochs: int = 0
    done: bool = False
    flops_per_step: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)


class AlignmentProbe:
    """A vision head and a text head mapping frozen features into one space."""

    # learned state, set by fit / fit_grid
    vision_head_: Any
    text_head_: Any
    loss_: Any
    history_: list[dict[str, float]]
    best_epoch_: int
    steps_: int
    flops_per_step_: float | None = None
    pairs_seen_: int = 0
    error_: str | None = None

    def __init__(self, config: ProbeConfig | None = None):
        self.config = config or ProbeConfig()

    def fit(self, train: PairedFeatures, val: PairedFeatures | None = None, device: str = "cpu") -> AlignmentProbe:
        fit_grid([self], train, val, device=device)
        if self.error_:
            raise ProbeError(self.error_)
        return self

    def _embed(self, head: Any, x: np.ndarray) -> np.ndarray:
        import torch

        device = next(head.parameters()).device
        with torch.inference_mode():
            out = head(torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device))
            return torch.nn.functional.normalize(out, dim=-1).cpu().numpy()

    def embed_images(self, x: np.ndarray) -> np.ndarray:
        """L2-normalised aligned image embeddings."""
        return self._embed(self.vision_head_, x)

    def embed_texts(self, x: np.ndarray) -> np.ndarray:
        """L2-normalised aligned text embeddings."""
        return self._embed(self.text_head_, x)


def _validation_score(trainer: _Trainer, val: PairedFeatures) -> float:
    from probe.evaluation.held_out import rank_held_out
    from probe.metrics.retrieval import metrics_from_ranks

    probe = trainer.probe
    probe.vision_head_, probe.text_head_ = trainer.vision, trainer.text
    trainer.vision.eval()
    trainer.text.eval()
    ranked = rank_held_out(probe, val)
    trainer.vision.train()
    trainer.text.train()
    return metrics_from_ranks(ranked.i2t, ranked.t2i)["probing_score"]


def fresh_heads(cfg: ProbeConfig, v_dim: int, t_dim: int, device: str) -> tuple[Any, Any, Any]:
    """``(vision head, text head, loss)`` as a fit with ``cfg`` starts them: seeded, so every fit of
    the same configuration (here, in ``probe tune``) starts from the same weights."""
    import torch

    torch.manual_seed(cfg.seed)  # initialised on the CPU: the same starting weights on every device
    vision, text = heads_for(cfg, v_dim, t_dim)
    if cfg.head_init == "xavier":
        for module in (*vision.modules(), *text.modules()):
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                torch.nn.init.zeros_(module.bias)
    return vision.to(device), text.to(device), loss_for(cfg).to(device)


def head_groups(cfg: ProbeConfig, vision: Any, text: Any, loss: Any) -> list[dict[str, Any]]:
    """Optimiser groups of the heads: weight decay on matrices, none on biases, norms and the loss's
    scale; or, with ``decay_all``, weight decay on every one of them (SAIL's Lion)."""
    if cfg.decay_all:
        return [{"params": [*vision.parameters(), *text.parameters(), *loss.parameters()],
                 "weight_decay": cfg.weight_decay}]
    decay = [p for m in (vision, text) for n, p in m.named_parameters() if p.ndim > 1]
    no_decay = [p for m in (vision, text) for n, p in m.named_parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay + list(loss.parameters()), "weight_decay": 0.0}]


def _make_trainer(probe: AlignmentProbe, v_dim: int, t_dim: int, total_steps: int, device: str) -> _Trainer:
    cfg = probe.config
    vision, text, loss = fresh_heads(cfg, v_dim, t_dim, device)
    optimiser = make_optimiser(cfg, head_groups(cfg, vision, text, loss))
    schedule = config_schedule(optimiser, cfg, total_steps)
    return _Trainer(probe, vision, text, loss, optimiser, schedule)


def make_optimiser(cfg: ProbeConfig, groups: list[dict[str, Any]]) -> Any:
    """The configuration's optimiser (AdamW or Lion) over parameter groups; a group without its own
    ``lr`` takes the configuration's."""
    import torch

    if cfg.optimizer == "lion":
        from timm.optim import Lion

        return Lion(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def config_schedule(optimiser: Any, cfg: ProbeConfig, total_steps: int) -> Any:
    """The configuration's learning-rate schedule over ``total_steps``: :func:`warmup_cosine` with
    its warmup fraction and rounding, or its fixed ``warmup_steps``."""
    return warmup_cosine(optimiser, cfg.warmup, total_steps, round_up=cfg.warmup_round == "ceil",
                         warmup_steps=cfg.warmup_steps)


def warmup_cosine(optimiser: Any, warmup_fraction: float, total_steps: int, round_up: bool = False,
                  warmup_steps: int | None = None) -> Any:
    """Linear warmup over the first ``warmup_fraction`` of the steps (rounded down, or up with
    ``round_up`` as SAIL's main.py:263 does), or over ``warmup_steps`` steps where given (open_clip's
    ``--warmup``), then cosine decay to zero, applied to every group's own learning rate (open_clip's
    and SAIL's ``cosine_lr``)."""
    import torch

    if warmup_steps is not None:
        warmup = warmup_steps
    else:
        warmup = math.ceil(warmup_fraction * total_steps) if round_up else int(warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def _state(trainer: _Trainer) -> dict:
    return copy.deepcopy({"vision": trainer.vision.state_dict(), "text": trainer.text.state_dict(),
                          "loss": trainer.loss.state_dict()})


def fit_grid(probes: Sequence[AlignmentProbe], train: PairedFeatures, val: PairedFeatures | None = None,
             progress: Any = None, device: str = "cpu") -> list[AlignmentProbe]:
    """Fit every probe; those sharing (batch_size, epochs, seed) train in lockstep on shared batches.

    A probe whose loss turns NaN or infinite stops with ``error_`` set; the others go on. The
    features, heads and batches live on ``device``; the fitted heads stay there.
    """
    groups: dict[tuple[int, int, int], list[AlignmentProbe]] = {}
    for probe in probes:
        probe.error_ = None
        cfg = probe.config
        groups.setdefault((cfg.batch_size, cfg.epochs, cfg.seed), []).append(probe)
    for (batch_size, epochs, seed), members in groups.items():
        _fit_lockstep(members, train, val, batch_size, epochs, seed, progress, device)
    return list(probes)


def steps_per_epoch(pairs: int, batch_size: int) -> int:
    """Optimiser steps of one epoch over ``pairs`` training pairs: batches of ``batch_size`` (at most
    every pair), the ragged last batch dropped because contrastive losses want full ones. What fits and
    ``probe tune`` train, and what dry runs count."""
    return pairs // min(batch_size, pairs) if pairs > 0 else 0


def _fit_lockstep(probes: list[AlignmentProbe], train: PairedFeatures, val: PairedFeatures | None,
                  batch_size: int, epochs: int, seed: int, progress: Any, device: str) -> None:
    pairs = train.usable_pairs()
    if len(pairs) < 2:
        raise ProbeError(f"need at least 2 usable training pairs, got {len(pairs)}")
    batch_size = min(batch_size, len(pairs))
    per_epoch = steps_per_epoch(len(pairs), batch_size)
    source: _ResidentBatches | _StreamedBatches = (_StreamedBatches if train.streamed else _ResidentBatches)(train, device)
    trainers = [_make_trainer(p, train.images.shape[1], train.texts.shape[1], epochs * per_epoch, device)
                for p in probes]
    rng = np.random.default_rng(seed)
    try:
        for epoch in range(epochs):
            source.start_epoch(pairs[rng.permutation(len(pairs))], batch_size, per_epoch)
            losses: dict[int, list[Any]] = {id(t): [] for t in trainers}
            for step in range(per_epoch):
                img_rows, x_img, x_txt = source.batch(step)
                positives = batch_positive_pairs(img_rows)
                for trainer in trainers:
                    if not trainer.done:
                        losses[id(trainer)].append(_step(trainer, x_img, x_txt, positives))
            if _end_of_epoch(trainers, losses, epoch, epochs, val, progress):
                break
    finally:
        source.close()
    for trainer in trainers:
        _finish(trainer, per_epoch, batch_size)


def _step(trainer: _Trainer, x_img: Any, x_txt: Any, positives: Any) -> Any:
    """One optimiser step of one configuration; its loss as a tensor on the device.

    Nothing here waits for the device: whether the loss stayed finite is read once per epoch
    (:func:`_end_of_epoch`), not after every step. A configuration whose loss turned NaN spends
    the rest of that epoch on NaN weights and then stops; the others are not touched."""
    forward = functools.partial(_batch_loss, trainer, x_img, x_txt, positives)
    first = trainer.flops_per_step is None  # the first step is counted: every step costs the same
    loss, forward_flops = counted(forward) if first else (forward(), None)
    trainer.optimiser.zero_grad(set_to_none=True)
    if first:
        _, backward_flops = counted(loss.backward)
        trainer.flops_per_step = (forward_flops or 0.0) + (backward_flops or 0.0)
    else:
        loss.backward()
    trainer.optimiser.step()
    clamp_scale(trainer.loss, trainer.probe.config.max_logit_scale)
    trainer.schedule.step()
    return loss.detach()


def step_flops(cfg: ProbeConfig, v_dim: int, t_dim: int, batch_size: int) -> float | None:
    """FLOPs of one optimiser step at ``batch_size`` as a fit counts them (:func:`_step`: forward and
    backward of both heads and the loss), without running a batch that size.

    The heads are counted on the meta device, at the full batch and no cost. The loss needs real
    positives, and its [B, B] logits make its count a polynomial of degree two in the batch: it is
    counted on the CPU at three small batches and extended to ``batch_size``. So a plan for batches
    of 32,768 is counted in a tenth of a second. None where the counter sees nothing, as in a fit.
    """
    import torch

    with torch.device("meta"):
        vision, text = heads_for(cfg, v_dim, t_dim)
        x_img, x_txt = torch.empty(batch_size, v_dim), torch.empty(batch_size, t_dim)

    def embed() -> tuple[Any, Any]:
        return (torch.nn.functional.normalize(vision(x_img), dim=-1),
                torch.nn.functional.normalize(text(x_txt), dim=-1))

    (a, b), heads_forward = counted(embed)
    _, heads_backward = counted(lambda: torch.autograd.backward((a, b), (torch.empty_like(a), torch.empty_like(b))))
    loss = _loss_step_flops(cfg.loss, cfg.logit_scale_init, cfg.logit_bias_init, cfg.out_dim, batch_size,
                            cfg.siglip_reduction)
    total = (heads_forward or 0) + (heads_backward or 0) + loss
    return float(total) or None


@functools.lru_cache(maxsize=64)
def _loss_step_flops(kind: str, scale: float | None, bias: float | None, out_dim: int, batch_size: int,
                     reduction: str = "batch") -> Fraction:
    """The loss's share of :func:`step_flops` (forward and backward), the same for every pair of a
    plan with this loss, width and batch."""
    import torch

    loss = make_loss(kind, scale, bias, reduction=reduction)

    def at(size: int) -> Fraction:
        a, b = (torch.randn(size, out_dim, requires_grad=True) for _ in range(2))
        out, forward = counted(lambda: loss(a, b, batch_positive_pairs(torch.arange(size))))
        _, backward = counted(out.backward)
        return Fraction(int((forward or 0) + (backward or 0)))

    if batch_size <= 12:
        return at(batch_size)
    # Newton's form through three counts, in exact fractions: no rounding at batches of 32,768
    step, x = 4, Fraction(batch_size - 4)
    c0, c1, c2 = at(4), at(8), at(12)
    return max(c0 + x / step * (c1 - c0) + x * (x - step) / (2 * step * step) * (c2 - 2 * c1 + c0), Fraction(0))


def early_stopping_step(state: Any, score: float, cfg: ProbeConfig, snapshot: Callable[[], dict]) -> None:
    """An epoch's validation score into a fit's early-stopping state (``best_score``, ``best_state``,
    ``bad_epochs``, ``done``), for head fits and ``probe tune`` alike: a better score keeps a snapshot,
    ``patience`` epochs without one end the fit. Without early stopping the score is only kept for
    the curve: every epoch trains and the last one's weights stay."""
    if not cfg.early_stopping:
        state.best_score = max(state.best_score, score)
    elif score > state.best_score:
        state.best_score, state.best_state, state.bad_epochs = score, snapshot(), 0
    else:
        state.bad_epochs += 1
        state.done = state.bad_epochs >= cfg.patience


def _end_of_epoch(trainers: list[_Trainer], losses: dict[int, list[Any]], epoch: int, epochs: int,
                  val: PairedFeatures | None, progress: Any) -> bool:
    """The epoch's losses read back (the one wait for the device per epoch), a configuration whose
    loss stopped being finite stopped with the first such step named, validation, early stopping
    and the progress line; whether every trainer is done."""
    import torch

    for trainer in trainers:
        if trainer.done or not losses[id(trainer)]:
            continue
        values = torch.stack(losses[id(trainer)]).float().cpu()
        bad = torch.nonzero(~torch.isfinite(values)).flatten()
        if len(bad):
            step = int(bad[0])
            trainer.done = True
            trainer.probe.error_ = f"loss became {values[step].item()} at epoch {epoch + 1}, step {step + 1}"
            continue
        entry = {"epoch": epoch + 1, "loss": float(values.mean())}
        if val is not None:
            entry["val_probing_score"] = score = _validation_score(trainer, val)
            early_stopping_step(trainer, score, trainer.probe.config, functools.partial(_state, trainer))
        trainer.history.append(entry)
    if progress is not None:
        scores = [t.best_score for t in trainers if t.best_score > -math.inf]
        stopped = sum(t.done for t in trainers)
        progress(epoch + 1, epochs, (f"best val {max(scores):.3f}" if scores else "no val split")
                 + (f", {stopped} of {len(trainers)} stopped early" if stopped else ""))
    return all(t.done for t in trainers)


class _ResidentBatches:
    """The whole split on the device as float32; a batch is an index into it."""

    def __init__(self, train: PairedFeatures, device: str):
        import torch

        self.images = torch.as_tensor(np.ascontiguousarray(train.images, dtype=np.float32), device=device)
        self.texts = torch.as_tensor(np.ascontiguousarray(train.texts, dtype=np.float32), device=device)
        self.owner = torch.as_tensor(train.caption_image, dtype=torch.long, device=device)
        self.device = device

    def start_epoch(self, order: np.ndarray, batch_size: int, steps: int) -> None:
        import torch

        self.order, self.batch_size = torch.as_tensor(order, device=self.device), batch_size

    def batch(self, step: int) -> tuple[Any, Any, Any]:
        rows = self.order[step * self.batch_size:(step + 1) * self.batch_size]
        img_rows = self.owner[rows]
        return img_rows, self.images[img_rows], self.texts[rows]

    def close(self) -> None:
        pass


class _StreamedBatches:
    """Batches read from the features' memory maps on a background thread, one step ahead, and
    copied to the device from pinned memory: host memory holds a couple of batches, not the split."""

    def __init__(self, train: PairedFeatures, device: str):
        from concurrent.futures import ThreadPoolExecutor

        self.train, self.device = train, device
        self.pin = str(device).startswith("cuda")
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-batches")
        self.pending: Any = None

    def _read(self, rows: np.ndarray) -> tuple[Any, Any, Any]:
        import torch

        img_rows = self.train.caption_image[rows]
        host = [torch.from_numpy(img_rows.astype(np.int64)), torch.from_numpy(_take(self.train.images, img_rows)),
                torch.from_numpy(_take(self.train.texts, rows))]
        if self.pin:
            host = [t.pin_memory() for t in host]
        return tuple(t.to(self.device, non_blocking=self.pin) for t in host)  # type: ignore[return-value]

    def start_epoch(self, order: np.ndarray, batch_size: int, steps: int) -> None:
        self.order, self.batch_size, self.steps = order, batch_size, steps
        self.pending = self.pool.submit(self._read, order[:batch_size])

    def batch(self, step: int) -> tuple[Any, Any, Any]:
        ready = self.pending.result()
        if step + 1 < self.steps:
            start = (step + 1) * self.batch_size
            self.pending = self.pool.submit(self._read, self.order[start:start + self.batch_size])
        return ready

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _take(x: Any, rows: np.ndarray) -> np.ndarray:
    """float32 rows of a streamed side, or of an in-memory array."""
    return x.take(rows) if is_streamed(x) else np.ascontiguousarray(x[rows], dtype=np.float32)


def _batch_loss(trainer: _Trainer, x_img: Any, x_txt: Any, positives: Any) -> Any:
    import torch

    a = torch.nn.functional.normalize(trainer.vision(x_img), dim=-1)
    b = torch.nn.functional.normalize(trainer.text(x_txt), dim=-1)
    return trainer.loss(a, b, positives)


def _finish(trainer: _Trainer, per_epoch: int, batch_size: int) -> None:
    probe = trainer.probe
    if trainer.best_state is not None:
        trainer.vision.load_state_dict(trainer.best_state["vision"])
        trainer.text.load_state_dict(trainer.best_state["text"])
        trainer.loss.load_state_dict(trainer.best_state["loss"])
    trainer.vision.eval()
    trainer.text.eval()
    probe.vision_head_, probe.text_head_, probe.loss_ = trainer.vision, trainer.text, trainer.loss
    probe.history_ = trainer.history
    scored = [h for h in trainer.history if "val_probing_score" in h]
    kept_best = scored and probe.config.early_stopping
    probe.best_epoch_ = (int(max(scored, key=lambda h: h["val_probing_score"])["epoch"]) if kept_best
                         else len(trainer.history))
    probe.steps_ = len(trainer.history) * per_epoch
    probe.flops_per_step_ = trainer.flops_per_step
    probe.pairs_seen_ = probe.steps_ * batch_size
