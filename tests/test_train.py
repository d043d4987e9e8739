"""Fitting heads: learning, determinism, one-pass grids, failures."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from probe.align.config import ProbeConfig
from probe.align.train import AlignmentProbe, fit_grid
from probe.errors import ProbeError
from probe.evaluation.held_out import rank_held_out
from probe.features.paired import PairedFeatures
from probe.metrics.retrieval import retrieval_metrics


def paired(seed: int, n_images: int = 300, per_image: int = 3) -> PairedFeatures:
    """Images and captions that are two noisy linear views of one latent per image."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_images, 16))
    to_image, to_text = np.random.default_rng(99).normal(size=(2, 16, 40))
    owner = np.repeat(np.arange(n_images), per_image)
    images = latent @ to_image + 0.3 * rng.normal(size=(n_images, 40))
    texts = latent[owner] @ to_text[:, :24] + 0.3 * rng.normal(size=(len(owner), 24))
    return PairedFeatures(images.astype(np.float32), texts.astype(np.float32), owner)


def small(**kw) -> ProbeConfig:
    return ProbeConfig(**({"out_dim": 32, "epochs": 15, "batch_size": 64} | kw))


def state(probe: AlignmentProbe) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for m in (probe.vision_head_, probe.text_head_) for p in m.parameters()]


@pytest.mark.parametrize("head,loss", [("linear", "siglip"), ("mlp", "infonce"), ("star", "siglip")])
def test_heads_learn_a_shared_structure(head, loss):
    train, val, test = paired(0), paired(1, 100), paired(2, 100)
    probe = AlignmentProbe(small(head=head, loss=loss, star_width=2, lr=3e-3)).fit(train, val)
    got = retrieval_metrics(probe.embed_images(test.images), probe.embed_texts(test.texts), test.caption_image)
    assert got["probing_score"] > 0.8  # chance is about 10 / 100
    assert probe.best_epoch_ == max(probe.history_, key=lambda h: h["val_probing_score"])["epoch"]
    norms = np.linalg.norm(probe.embed_images(test.images), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_same_seed_same_heads_and_other_seed_differs():
    train, val = paired(0), paired(1, 100)
    a = AlignmentProbe(small(epochs=3)).fit(train, val)
    b = AlignmentProbe(small(epochs=3)).fit(train, val)
    c = AlignmentProbe(small(epochs=3, seed=1)).fit(train, val)
    for x, y in zip(state(a), state(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.history_ == b.history_
    assert any(not np.array_equal(x, y) for x, y in zip(state(a), state(c), strict=True))


def test_a_grid_in_one_pass_equals_each_config_alone():
    train, val = paired(0), paired(1, 100)
    configs = [small(epochs=4), small(epochs=4, loss="infonce"), small(epochs=4, lr=3e-3, head="mlp")]
    grid = fit_grid([AlignmentProbe(c) for c in configs], train, val)
    for config, fitted in zip(configs, grid, strict=True):
        alone = AlignmentProbe(config).fit(train, val)
        for x, y in zip(state(fitted), state(alone), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_early_stopping_keeps_the_best_epoch():
    train, val = paired(0), paired(1, 100)
    probe = AlignmentProbe(small(epochs=60, patience=2, lr=3e-2)).fit(train, val)
    scores = [h["val_probing_score"] for h in probe.history_]
    assert len(scores) < 60
    best = int(np.argmax(scores))
    assert probe.best_epoch_ == best + 1 and len(scores) - 1 - best == 2  # stopped after `patience` bad epochs
    got = retrieval_metrics(probe.embed_images(val.images), probe.embed_texts(val.texts), val.caption_image)
    assert got["probing_score"] == pytest.approx(scores[best])  # the kept weights are the best epoch's


def test_nan_loss_is_reported_and_others_go_on():
    train, val = paired(0), paired(1, 100)
    train.images[:] *= 1e30  # finite, but its square overflows inside LayerNorm
    bad = AlignmentProbe(small(epochs=2))
    with pytest.raises(ProbeError, match="loss became nan at epoch 1, step 1"):
        bad.fit(train, val)
    # in a grid, one diverging config (absurd learning rate) does not stop the others
    diverging, good = fit_grid([AlignmentProbe(small(epochs=3, lr=1e30)), AlignmentProbe(small(epochs=3))],
                               paired(0), val)
    assert diverging.error_ and "loss became" in diverging.error_
    assert good.error_ is None and len(good.history_) == 3


def test_skipped_images_are_left_out_of_training():
    train, val = paired(0), paired(1, 100)
    train.images[5] = np.nan
    assert 5 not in set(train.caption_image[train.usable_pairs()])
    probe = AlignmentProbe(small(epochs=2)).fit(train, val)
    assert all(torch.isfinite(p).all() for p in probe.vision_head_.parameters())


def test_a_skipped_validation_image_is_left_out_of_early_stopping():
    train, val = paired(0), paired(1, 100)
    val.images[7] = np.nan  # skipped at extraction
    probe = AlignmentProbe(small(epochs=1)).fit(train, val)  # one epoch: the fitted weights are the scored ones
    score = probe.history_[0]["val_probing_score"]
    # by hand: image 7 is no query and its captions are dropped; it stays in the gallery as a zero vector
    ok = np.arange(100) != 7
    images = probe.embed_images(np.where(ok[:, None], val.images, 0.0))
    keep = val.caption_image != 7
    texts, owner = probe.embed_texts(val.texts[keep]), val.caption_image[keep]
    sims = images @ texts.T
    top_texts = np.argsort(-sims, axis=1)[:, :10]
    i2t = np.mean([np.isin(owner[top_texts[i]], i).any() for i in np.flatnonzero(ok)])
    top_images = np.argsort(-sims.T, axis=1)[:, :10]
    t2i = np.mean([owner[j] in top_images[j] for j in range(len(owner))])
    assert np.isfinite(score) and score == pytest.approx((i2t + t2i) / 2)
    ranked = rank_held_out(probe, val)  # the ranks behind it, as the final evaluation sees them too
    own = sims[owner, np.arange(len(owner))]
    from probe.metrics.vectors import TIE  # other images within float noise of the own one rank above it

    np.testing.assert_array_equal(ranked.t2i, (sims >= own - TIE).sum(axis=0) - 1)
    assert ranked.i2t[7] == -1 and (ranked.i2t[ok] >= 0).all()


def test_config_checks():
    with pytest.raises(ProbeError, match="unknown head 'big'"):
        ProbeConfig(head="big")
    with pytest.raises(ProbeError, match="lr must be a positive number"):
        ProbeConfig(lr=-1)
    for field, value, fragment in (("weight_decay", float("nan"), "weight_decay must be a finite number"),
                                   ("lr", float("inf"), "lr must be a finite number"),
                                   ("logit_bias_init", float("-inf"), "logit_bias_init must be a finite number"),
                                   ("patience", -1, "patience must be >= 1"), ("batch_size", 1, "batch_size must be >= 2"),
                                   ("epochs", 2.5, "epochs must be a whole number"), ("weight_decay", -1e-4, ">= 0")):
        with pytest.raises(ProbeError, match=re.escape(fragment)):
            ProbeConfig(**{field: value})
    assert ProbeConfig().tag == "linear-siglip"
    assert ProbeConfig(head="star", lr=3e-4).tag == "star-siglip-lr0.0003"


def test_features_streamed_from_the_cache_train_exactly_as_in_memory(tmp_path):
    from probe.features.mapped import FeatureRows, map_npy
    from probe.io import write_npy_parts

    train, val = paired(0), paired(1, n_images=60)
    train.images[7] = np.nan  # a skipped image: its captions leave training either way
    sides = {}
    for name, x in (("images", train.images), ("texts", train.texts)):
        keep = np.flatnonzero(np.isfinite(x).all(axis=1))  # the cache stores read rows only, in blocks
        write_npy_parts(tmp_path / f"{name}.npy", np.array_split(x[keep], 3), (len(keep), x.shape[1]), "float32")
        path = tmp_path / f"{name}.npy"
        stored, mapping, offset = map_npy(path)  # images read through the mapping, texts with pread
        sides[name] = FeatureRows(stored, keep, len(x), mapping, source=(path, offset) if name == "texts" else None)
    np.testing.assert_array_equal(sides["images"].take(np.array([9, 7, 0])), train.images[[9, 7, 0]])
    streamed = PairedFeatures(sides["images"], sides["texts"], train.caption_image)
    assert streamed.streamed and not train.streamed
    np.testing.assert_array_equal(streamed.usable_pairs(), train.usable_pairs())
    configs = [small(head="linear", loss="siglip", batch_size=64), small(head="mlp", loss="infonce", batch_size=64)]
    in_memory = fit_grid([AlignmentProbe(c) for c in configs], train, val)
    from_cache = fit_grid([AlignmentProbe(c) for c in configs], streamed, val)
    for a, b in zip(in_memory, from_cache, strict=True):  # the same batches in the same order: the same heads
        assert a.history_ == b.history_
        for x, y in zip(state(a), state(b), strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("head,loss,batch", [("linear", "siglip", 100), ("mlp", "infonce", 100), ("star", "siglip", 64),
                                             ("linear", "infonce", 7)])
def test_step_flops_of_a_plan_equal_a_real_fits_counted_step(head, loss, batch):
    """A dry run counts a step at a batch it never runs (three small ones, extended): that must be the
    count a fit of that batch records for its first step, three captions per image included."""
    from probe.align.train import step_flops

    config = small(head=head, loss=loss, batch_size=batch, epochs=1, star_width=2)
    probe = AlignmentProbe(config).fit(paired(0))
    assert step_flops(config, 40, 24, batch) == probe.flops_per_step_ > 0
    if (head, batch) == ("linear", 100):  # both heads' matmuls and the 100 x 100 logits, as written out by hand
        forward = 2 * batch * (40 + 24) * 32 + 2 * batch * batch * 32
        assert forward * 2.5 < probe.flops_per_step_ < forward * 3.5  # backward about twice the forward


def test_sails_optimisation_settings_reach_the_fit():
    """What SAIL's presets set, each seen in a fit: warmup rounded up, decay on every parameter, the
    scale clamped after each step, and every epoch trained with the last epoch's heads kept."""
    from probe.align.losses import make_loss
    from probe.align.train import head_groups, warmup_cosine

    # 10% of 15 steps: SAIL warms up for ceil(1.5) = 2 steps (lr 1/2 then 2/2); rounding down gives 1
    for round_up, first in ((True, 0.5), (False, 1.0)):
        optimiser = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        warmup_cosine(optimiser, 0.1, 15, round_up=round_up)
        assert optimiser.param_groups[0]["lr"] == pytest.approx(first)
    heads = (torch.nn.Sequential(torch.nn.LayerNorm(4), torch.nn.Linear(4, 2)), torch.nn.Linear(3, 2))
    loss = make_loss("siglip")
    everything = {id(p) for m in (*heads, loss) for p in m.parameters()}
    (group,) = head_groups(ProbeConfig(decay_all=True, weight_decay=0.5), *heads, loss)
    assert {id(p) for p in group["params"]} == everything and group["weight_decay"] == 0.5
    decayed, exempt = head_groups(ProbeConfig(weight_decay=0.5), *heads, loss)
    assert all(p.ndim == 2 for p in decayed["params"]) and exempt["weight_decay"] == 0.0

    train, val = paired(0, 120), paired(1, 40)
    clamped = AlignmentProbe(small(loss="infonce", logit_scale_init=150.0, max_logit_scale=100.0, epochs=1)).fit(train)
    assert clamped.loss_.log_scale.item() == pytest.approx(np.log(100.0), abs=1e-6)  # clamped after the step
    free = AlignmentProbe(small(loss="infonce", logit_scale_init=150.0, epochs=1)).fit(train)
    assert free.loss_.log_scale.item() > np.log(140.0)  # only capped inside the loss, as before

    every = AlignmentProbe(small(epochs=6, patience=1, early_stopping=False, lr=0.3)).fit(train, val)
    assert [h["epoch"] for h in every.history_] == [1, 2, 3, 4, 5, 6] and every.best_epoch_ == 6
    assert all("val_probing_score" in h for h in every.history_)  # still scored, for the curve
    assert every.steps_ == 6 * (len(train.usable_pairs()) // 64)
