"""Published training setups as presets, a config file, and the settings they reach (init, optimiser, loss)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

from probe.align.config import ProbeConfig, read_preset
from probe.align.config import preset_values as recipe_values
from probe.align.train import AlignmentProbe, fit_grid
from probe.errors import ProbeError
from probe.features.paired import PairedFeatures

TINY = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert")


#: SAIL's alignment probing as github.com/lezhang7/SAIL at b39de67 ran it, typed from the source
SAIL_PROBING = {
    "head": "linear",             # scripts/alignment_probing.sh:17 linear_type="linear"
    "loss": "siglip",             # scripts/alignment_probing.sh:43 --siglip
    "out_dim": 2048,              # scripts/alignment_probing.sh:16 d=2048
    "lr": 1e-5,                   # scripts/alignment_probing.sh:14 lr=1e-5
    "weight_decay": 1e-7,         # scripts/alignment_probing.sh:33 --wd 1e-07
    "beta1": 0.9,                 # scripts/alignment_probing.sh:34 --beta1 0.9
    "beta2": 0.99,                # scripts/alignment_probing.sh:35 --beta2 0.99
    "epochs": 100,                # scripts/alignment_probing.sh:10 epoch_num=100
    "batch_size": 32768,          # scripts/alignment_probing.sh:15 bs=32768
    "logit_scale_init": 20.0,     # scripts/alignment_probing.sh:11 logit_scale=20
    "logit_bias_init": -10.0,     # scripts/alignment_probing.sh:12 logit_bias=-10
    "optimizer": "lion",          # train/params.py:133 default="lion"; the script passes no --optimizer
    "decay_all": True,            # main.py:222 Lion(model.parameters(), weight_decay=args.wd)
    "warmup": 0.1,                # main.py:263 args.warmup = math.ceil(0.1 * total_steps)
    "warmup_round": "ceil",       # main.py:263 math.ceil
    "early_stopping": False,      # main.py:315-319 every epoch of args.epochs is trained
    "siglip_reduction": "pairs",  # model/loss.py:420 -torch.mean(loss) over the [B, B] logits
    "max_logit_scale": 100.0,     # train/train.py:120-122 logit_scale.clamp_(0, math.log(100))
    "head_init": "xavier",        # model/sail_model.py:62 xavier_uniform_, zero biases
    "norm": True,                 # model/sail_model.py:46 LayerNorm before the mapping
}
#: SAIL's alignment tuning, scripts/sail_train.sh at the same commit
SAIL = {
    "head": "star",               # scripts/sail_train.sh:37 --linear-type star
    "loss": "siglip",             # scripts/sail_train.sh:34 --siglip
    "out_dim": 1024,              # scripts/sail_train.sh:7 d=1024
    "star_width": 8,              # scripts/sail_train.sh:8 width_factor=8
    "lr": 1e-5,                   # scripts/sail_train.sh:5 lr=1e-5
    "weight_decay": 1e-4,         # scripts/sail_train.sh:35 --wd 1e-4
    "epochs": 100,                # scripts/sail_train.sh:4 epoch_num=100
    "batch_size": 32768,          # scripts/sail_train.sh:6 bs=32768
    "logit_scale_init": 20.0,     # scripts/sail_train.sh:9 logit_scale=20
    "logit_bias_init": -10.0,     # scripts/sail_train.sh:10 logit_bias=-10
    "optimizer": "lion",          # scripts/sail_train.sh:33 --optimizer lion
    "beta1": 0.9,                 # train/params.py:239 default=0.9
    "beta2": 0.99,                # train/params.py:240 default=0.99
    "decay_all": True,            # main.py:222
    "warmup": 0.1,                # main.py:263
    "warmup_round": "ceil",       # main.py:263
    "early_stopping": False,      # main.py:315-319
    "siglip_reduction": "pairs",  # model/loss.py:420
    "max_logit_scale": 100.0,     # train/train.py:120-122
    "star_clamp": 1000.0,         # model/linear.py:24-25 torch.clamp(x, min=-1e3, max=1e3)
    "head_init": "xavier",        # model/sail_model.py:62
    "norm": True,                 # model/sail_model.py:46
}


@pytest.mark.parametrize(("name", "source"), [("sail-probing", SAIL_PROBING), ("sail", SAIL)])
def test_sail_presets_are_sails_settings_value_by_value(name, source):
    from probe.align.presets import HERE

    preset = read_preset(str(HERE / f"{name}.toml"))
    assert preset["source"].startswith("github.com/lezhang7/SAIL@b39de67") and not preset["unsupported"]
    assert preset["values"] == source  # every value the preset sets is one the source sets, and no other
    config = ProbeConfig(**recipe_values(name), recipe=name)
    assert {k: getattr(config, k) for k in source} == source
    # every line of the file cites where its value comes from
    lines = [line for line in (HERE / f"{name}.toml").read_text().splitlines()[preset_start(name):] if "=" in line]
    assert lines and all("# " in line and (".py:" in line or ".sh:" in line) for line in lines)


def preset_start(name: str) -> int:
    from probe.align.presets import HERE

    return (HERE / f"{name}.toml").read_text().splitlines().index("[values]")


def test_a_preset_probe_cannot_reproduce_refuses_to_run(run_cli, tmp_path):
    from probe.align.presets import HERE

    mine = tmp_path / "paper.toml"  # a preset file that says what probe cannot do of its source
    mine.write_text('description = "d"\nunsupported = "its heads read audio"\n[values]\nhead = "mlp"\n')
    assert read_preset(str(mine))["unsupported"]
    assert_one_line_error(run_cli("run", *TINY, "--preset", str(mine), "--dry-run"),
                          f"preset '{mine}' cannot run as its source did", "audio")
    assert not any(read_preset(str(path))["unsupported"] for path in HERE.glob("*.toml"))  # every shipped one runs


def test_settings_added_later_leave_older_identities_alone():
    from probe.align.config import LATER_SETTINGS

    default = ProbeConfig()
    assert default.identity_dict() == {k: v for k, v in default.to_dict().items() if k not in LATER_SETTINGS}
    sail = ProbeConfig(**recipe_values("sail"), recipe="sail")
    assert {"early_stopping", "decay_all", "siglip_reduction", "star_clamp"} <= set(sail.identity_dict())


def test_recipe_settings_reach_the_loss_heads_and_optimiser():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(60, 12)).astype(np.float32)
    train = PairedFeatures(images, images @ rng.normal(size=(12, 10)).astype(np.float32), np.arange(60))
    config = ProbeConfig(**(recipe_values("sail") | {"epochs": 1, "batch_size": 30, "out_dim": 8, "star_width": 2}),
                         recipe="sail")
    probe = AlignmentProbe(config)
    fit_grid([probe], train, device="cpu")
    assert probe.error_ is None and probe.steps_ == 2
    # SAIL starts its SigLIP loss at scale 20 and bias -10: two Lion steps (lr 1e-5) move them by 2e-5 at most
    assert abs(probe.loss_.log_scale.item() - math.log(20)) < 3e-5 and abs(probe.loss_.bias.item() + 10) < 3e-5
    assert config.tag == "star-siglip-sail-out_dim8-epochs1-batch_size30-star_width2"
    fresh = ProbeConfig(head="linear", head_init="xavier", out_dim=64)
    from probe.align.train import _make_trainer

    trainer = _make_trainer(AlignmentProbe(fresh), 100, 50, 10, "cpu")
    linear = trainer.vision[1]
    bound = math.sqrt(6 / (100 + 64))  # xavier_uniform's limit for a 100 -> 64 layer
    assert linear.weight.abs().max() <= bound and linear.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(linear.bias) == 0
    default = _make_trainer(AlignmentProbe(ProbeConfig(out_dim=64)), 100, 50, 10, "cpu").vision[1]
    assert default.weight.abs().max() <= 1 / math.sqrt(100)  # torch's own init is narrower


def test_run_with_a_recipe_lets_typed_options_win(run_cli, tmp_path, shared_cache):
    out = tmp_path / "r"
    ran = run_cli("run", *TINY, "--preset", "sail-probing", "--epochs", "1", "--batch-size", "64",
                  "--results", str(out), env={"PROBE_CACHE_DIR": str(shared_cache)})
    assert ran.returncode == 0, ran.stderr
    (path,) = (out / "records" / "alignment").rglob("*.json")
    config = json.loads(path.read_text())["config"]
    assert config["recipe"] == "sail-probing" and config["out_dim"] == 2048 and config["lr"] == 1e-5
    assert config["beta2"] == 0.99 and config["head_init"] == "xavier" and config["logit_scale_init"] == 20.0
    assert config["epochs"] == 1 and config["batch_size"] == 64  # typed on the command line
    assert path.name.endswith("linear-siglip-sail-probing-epochs1-batch_size64-seed0.json")
    # the run says which settings it changed from the preset, and the record holds both values
    assert "preset sail-probing changed as given: " in ran.stderr
    assert "epochs 1 (the preset's " in ran.stderr and "batch_size 64 (the preset's " in ran.stderr
    from probe.align.config import preset_values

    preset = preset_values("sail-probing")
    assert json.loads(path.read_text())["preset_changes"] == {"epochs": [preset["epochs"], 1],
                                                             "batch_size": [preset["batch_size"], 64]}
    mine = tmp_path / "mine.toml"
    mine.write_text("[values]\nout_dim = 32\nweight_decay = 0.5\n")
    ran = run_cli("run", *TINY, "--config", str(mine), "--epochs", "1", "--results", str(tmp_path / "c"),
                  env={"PROBE_CACHE_DIR": str(shared_cache)})
    assert ran.returncode == 0, ran.stderr
    (path,) = (tmp_path / "c" / "records" / "alignment").rglob("*.json")
    config = json.loads(path.read_text())["config"]
    assert config["out_dim"] == 32 and config["weight_decay"] == 0.5 and config["recipe"] == ""
    assert "preset_changes" not in json.loads(path.read_text())  # no preset: nothing changed from one


def test_recipe_refusals_are_one_line(run_cli, tmp_path):
    assert_one_line_error(run_cli("run", *TINY, "--preset", "clip"), "unknown preset 'clip'", "sail")
    bad = tmp_path / "bad.toml"
    bad.write_text("[values]\nlearning_rate = 0.1\n")
    assert_one_line_error(run_cli("run", *TINY, "--config", str(bad)), "unknown setting 'learning_rate'")
    # the rule every catalogue file shares: a misspelt table is named, with the likely meant one
    misspelt = tmp_path / "misspelt.toml"
    misspelt.write_text("[valeus]\nlr = 0.1\n")
    assert_one_line_error(run_cli("run", *TINY, "--config", str(misspelt)),
                          "unknown top-level key 'valeus' (did you mean 'values'?)")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[values]\noptimizer = "sgd"\n')
    assert_one_line_error(run_cli("run", *TINY, "--config", str(wrong)), "optimizer 'sgd' is not one of adamw, lion")
    for line, fragment in (("weight_decay = nan", "weight_decay must be a finite number, got nan"),
                           ("batch_size = 1", "batch_size must be >= 2"), ("patience = -3", "patience must be >= 1")):
        odd = tmp_path / "odd.toml"
        odd.write_text(f"[values]\n{line}\n")
        assert_one_line_error(run_cli("run", *TINY, "--config", str(odd), "--dry-run"), fragment)


def test_heads_train_with_an_unset_recipe_exactly_as_before():
    """New settings at their defaults leave training untouched: AdamW(0.9, 0.999), torch init, scale 10."""
    config = ProbeConfig()
    assert (config.optimizer, config.beta1, config.beta2, config.head_init) == ("adamw", 0.9, 0.999, "torch")
    assert config.tag == "linear-siglip"
    from probe.align.losses import make_loss

    loss = make_loss("siglip")
    assert loss.log_scale.item() == pytest.approx(math.log(10)) and loss.bias.item() == -10
    assert make_loss("infonce").log_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_recipe_is_a_deprecated_alias_of_preset(run_cli, tmp_path):
    """--recipe (and recipe= in Python) still choose a training preset, and say they are deprecated."""
    import warnings

    from probe.api.alignment import plan_run

    ran = run_cli("run", *TINY, "--recipe", "sail-probing", "--epochs", "1", "--dry-run",
                  "--results", str(tmp_path / "r"))
    assert ran.returncode == 0, ran.stderr
    assert "deprecated" in ran.stderr and "--preset" in ran.stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = plan_run("test/tiny-vit", "test/tiny-bert", recipe="sail", epochs=1, results_dir=tmp_path / "p",
                        dry_run=True, progress=False)
    assert any(issubclass(w.category, DeprecationWarning) and "preset=" in str(w.message) for w in caught)
    assert {c.recipe for c in plan.sweep.configs} == {"sail"} and {c.head for c in plan.sweep.configs} == {"star"}
    with pytest.raises(ProbeError, match="disagree"):
        plan_run("test/tiny-vit", "test/tiny-bert", preset="sail", recipe="freeze-align", dry_run=True)
    both = run_cli("run", *TINY, "--preset", "sail", "--recipe", "sail-probing", "--dry-run")
    assert both.returncode == 2 and "Traceback" not in both.stderr, both.stderr
    assert both.stderr.strip().splitlines()[-1].startswith("error: preset 'sail' and recipe 'sail-probing' disagree")


def test_presets_are_listed_with_what_runs(run_cli):
    import probe

    rows = {r["name"]: r for r in probe.presets()}
    assert {"sail", "sail-probing", "freeze-align"} <= set(rows)
    assert rows["sail"]["values"] == SAIL and not rows["sail"]["unsupported"]
    assert not rows["freeze-align"]["unsupported"] and rows["freeze-align"]["values"]["head"] == "freeze-align"
    listed = json.loads(run_cli("presets", "--json").stdout)
    assert [r["name"] for r in listed] == sorted(rows)
    table = run_cli("presets").stdout
    assert "sail-probing" in table and "probe tune; differs: open_clip computed in fp16" in table
