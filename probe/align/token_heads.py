"""Heads that read token sequences: freeze-align's projectors, as its authors trained them.

freeze-align (Maniparambil et al., CVPR 2025; github.com/mayug/freeze-align at 100745f) does not
project pooled features. Every vision token goes through LayerNorm, dropout and a patch projection
(a linear map plus a Linear-GELU-Linear branch); the projected patch tokens are averaged and the raw
CLS token, projected the same way by its own weights, is added. Every text token is projected the
same way, averaged under the attention mask, and passed through a ProjectionHead (Linear-GELU-
Linear, dropout, residual, LayerNorm). The temperature is learned and clamped to [0.001, 0.5] before
each step. Line numbers below are of ``train/models/clip_adjustable_combined_vis_cls.py``; the
choices are those of ``train/configs-v2/dinov2-arl-wds-combined.yaml:60-67`` (patch, patch, mean,
mean, mlp, patch).

Because the projection is not linear and comes before pooling, these heads need every token of both
encoders, not a pooled feature: see ``docs/explanation/token-features.md`` for how probe feeds them.
"""

from __future__ import annotations

import math
from typing import Any

from probe.errors import ProbeError


def patch_projection(width: int, out_dim: int) -> Any:
    """``Patch_Projection`` (:37-50): ``Linear(x) + Linear(GELU(Linear(x)))``."""
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch

    class PatchProjection(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear_projection = nn.Sequential(nn.Linear(width, out_dim))
            self.non_linear_projection = nn.Sequential(nn.Linear(width, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

        def forward(self, x):
            return self.linear_projection(x) + self.non_linear_projection(x)

    return PatchProjection()


def token_projection(width: int, out_dim: int, dropout: float = 0.1) -> Any:
    """The ``'patch'`` projection of every token (:103-110, :128-135, :171-178): LayerNorm, Dropout(0.1),
    :func:`patch_projection`."""
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch
    return nn.Sequential(nn.LayerNorm(width), nn.Dropout(dropout), patch_projection(width, out_dim))


def projection_head(width: int, out_dim: int, dropout: float = 0.1) -> Any:
    """``ProjectionHead`` (:14-34), the ``'mlp'`` projection: ``p = Linear(x)``, then
    ``LayerNorm(p + Dropout(Linear(GELU(p))))``."""
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch

    class ProjectionHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.projection = nn.Linear(width, out_dim)
            self.gelu = nn.GELU()
            self.fc = nn.Linear(out_dim, out_dim)
            self.dropout = nn.Dropout(dropout)
            self.layer_norm = nn.LayerNorm(out_dim)

        def forward(self, x):
            projected = self.projection(x)
            return self.layer_norm(self.dropout(self.fc(self.gelu(projected))) + projected)

    return ProjectionHead()


def image_embedding(local_proj: Any, cls_proj: Any, tokens: Any) -> Any:
    """The unnormalised image embedding (:402, :407-415): every token after the CLS token projected and
    averaged, plus the CLS token projected by its own weights (both weights 1.0, vision_proj Identity)."""
    return local_proj(tokens)[:, 1:, :].mean(dim=1) + cls_proj(tokens[:, 0, :])


def text_embedding(local_proj: Any, head: Any, tokens: Any, mask: Any) -> Any:
    """The unnormalised text embedding (:388-394): every token projected, averaged under the attention
    mask, then the ProjectionHead."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return head((local_proj(tokens) * weights).sum(dim=1) / weights.sum(dim=1))


#: freeze-align's temperature: its start (dinov2-arl-wds-combined.yaml:35) and clamp (:340-341)
TEMPERATURE_INIT = 0.07
TEMPERATURE_RANGE = (0.001, 0.5)


def freeze_align_projector(vision_width: int, text_width: int, out_dim: int = 1024) -> Any:
    """freeze-align's projectors and temperature as one module (``out_dim`` 1024:
    dinov2-arl-wds-combined.yaml:31). ``embed_images(tokens)`` takes ``[B, T, vision_width]`` with the
    CLS token first; ``embed_texts(tokens, mask)`` takes ``[B, L, text_width]`` and the attention mask;
    ``loss(images, texts)`` is their symmetric InfoNCE at the clamped learned temperature (:454-469)."""
    import torch
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch
    import torch.nn.functional as F  # noqa: N812

    class FreezeAlignProjector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.local_vision_proj = token_projection(vision_width, out_dim)  # :103-110
            self.cls_vision_proj = token_projection(vision_width, out_dim)  # :128-135
            self.local_text_proj = token_projection(text_width, out_dim)  # :171-178
            # :148-151 builds it for the text encoder's width, but applies it to projected tokens (:394),
            # out_dim wide: their configuration has both 1,024; for other widths it is built to fit
            self.text_proj = projection_head(out_dim, out_dim)
            self.temp = nn.Parameter(torch.ones([]) * TEMPERATURE_INIT)  # :185

        def embed_images(self, tokens):
            return F.normalize(image_embedding(self.local_vision_proj, self.cls_vision_proj, tokens), dim=-1)

        def embed_texts(self, tokens, mask):
            return F.normalize(text_embedding(self.local_text_proj, self.text_proj, tokens, mask), dim=-1)  # :395

        def loss(self, images, texts):
            with torch.no_grad():
                self.temp.clamp_(*TEMPERATURE_RANGE)  # :340-341
            logits = images @ texts.T / self.temp  # :454-455
            target = torch.arange(len(images), device=images.device)
            return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2  # :462-469

    return FreezeAlignProjector()


#: text tokens freeze-align feeds its projectors: padding to the longest, truncation at 77
#: (train/PretrainHydra.py:101)
TEXT_TOKENS = 77
#: its warmup: every 100 iterations of the first epoch (PretrainHydra.py:75, 170-171) the scheduler steps
#: once, for ``warmup_epochs`` steps (:76, :198; configs-v2/dinov2-arl-wds-combined.yaml:39 warmup_epochs 10)
WARMUP_EVERY, WARMUP_STEPS = 100, 10
#: the warmup's start and the cosine's floor (dinov2-arl-wds-combined.yaml:39 warmup_lr, min_lr 1e-5)
WARMUP_LR = MIN_LR = 1e-5


def freeze_align_lr(epoch: int, iteration: int, base_lr: float, epochs: int) -> float:
    """The learning rate of iteration ``iteration`` of epoch ``epoch`` as freeze-align's training sets it:
    its CosineLRScheduler (train/scheduler/cosine_lr.py:80-111, warmup_prefix on, one cycle of ``epochs``)
    stepped to ``t = i // 100`` after iterations 0, 100 ... 1,000 of epoch 0 (PretrainHydra.py:170-171)
    and to ``t = epoch + 10`` at the start of every later epoch (:329-330); it starts at the warmup's
    start (cosine_lr.py:76)."""
    if epoch == 0:
        t = 0 if iteration == 0 else min((iteration - 1) // WARMUP_EVERY, WARMUP_STEPS)
    else:
        t = epoch + WARMUP_STEPS
    if t < WARMUP_STEPS:
        return WARMUP_LR + t * (base_lr - WARMUP_LR) / WARMUP_STEPS
    t -= WARMUP_STEPS
    if t // epochs >= 1:  # past its one cycle (cycle_limit 1): the floor
        return MIN_LR
    return MIN_LR + 0.5 * (base_lr - MIN_LR) * (1 + math.cos(math.pi * t / epochs))


def freeze_align_groups(module: Any, weight_decay: float) -> list[dict[str, Any]]:
    """freeze-align's AdamW groups (train/optim/optim_factory.py:26-38, 42-50): no decay on 1-d tensors and
    biases; the 0-d temperature is decayed."""
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, param in module.named_parameters():
        (no_decay if param.ndim == 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def token_heads(projector: Any) -> dict[str, Any]:
    """The projector as the three parts a saved aligned model holds (``vision``, ``text``, ``loss``), each
    sharing the projector's own tensors: the vision and text heads map token rows to unnormalised
    embeddings, the loss part holds the temperature."""
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch

    from probe.encoders.pooling import split_token_rows

    class ImageSide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.local_vision_proj, self.cls_vision_proj = projector.local_vision_proj, projector.cls_vision_proj

        def forward(self, rows):
            tokens, _ = split_token_rows(rows, self.local_vision_proj[0].normalized_shape[0])
            return image_embedding(self.local_vision_proj, self.cls_vision_proj, tokens)

    class TextSide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.local_text_proj, self.text_proj = projector.local_text_proj, projector.text_proj

        def forward(self, rows):
            tokens, mask = split_token_rows(rows, self.local_text_proj[0].normalized_shape[0])
            return text_embedding(self.local_text_proj, self.text_proj, tokens, mask)

    class Temperature(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.temp = projector.temp

    return {"vision": ImageSide(), "text": TextSide(), "loss": Temperature()}


def saved_token_heads(config: Any, dims: dict[str, int], slots: dict[str, int]) -> dict[str, Any]:
    """:func:`token_heads` of a fresh projector for a saved model: token widths from its row widths
    (``dims``: ``1 + slots x width``) and slots."""
    from probe.encoders.tokens import width_of_rows

    widths = [width_of_rows(dims[side], slots[side]) for side in ("vision", "text")]
    return token_heads(freeze_align_projector(widths[0], widths[1], out_dim=config.out_dim))


def token_width_of(spec: Any) -> int:
    """The token width of a token variant (:meth:`~probe.encoder_spec.EncoderSpec.as_tokens`)."""
    from probe.encoders.tokens import width_of_rows

    return width_of_rows(spec.embed_dim, spec.tokens)


class FreezeAlignProbe:
    """freeze-align's projectors fitted on cached token rows (:mod:`probe.encoders.tokens`): the
    interface of :class:`~probe.align.train.AlignmentProbe` (``fit``, ``embed_images``, ``embed_texts``,
    ``history_`` ...), so runs score and record it like any head."""

    error_: str | None = None
    flops_per_step_: float | None = None

    def __init__(self, config: Any, widths: tuple[int, int]):
        self.config = config
        self.widths = widths
        self.history_: list[dict[str, float]] = []
        self.best_epoch_ = 0
        self.steps_ = 0
        self.pairs_seen_ = 0
        self.projector_: Any = None

    def fit(self, train: Any, val: Any = None, device: str = "cpu", progress: Any = None) -> FreezeAlignProbe:
        """Train as freeze-align does: AdamW over its groups, its learning-rate schedule, every epoch
        (``early_stopping`` keeps the best validation epoch instead)."""
        import copy
        from types import SimpleNamespace

        import numpy as np
        import torch
        import torch.nn.functional as F  # noqa: N812

        from probe.align.train import early_stopping_step
        from probe.features.paired import is_streamed

        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.projector_ = projector = freeze_align_projector(*self.widths, out_dim=cfg.out_dim).to(device)
        heads = token_heads(projector)  # token rows -> embeddings; what a saved model holds
        self.vision_head_, self.text_head_, self.loss_ = heads["vision"], heads["text"], heads["loss"]
        optimiser = torch.optim.AdamW(freeze_align_groups(projector, cfg.weight_decay), lr=WARMUP_LR,
                                      betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        pairs = train.usable_pairs()
        if len(pairs) < 2:
            raise ProbeError(f"need at least 2 usable training pairs, got {len(pairs)}")
        batch = min(cfg.batch_size, len(pairs))
        per_epoch = len(pairs) // batch
        rng = np.random.default_rng(cfg.seed)

        def rows(x: Any, index: np.ndarray) -> Any:
            taken = x.take(index) if is_streamed(x) else x[index]
            return torch.as_tensor(np.asarray(taken, dtype=np.float32), device=device)

        state = SimpleNamespace(best_score=-math.inf, best_state=None, bad_epochs=0, done=False)
        for epoch in range(cfg.epochs):
            projector.train()
            order = pairs[rng.permutation(len(pairs))]
            losses = []
            for step in range(per_epoch):
                for group in optimiser.param_groups:
                    group["lr"] = freeze_align_lr(epoch, step, cfg.lr, cfg.epochs)
                captions = order[step * batch:(step + 1) * batch]
                images = F.normalize(self.vision_head_(rows(train.images, train.caption_image[captions])), dim=-1)
                texts = F.normalize(self.text_head_(rows(train.texts, captions)), dim=-1)
                loss = projector.loss(images, texts)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                losses.append(loss.detach())
            self.steps_ += per_epoch
            entry = {"epoch": epoch + 1, "loss": float(torch.stack(losses).mean()) if losses else float("nan")}
            if not math.isfinite(entry["loss"]):
                self.error_ = f"loss became {entry['loss']} in epoch {epoch + 1}"
                self.history_.append(entry)
                break
            if val is not None:
                from probe.evaluation.held_out import rank_held_out
                from probe.metrics.retrieval import metrics_from_ranks

                ranked = rank_held_out(self, val)
                entry["val_probing_score"] = score = metrics_from_ranks(ranked.i2t, ranked.t2i)["probing_score"]

                def snapshot(epoch: int = epoch) -> dict:
                    self.best_epoch_ = epoch + 1
                    return copy.deepcopy(projector.state_dict())

                early_stopping_step(state, score, cfg, snapshot)
            self.history_.append(entry)
            if progress is not None:
                progress(epoch + 1, cfg.epochs, f"loss {entry['loss']:.3f}")
            if state.done:
                break
        if state.best_state is not None:
            projector.load_state_dict(state.best_state)
        else:
            self.best_epoch_ = len(self.history_)
        projector.eval()
        self.pairs_seen_ = self.steps_ * batch
        return self

    def _embed(self, head: Any, x: Any, chunk: int = 256) -> Any:
        """L2-normalised embeddings of token rows ``x`` by ``head``, a chunk of rows at a time."""
        import numpy as np
        import torch
        import torch.nn.functional as F  # noqa: N812

        device = next(self.projector_.parameters()).device
        self.projector_.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), chunk):
                part = torch.as_tensor(np.asarray(x[start:start + chunk], dtype=np.float32), device=device)
                out.append(F.normalize(head(part), dim=-1).float().cpu().numpy())
        width = self.config.out_dim
        return np.concatenate(out) if out else np.zeros((0, width), dtype=np.float32)

    def embed_images(self, x: Any) -> Any:
        """L2-normalised aligned image embeddings of token rows."""
        return self._embed(self.vision_head_, x)

    def embed_texts(self, x: Any) -> Any:
        """L2-normalised aligned text embeddings of token rows."""
        return self._embed(self.text_head_, x)
