"""`probe tune --preset to-freeze`: the paper's regime value by value (DataComp small through open_clip
2.16.1), a samples-seen budget, fixed warmup steps, AdamW's epsilon and open_clip's weight-decay rule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import assert_one_line_error

torch = pytest.importorskip("torch")

TINY = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert")

#: the heads' settings, typed from DataComp at 4a8df19 (which pins open-clip-torch==2.16.1) and open_clip v2.16.1
TO_FREEZE = {
    "head": "linear",                   # open_clip's towers end in a linear projection (the preset's differences say the rest)
    "loss": "infonce",                  # open_clip src/open_clip/loss.py:66-128 ClipLoss
    "out_dim": 512,                     # open_clip src/open_clip/model_configs/ViT-B-16.json:2
    "lr": 5e-4,                         # datacomp scale_configs.py:12
    "batch_size": 4096,                 # datacomp scale_configs.py:11
    "warmup_steps": 500,                # datacomp scale_configs.py:14, passed as --warmup (train.py:252-253)
    "optimizer": "adamw",               # open_clip src/training/main.py:299
    "beta1": 0.9,                       # open_clip src/training/params.py:9
    "beta2": 0.98,                      # open_clip src/training/params.py:9 (datacomp's small scale passes none)
    "eps": 1e-6,                        # open_clip src/training/params.py:9
    "weight_decay": 0.2,                # open_clip src/training/params.py:139
    "decay_all": False,                 # open_clip src/training/main.py:292, 301
    "logit_scale_init": 1 / 0.07,       # open_clip src/open_clip/model.py:202
    "max_logit_scale": 100.0,           # open_clip src/training/train.py:177
    "early_stopping": False,            # open_clip src/training/main.py:394
    "norm": False,                      # no LayerNorm between a tower and its projection
}
#: the encoders' settings, from the same sources
TO_FREEZE_TUNE = {
    "samples_seen": 12_800_000,         # datacomp scale_configs.py:13
    "encoder_lr": 5e-4,                 # open_clip src/training/main.py:304: one lr for every parameter
    "encoder_weight_decay": 0.2,        # open_clip src/training/main.py:302
    "decay_rule": "open_clip",          # open_clip src/training/main.py:292
    "pooling": "cls",                   # the paper's CLS outputs
}


def test_the_to_freeze_preset_is_datacomp_small_through_open_clip_value_by_value(tmp_path):
    from probe.align.config import read_preset
    from probe.align.presets import HERE
    from probe.api.tuning import plan_tune

    path = HERE / "to-freeze.toml"
    preset = read_preset(str(path))
    assert preset["values"] == pytest.approx(TO_FREEZE) and preset["values"].keys() == TO_FREEZE.keys()
    assert preset["tune"] == TO_FREEZE_TUNE and not preset["unsupported"]
    assert "fp16" in preset["differences"] and "resample" in preset["differences"]
    lines = path.read_text().splitlines()
    settings = [line for line in lines[lines.index("[values]"):] if "=" in line]
    assert len(settings) == len(TO_FREEZE) + len(TO_FREEZE_TUNE)
    assert all("# " in line for line in settings)  # every value cites where it comes from
    assert sum(".py:" in line or ".json:" in line for line in settings) >= len(settings) - 2  # all but two by file:line
    planned = plan_tune("test/tiny-vit", "test/tiny-bert", preset="to-freeze", results_dir=tmp_path, dry_run=True)
    (config,) = planned.work.head_configs
    (tune,) = planned.work.tune_configs
    assert {k: getattr(config, k) for k in TO_FREEZE} == pytest.approx(TO_FREEZE) and config.recipe == "to-freeze"
    assert {k: getattr(tune, k) for k in TO_FREEZE_TUNE} == TO_FREEZE_TUNE
    assert tune.setting == "V_u^f,T_u^u"  # the paper's best setting; --freeze / --grid choose others
    # 12.8M samples at 4,096 a step: DataComp small's 3,125 steps, whatever the corpus's size
    assert tune.total_steps(per_epoch=7, epochs=10, batch_size=4096) == 3125


def test_warmup_steps_and_eps_reach_the_schedule_and_optimiser():
    """A fixed warmup follows open_clip's cosine_lr (src/training/scheduler.py:43-53, written out here)."""
    from probe.align.config import ProbeConfig
    from probe.align.train import config_schedule, make_optimiser

    base_lr, warmup, total = 0.5, 4, 12
    param = torch.nn.Parameter(torch.zeros(2, 2))
    config = ProbeConfig(lr=base_lr, warmup_steps=warmup, warmup=0.0, eps=1e-6)
    optimiser = make_optimiser(config, [{"params": [param], "weight_decay": 0.0}])
    assert optimiser.defaults["eps"] == 1e-6
    schedule = config_schedule(optimiser, config, total)
    seen = []
    for _ in range(total):
        seen.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    expected = [base_lr * (step + 1) / warmup if step < warmup
                else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) * base_lr for step in range(total)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def _tiny_sides(parts: str = "all"):
    """Both tiny encoders as tune sides with ``parts`` trainable, on 40 shapes images."""
    from probe.data import get_dataset
    from probe.encoders import load_encoder
    from probe.features.batches import encode_inputs
    from probe.registry import Registry
    from probe.unfreezing.modules import TunedEncoder, module_parts, pooled_spec, tunable
    from probe.unfreezing.parts import apply, parse_parts, resolve
    from probe.unfreezing.train import Side

    data = get_dataset("shapes").load("train").subset(np.arange(40), "train-head")
    sides = []
    for name in ("test/tiny-vit", "test/tiny-bert"):
        spec = Registry.load().get(name)
        module = tunable(load_encoder(spec, device="cpu"), "cls")
        inputs = data.images if spec.modality == "vision" else data.captions
        features = encode_inputs(TunedEncoder(pooled_spec(spec, module), module, "cpu"), inputs, 16)
        trainable = resolve(parse_parts(parts, spec.modality), module_parts(module)[0], spec.name, spec.modality)
        apply(module.backbone, trainable)
        sides.append(Side(features, module, trainable, inputs))
    return sides, data


def test_open_clips_decay_rule_decays_what_open_clip_decays():
    """open_clip 2.16.1 (src/training/main.py:292) spares tensors under two dimensions and those named
    bn/ln/bias/logit_scale; probe's own rule also spares what timm exempts (CLS token, position embeddings)."""
    from probe.unfreezing.config import TuneConfig
    from probe.unfreezing.train import _encoder_groups

    (vision, text), _ = _tiny_sides()
    named = {**vision.tensors(), **text.tensors()}

    def decayed(rule: str) -> set[str]:
        groups = _encoder_groups(TuneConfig(decay_rule=rule, encoder_weight_decay=0.2), vision, text)
        ids = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
        return {name for name, p in named.items() if id(p) in ids}

    by_hand = {n for n, p in named.items()
               if not (p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n)}
    assert decayed("open_clip") == by_hand
    assert {"cls_token", "pos_embed"} & set(vision.tensors()) <= by_hand  # open_clip decays them ...
    assert not {"cls_token", "pos_embed"} & decayed("probe")  # ... probe's own rule, as timm says, does not
    assert decayed("probe") < by_hand


def test_a_samples_budget_runs_exactly_its_steps_across_passes(monkeypatch):
    """samples_seen = 1 pass + 3 batches + 1 pair: ceil(samples / batch) steps, the second pass cut short."""
    from probe.align.config import ProbeConfig
    from probe.features.paired import PairedFeatures
    from probe.unfreezing import train
    from probe.unfreezing.config import TuneConfig

    (vision, text), data = _tiny_sides("blocks:1")
    pairs = PairedFeatures(vision.features, text.features, data.caption_image).usable_pairs()
    batch = 32
    per_pass = len(pairs) // batch
    samples = per_pass * batch + 3 * batch + 1
    steps = []
    real = train._step
    monkeypatch.setattr(train, "_step", lambda *a, **k: steps.append(1) or real(*a, **k))
    config = ProbeConfig(head="linear", loss="infonce", epochs=1, batch_size=batch, out_dim=16, norm=False,
                         early_stopping=False)
    result = train.tune_fit(vision, text, data.caption_image, pairs, config, TuneConfig(samples_seen=samples), "cpu",
                            progress=False)
    assert len(steps) == result.steps == per_pass + 4 == math.ceil(samples / batch)
    assert len(result.history) == 2 and result.pairs_seen == (per_pass + 4) * batch


def test_tune_presets_refuse_what_they_cannot_be_and_records_hold_what_changed(run_cli, tmp_path, shared_cache):
    assert_one_line_error(run_cli("run", *TINY, "--preset", "to-freeze", "--dry-run"),
                          "preset 'to-freeze' trains encoder parts", "probe tune --preset to-freeze")
    assert_one_line_error(run_cli("tune", *TINY, "--preset", "sail", "--dry-run"),
                          "preset 'sail' fits heads on frozen features", "probe run --preset sail")
    assert_one_line_error(run_cli("tune", *TINY, "--preset", "freeze-align", "--dry-run"),
                          "preset 'freeze-align' fits heads on frozen features")
    assert_one_line_error(run_cli("tune", *TINY, "--head", "freeze-align", "--dry-run"),
                          "head 'freeze-align' reads every token of frozen encoders")
    for table, fragment in (("samples_seen = 'many'", "samples_seen = 'many' must be a whole number"),
                            ("encoder_lrr = 1e-4", "encoder_lrr"), ("decay_rule = 'timm'", "unknown decay_rule 'timm'")):
        config = tmp_path / "mine.toml"
        config.write_text(f"[tune]\n{table}\n")
        assert_one_line_error(run_cli("tune", *TINY, "--config", str(config), "--dry-run"), fragment)
    assert_one_line_error(run_cli("run", *TINY, "--config", str(tmp_path / "mine.toml"), "--dry-run"), "[tune]")
    ran = run_cli("tune", *TINY, "--preset", "to-freeze", "--samples-seen", "64", "--batch-size", "32", "--out-dim", "16",
                  "--results", str(tmp_path / "r"), env={"PROBE_CACHE_DIR": str(shared_cache)})
    assert ran.returncode == 0, ran.stderr
    assert "preset to-freeze changed as given" in ran.stderr and "differs from its source" in ran.stderr
    (path,) = (tmp_path / "r" / "records" / "tune").rglob("*.json")
    record = json.loads(path.read_text())
    assert record["preset_changes"] == {"batch_size": [4096, 32], "out_dim": [512, 16],
                                        "samples_seen": [12_800_000, 64]}
    assert record["training"]["steps"] == 2 and record["tune"]["samples_seen"] == 64
    assert record["tune"]["config"]["encoder_lr"] == 5e-4 and record["config"]["recipe"] == "to-freeze"
