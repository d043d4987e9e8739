"""freeze-align's token-level projectors: their parameter count from the published architecture,
written out by hand, and their forward composed by hand from torch's functional ops."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def test_parameter_count_is_freeze_aligns_for_dinov2_large_and_all_roberta_large():
    """clip_adjustable_combined_vis_cls.py with dinov2-arl-wds-combined.yaml (DINOv2-L and
    all-roberta-large-v1, both 1,024 wide, embed_dim 1,024): three 'patch' projections (LayerNorm,
    then Linear + Linear-GELU-Linear), one 'mlp' ProjectionHead (Linear, Linear, LayerNorm) and the
    temperature."""
    from probe.align.token_heads import freeze_align_projector

    width = out = 1024
    patch = 2 * width + _linear(width, out) + _linear(width, out) + _linear(out, out)  # LayerNorm + Patch_Projection
    head = _linear(width, out) + _linear(out, out) + 2 * out  # ProjectionHead
    expected = 3 * patch + head + 1
    assert expected == 11_553_793
    model = freeze_align_projector(1024, 1024, 1024)
    assert sum(p.numel() for p in model.parameters()) == expected
    # other widths: the ProjectionHead takes the projected tokens, out_dim wide (their :150 builds it
    # for the text encoder's width, which only fits when the two are equal, as in their configuration)
    assert sum(p.numel() for p in freeze_align_projector(384, 768, 512).parameters()) == (
        2 * (2 * 384 + _linear(384, 512) * 2 + _linear(512, 512)) + (2 * 768 + _linear(768, 512) * 2
                                                                     + _linear(512, 512))
        + _linear(512, 512) + _linear(512, 512) + 2 * 512 + 1)


def test_forward_is_the_published_composition():
    """Images: every token projected (LayerNorm, Linear + Linear-GELU-Linear), the tokens after the
    CLS token averaged, plus the raw CLS token projected by its own weights, L2-normalised. Texts:
    every token projected, averaged under the mask, then Linear p, LayerNorm(p + Linear(GELU(p)))."""
    import torch.nn.functional as F  # noqa: N812

    from probe.align.token_heads import freeze_align_projector

    torch.manual_seed(0)
    model = freeze_align_projector(6, 5, 4).eval()  # eval: dropout off
    for p in model.parameters():  # away from LayerNorm's identity start, so the check can fail
        p.data.normal_()
    vision, text = torch.randn(3, 7, 6), torch.randn(3, 4, 5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])

    def patch(x, seq):
        norm, _, proj = seq
        x = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias)
        lin, (a, _, b) = proj.linear_projection[0], proj.non_linear_projection
        return F.linear(x, lin.weight, lin.bias) + F.linear(F.gelu(F.linear(x, a.weight, a.bias)), b.weight, b.bias)

    image = patch(vision, model.local_vision_proj)[:, 1:].mean(1) + patch(vision[:, 0], model.cls_vision_proj)
    tokens = patch(text, model.local_text_proj)
    pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    head = model.text_proj
    p = F.linear(pooled, head.projection.weight, head.projection.bias)
    caption = F.layer_norm(F.linear(F.gelu(p), head.fc.weight, head.fc.bias) + p, p.shape[-1:],
                           head.layer_norm.weight, head.layer_norm.bias)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_images(vision), F.normalize(image, dim=-1))
        torch.testing.assert_close(model.embed_texts(text, mask), F.normalize(caption, dim=-1))
        padded = text.clone()
        padded[0, 3] = 100.0  # a padding token's value never reaches the caption
        torch.testing.assert_close(model.embed_texts(padded, mask)[0], model.embed_texts(text, mask)[0])


def test_temperature_starts_at_0_07_and_is_clamped_before_each_loss():
    from probe.align.token_heads import freeze_align_projector

    model = freeze_align_projector(4, 4, 4)
    assert model.temp.item() == pytest.approx(0.07)
    images, texts = torch.eye(3, 4), torch.eye(3, 4)
    with torch.no_grad():
        model.temp.fill_(5.0)
    loss = model.loss(images, texts)
    assert model.temp.item() == pytest.approx(0.5)
    logits = images @ texts.T / 0.5
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    assert loss.item() == pytest.approx(expected.item())


#: freeze-align's values, typed from github.com/mayug/freeze-align at 100745f
FREEZE_ALIGN = {
    "head": "freeze-align",      # train/models/clip_adjustable_combined_vis_cls.py (configs-v2 yaml:60-67)
    "loss": "infonce",           # clip_adjustable_combined_vis_cls.py:454-469
    "out_dim": 1024,             # dinov2-arl-wds-combined.yaml:31
    "lr": 1e-3,                  # yaml:38
    "weight_decay": 0.02,        # yaml:38
    "optimizer": "adamw",        # yaml:38; optim_factory.py:81-82
    "epochs": 15,                # yaml:39
    "batch_size": 14400,         # yaml:32, 1,800 on each of 8 GPUs
    "early_stopping": False,     # PretrainHydra.py:327
}


def test_the_freeze_align_preset_is_its_configuration_value_by_value():
    from probe.align.config import ProbeConfig, read_preset
    from probe.align.config import preset_values as values_of
    from probe.align.presets import HERE

    preset = read_preset(str(HERE / "freeze-align.toml"))
    assert preset["values"] == FREEZE_ALIGN and not preset["unsupported"] and not preset["tune"]
    assert "256-px" in preset["differences"] and "fp16" in preset["differences"]
    config = ProbeConfig(**values_of("freeze-align"), recipe="freeze-align")
    assert {k: getattr(config, k) for k in FREEZE_ALIGN} == FREEZE_ALIGN
    lines = (HERE / "freeze-align.toml").read_text().splitlines()
    settings = [line for line in lines[lines.index("[values]"):] if "=" in line]
    assert len(settings) == len(FREEZE_ALIGN) and all(".py:" in line or "yaml:" in line for line in settings)


class _CosineLRScheduler:
    """freeze-align's train/scheduler/cosine_lr.py:80-111 for its configuration (t_mul 1, decay_rate 1,
    warmup_prefix True, cycle_limit 1), written out again: the learning rate after ``step(t)``."""

    def __init__(self, base: float, epochs: int, warmup_t: int = 10, warmup_lr: float = 1e-5, lr_min: float = 1e-5):
        self.base, self.epochs, self.warmup_t, self.warmup_lr, self.lr_min = base, epochs, warmup_t, warmup_lr, lr_min
        self.lr = warmup_lr  # :76 update_groups(warmup_lr_init) at construction

    def step(self, t: int) -> None:
        import math

        if t < self.warmup_t:
            self.lr = self.warmup_lr + t * (self.base - self.warmup_lr) / self.warmup_t
            return
        t -= self.warmup_t
        i, t_curr = t // self.epochs, t % self.epochs
        self.lr = (self.lr_min + 0.5 * (self.base - self.lr_min) * (1 + math.cos(math.pi * t_curr / self.epochs))
                   if i < 1 else self.lr_min)


@pytest.mark.parametrize("iterations", [1, 37, 2500])
def test_the_learning_rate_follows_freeze_aligns_scheduler_as_its_training_loop_steps_it(iterations):
    """PretrainHydra.py:327-330 steps the scheduler to epoch + 10 before every epoch after the first, and
    :170-171 to i // 100 after iterations 0, 100 ... 1,000 of the first: a corpus of fewer than 1,000
    iterations an epoch never finishes the warmup."""
    from probe.align.token_heads import freeze_align_lr

    epochs, base = 15, 1e-3
    scheduler = _CosineLRScheduler(base, epochs)
    for epoch in range(epochs):
        if epoch > 0:
            scheduler.step(epoch + 10)
        for i in range(iterations):
            assert freeze_align_lr(epoch, i, base, epochs) == pytest.approx(scheduler.lr, rel=1e-12), (epoch, i)
            if epoch == 0 and i % 100 == 0 and i <= 1000:
                scheduler.step(i // 100)
    assert freeze_align_lr(epochs - 1, 0, base, epochs) > 1e-5  # the last epoch is still on the cosine


def test_token_rows_hold_every_token_so_pooling_them_gives_the_pooled_output():
    """A token variant's rows are the count of real tokens, then the tokens: pooled as the entry pools
    (tiny-vit: CLS + patch mean; tiny-bert: masked mean), they equal the entry's own features."""
    import numpy as np

    from probe.data import get_dataset
    from probe.encoders import load_encoder
    from probe.encoders.pooling import split_token_rows
    from probe.encoders.tokens import token_spec
    from probe.errors import ProbeError
    from probe.features.batches import encode_inputs
    from probe.registry import Registry

    registry = Registry.load()
    data = get_dataset("shapes").load("train")
    vit, bert = registry.get("test/tiny-vit"), registry.get("test/tiny-bert")
    vision = token_spec(vit, 77)
    assert (vision.tokens, vision.embed_dim, vision.name) == (1 + (32 // 8) ** 2, 1 + 17 * 32, "test/tiny-vit#tokens")
    rows = encode_inputs(load_encoder(vision, device="cpu"), data.images[:6], 3)
    tokens, mask = split_token_rows(torch.as_tensor(np.asarray(rows, dtype=np.float32)), 32)
    pooled = encode_inputs(load_encoder(vit, device="cpu"), data.images[:6], 3)
    np.testing.assert_allclose(torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], 1).numpy(), pooled, atol=1e-6)
    text = token_spec(bert, 77)
    assert text.tokens == bert.max_length == 32  # the entry's own limit is shorter than freeze-align's 77
    rows = load_encoder(text, device="cpu").encode(data.captions[:6])
    tokens, mask = split_token_rows(torch.as_tensor(rows), 32)
    assert mask.sum(1).tolist() == [len(load_encoder(bert, device="cpu").tokenizer(c)["input_ids"])
                                    for c in data.captions[:6]]
    assert (tokens[mask == 0] == 0).all()
    weights = mask.unsqueeze(-1).float()
    np.testing.assert_allclose(((tokens * weights).sum(1) / weights.sum(1)).numpy(),
                               load_encoder(bert, device="cpu").encode(data.captions[:6]), atol=1e-6)
    with pytest.raises(ProbeError, match="gives no output tokens to a token head"):
        token_spec(registry.get("baseline/pixels-16"), 77)


def test_the_projectors_learn_an_alignment_that_exists():
    """Token rows of 30 classes, image and text tokens each a noisy (linear map of a) class vector: the
    projectors trained as freeze-align trains them retrieve the held-out pairs."""
    import numpy as np

    from probe.align.config import ProbeConfig
    from probe.align.token_heads import FreezeAlignProbe, freeze_align_groups
    from probe.features.paired import PairedFeatures

    rng = np.random.default_rng(0)
    n, slots, width = 600, 5, 16
    centres = rng.normal(size=(30, width))
    label = rng.integers(0, 30, n)
    lengths = rng.integers(2, slots + 1, n)

    def rows(tokens, counts):
        tokens = tokens * (np.arange(slots)[None, :, None] < counts[:, None, None])
        return np.concatenate([counts[:, None], tokens.reshape(n, -1)], 1).astype(np.float32)

    images = rows(centres[label][:, None] + 0.5 * rng.normal(size=(n, slots, width)), np.full(n, slots))
    texts = rows((centres[label] @ rng.normal(size=(width, width)) / 4)[:, None]
                 + 0.5 * rng.normal(size=(n, slots, width)), lengths)
    config = ProbeConfig(head="freeze-align", loss="infonce", out_dim=32, lr=1e-3, weight_decay=0.02, epochs=8,
                         batch_size=50, early_stopping=False)
    probe = FreezeAlignProbe(config, (width, width)).fit(
        PairedFeatures(images[:500], texts[:500], np.arange(500)), PairedFeatures(images[500:], texts[500:], np.arange(100)))
    assert probe.history_[0]["val_probing_score"] < 0.5 < 0.9 < probe.history_[-1]["val_probing_score"]
    assert probe.steps_ == 8 * 10 and probe.pairs_seen_ == 80 * 50
    assert probe.embed_texts(texts[:3]).shape == (3, 32)
    groups = freeze_align_groups(probe.projector_, 0.02)  # optim_factory.py:32: 1-d tensors and biases spared
    spared = {id(p) for p in groups[0]["params"]}
    named = dict(probe.projector_.named_parameters())
    assert id(named["temp"]) not in spared and id(named["local_vision_proj.0.weight"]) in spared
    assert id(named["text_proj.projection.weight"]) not in spared and id(named["text_proj.projection.bias"]) in spared


def test_probe_run_with_the_freeze_align_preset_trains_its_projectors_on_cached_tokens(run_cli, tmp_path, shared_cache):
    import json

    import numpy as np
    from conftest import assert_one_line_error

    tiny = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert")
    env = {"PROBE_CACHE_DIR": str(shared_cache)}
    ran = run_cli("run", *tiny, "--preset", "freeze-align", "--epochs", "2", "--batch-size", "64", "--out-dim", "16",
                  "--results", str(tmp_path), env=env)
    assert ran.returncode == 0, ran.stderr
    assert "preset freeze-align differs from its source: freeze-align trains on augmented 256-px" in ran.stderr
    (path,) = (tmp_path / "records" / "alignment").rglob("*.json")
    record = json.loads(path.read_text())
    assert record["config"]["head"] == "freeze-align" and record["config"]["recipe"] == "freeze-align"
    assert record["preset_changes"] == {"out_dim": [1024, 16], "epochs": [15, 2], "batch_size": [14400, 64]}
    for side, model in (("vision", "test_tiny-vit_tokens"), ("text", "test_tiny-bert_tokens")):  # the token entries
        (entry,) = (shared_cache / model / "shapes").glob(f"*{record['features'][side]['fit']}*")
        width = np.load(entry / "features.npy", mmap_mode="r").shape[1]
        assert width == {"vision": 1 + 17 * 32, "text": 1 + 32 * 32}[side]
    assert record["training"]["steps"] == 2 * (1500 // 64)
    assert 0 <= record["metrics"]["alignment/probing_score"] <= 1
    # the projectors are kept: probe eval scores them again to the run's numbers, and the model encodes raw
    # images and texts through each encoder's token rows as the cache holds them
    again = run_cli("eval", "--model", str(tmp_path / record["saved_model"]), "--eval", "shapes", "--results",
                    str(tmp_path), env=env)
    assert again.returncode == 0 and "equal to the record of the run that fitted it" in again.stdout, again.stderr
    from probe.aligned import AlignedModel
    from probe.data import get_dataset
    from probe.features import ExtractOptions, split_features

    model = AlignedModel.load(tmp_path / record["saved_model"], device="cpu")
    test = get_dataset("shapes").load("test")
    options = ExtractOptions(cache_dir=shared_cache, progress=False)
    cached = split_features(model.feature_spec("vision"), test, options).features[:4]
    np.testing.assert_allclose(model.encode_image([image.load() for image in test.images[:4]]),
                               model.embed_image_features(cached), atol=1e-4)
    cached = split_features(model.feature_spec("text"), test, options).features[:5]
    np.testing.assert_allclose(model.encode_text(test.captions[:5]), model.embed_text_features(cached), atol=1e-4)
    meta_path = tmp_path / record["saved_model"] / "aligned.json"
    meta = json.loads(meta_path.read_text())
    assert meta["token_slots"] == {"vision": 17, "text": 32} and meta["vision"]["name"] == "test/tiny-vit"
    meta_path.write_text(json.dumps({**meta, "dims": {**meta["dims"], "text": 1000}}))
    with pytest.raises(Exception, match=r"key 'dims.text' is 1000, not 1 \+ 32 token slots"):
        AlignedModel.load(tmp_path / record["saved_model"])
    assert_one_line_error(run_cli("run", *tiny, "--head", "freeze-align", "--head", "linear", "--dry-run", env=env),
                          "mix token heads (freeze-align) with pooled ones")
    assert_one_line_error(run_cli("run", "--vision", "baseline/pixels-16", "--text", "test/tiny-bert", "--preset",
                                  "freeze-align", "--dry-run", env=env), "baseline/pixels-16 gives no output tokens")


def test_a_token_run_whose_entries_would_not_fit_the_disk_is_refused_before_encoding(tmp_path, monkeypatch):
    """shapes' token entries of the tiny pair are about 13 MB; a disk with 1 MB free refuses the run, saying both."""
    import shutil
    from collections import namedtuple

    from probe.api.alignment import plan_run
    from probe.errors import ProbeError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(ProbeError, match=r"need 1[0-9]\.\d MB and .* has 1\.0 MB free"):
        plan_run("test/tiny-vit", "test/tiny-bert", preset="freeze-align", results_dir=tmp_path / "r",
                 cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("features.npy"))
