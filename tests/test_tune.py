"""`probe tune`: exactly the named parts train, an all-frozen tune is `probe run`, a killed run resumes
to the same weights, the tuned model loads and encodes, and bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error

torch = pytest.importorskip("torch")

VISION_FLAGS = ("patch_embed", "cls_token", "pos_embed", "blocks", "blocks:1", "norm")
TEXT_FLAGS = ("token_embeddings", "position_embeddings", "cls", "blocks", "blocks:1", "norm")


def _train_split(n_images: int = 40):
    from probe.data import get_dataset

    data = get_dataset("shapes").load("train")
    return data.subset(np.arange(n_images), "train-head")


def _side(name: str, parts: str, data, pooling: str = "cls"):
    """A tiny encoder as a tune side: its module, what trains, and its untrained features."""
    from probe.encoders import load_encoder
    from probe.features.batches import encode_inputs
    from probe.registry import Registry
    from probe.unfreezing.modules import TunedEncoder, module_parts, pooled_spec, tunable
    from probe.unfreezing.parts import apply, parse_parts, resolve
    from probe.unfreezing.train import Side

    spec = Registry.load().get(name)
    module = tunable(load_encoder(spec, device="cpu"), pooling)
    inputs = data.images if spec.modality == "vision" else data.captions
    features = encode_inputs(TunedEncoder(pooled_spec(spec, module), module, "cpu"), inputs, 16)
    selection = parse_parts(parts, spec.modality)
    parts_of, _ = module_parts(module)
    trainable = resolve(selection, parts_of, spec.name, spec.modality)
    apply(module.backbone, trainable)
    return Side(features, module if not selection.frozen else None, trainable, inputs), module


def _fit(vision, text, data, run_dir=None, epochs: int = 1, checkpoint_every: int = 0, precision: str = "auto",
         grad_checkpointing: bool | None = None, **cfg):
    from probe.align.config import ProbeConfig
    from probe.features.paired import PairedFeatures
    from probe.unfreezing.config import TuneConfig
    from probe.unfreezing.train import tune_fit

    pairs = PairedFeatures(vision.features, text.features, data.caption_image).usable_pairs()
    config = ProbeConfig(head="linear", loss="infonce", epochs=epochs, batch_size=32, out_dim=16, norm=False,
                         **cfg)
    tune = TuneConfig(encoder_lr=1e-2, checkpoint_every=checkpoint_every, precision=precision,
                      grad_checkpointing=grad_checkpointing)
    return tune_fit(vision, text, data.caption_image, pairs, config, tune, "cpu", run_dir=run_dir, run_key="test",
                    progress=False)


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.backbone.state_dict().items()}


@pytest.mark.parametrize(("modality", "flag"), [("vision", f) for f in VISION_FLAGS] + [("text", f) for f in TEXT_FLAGS])
def test_exactly_the_named_tensors_train(modality, flag):
    data = _train_split()
    vision, v_module = _side("test/tiny-vit", flag if modality == "vision" else "none", data)
    text, t_module = _side("test/tiny-bert", flag if modality == "text" else "none", data)
    module, side = (v_module, vision) if modality == "vision" else (t_module, text)
    other = v_module if modality == "text" else t_module
    before, other_before = _state(module), _state(other)
    _fit(vision, text, data)
    after = _state(module)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    expected = set(side.trainable.names)
    assert expected, f"{flag} names no tensor"
    assert changed == expected, (flag, sorted(changed ^ expected))  # every named tensor moved, nothing else did
    if flag == "blocks:1":  # the last block only
        assert all(".1." in k for k in changed) and not any(".0." in k for k in changed)
    for name, rows in side.trainable.rows.items():  # the CLS row, and no other row of the embedding matrix
        moved = torch.nonzero((before[name] != after[name]).any(dim=1)).flatten().tolist()
        assert moved == list(rows) == [t_module.cls_id]
    # the other side is frozen: untouched, bit for bit
    assert all(torch.equal(v, _state(other)[k]) for k, v in other_before.items())


def test_freezing_the_cls_tokens_holds_exactly_them():
    """The paper's embedding stage with both CLS tokens held frozen (its abstract's ablation): the
    vision CLS token does not move, nor the CLS row of the token embeddings, while every other
    embedding tensor and every other row of that matrix trains."""
    from probe.unfreezing.config import TuneConfig, from_notation, with_cls_frozen

    vision_parts, text_parts = (with_cls_frozen(p, m) for p, m in zip(from_notation("V_u^f,T_u^f"),
                                                                       ("vision", "text"), strict=True))
    assert (vision_parts, text_parts) == ("stages:embeddings,-cls_token", "stages:embeddings,-cls")
    config = TuneConfig(vision_parts=vision_parts, text_parts=text_parts)
    assert config.setting == "V[stage:embeddings+-cls_token],T[stage:embeddings+-cls]"
    data = _train_split()
    vision, v_module = _side("test/tiny-vit", "patch_embed,cls_token,pos_embed,-cls_token", data)
    text, t_module = _side("test/tiny-bert", "token_embeddings,position_embeddings,cls,-cls", data)
    assert "cls_token" not in vision.trainable.names
    (matrix, rows), = text.trainable.frozen_rows.items()
    assert rows == (t_module.cls_id,) and matrix in text.trainable.tensors
    before = [_state(v_module), _state(t_module)]
    _fit(vision, text, data)
    v_after, t_after = _state(v_module), _state(t_module)
    assert torch.equal(v_after["cls_token"], before[0]["cls_token"])
    assert not torch.equal(v_after["patch_embed.proj.weight"], before[0]["patch_embed.proj.weight"])
    moved = torch.nonzero((before[1][matrix] != t_after[matrix]).any(dim=1)).flatten().tolist()
    assert t_module.cls_id not in moved and len(moved) > 1  # the caption tokens' rows trained, not the CLS row
    from probe.unfreezing.parts import count_trainable

    width = t_after[matrix].shape[1]
    assert count_trainable(t_module.backbone, text.trainable) == sum(
        t_after[n].numel() for n in text.trainable.tensors) - width


def test_part_exclusions_are_checked(run_cli):
    from probe.errors import ProbeError
    from probe.unfreezing.parts import parse_parts

    assert parse_parts("all,-cls", "text").excluded == ("cls",)
    for bad, fragment in (("all,-blocks", "cannot exclude 'blocks'"), ("-cls", "need parts to exclude them from"),
                          ("none,-cls", "stands alone"), ("token_embeddings,-wings", "cannot exclude 'wings'")):
        with pytest.raises(ProbeError, match=fragment):
            parse_parts(bad, "text")


@pytest.mark.parametrize(("vision_parts", "text_parts"), [("patch_embed", "token_embeddings"), ("blocks", "blocks")])
def test_gradient_checkpointing_recomputes_every_block_and_trains_the_same_weights(vision_parts, text_parts):
    """Embeddings trained behind frozen blocks, and blocks trained behind frozen embeddings (where
    reentrant checkpointing would pass no gradient): each block runs twice per step, the weights
    end equal to an uncheckpointed run's."""
    data = _train_split()
    runs = []
    for on in (False, True):
        vision, v_module = _side("test/tiny-vit", vision_parts, data)
        text, t_module = _side("test/tiny-bert", text_parts, data)
        calls = {"vision": 0, "text": 0}
        for name, module in (("vision", v_module), ("text", t_module)):
            first_block = module.backbone.get_submodule("blocks.0" if name == "vision" else "encoder.layer.0")
            child = next(first_block.children())  # hooks fire on every call of the child, recomputation included

            def count(*_, name=name, calls=calls):
                calls[name] += 1

            child.register_forward_hook(count)
        initial = [_state(v_module), _state(t_module)]
        result = _fit(vision, text, data, grad_checkpointing=on)
        runs.append((calls, [_state(v_module), _state(t_module)], result.steps))
    (plain, plain_weights, steps), (checkpointed, checkpointed_weights, _) = runs
    assert plain == {"vision": steps, "text": steps}
    assert checkpointed == {"vision": 2 * steps, "text": 2 * steps}
    for mine, theirs, start in zip(checkpointed_weights, plain_weights, initial, strict=True):
        assert any(not torch.equal(theirs[k], start[k]) for k in start)  # both sides trained
        assert all(torch.allclose(mine[k], theirs[k], rtol=0, atol=1e-6) for k in theirs)


def test_bf16_autocast_trains_the_named_tensors_and_keeps_float32_weights():
    """The accelerator's code path (bf16 autocast, gradient checkpointing) run on the CPU."""
    data = _train_split()
    losses = {}
    for precision in ("fp32", "bf16"):
        vision, v_module = _side("test/tiny-vit", "patch_embed,cls_token", data)
        text, t_module = _side("test/tiny-bert", "cls,blocks:1", data)
        before = [_state(v_module), _state(t_module)]
        result = _fit(vision, text, data, epochs=2, precision=precision, grad_checkpointing=precision == "bf16")
        losses[precision] = [h["loss"] for h in result.history]
        for side, module, was in ((vision, v_module, before[0]), (text, t_module, before[1])):
            after = _state(module)
            assert {k for k in was if not torch.equal(was[k], after[k])} == set(side.trainable.names)
            assert all(p.dtype == torch.float32 for p in module.backbone.parameters())  # master weights
    # bf16 ran (the losses differ in their low bits) and trained as float32 does (within bf16's precision)
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)


def test_part_maps_cover_the_encoders_and_a_cnn_has_no_cls_token():
    from probe.encoders import load_encoder
    from probe.errors import ProbeError
    from probe.registry import Registry
    from probe.unfreezing.modules import tunable
    from probe.unfreezing.parts import parse_parts, part_map, resolve

    registry = Registry.load()
    vit = tunable(load_encoder(registry.get("test/tiny-vit"), device="cpu"), "cls")
    parts, unnamed = part_map(vit.backbone, "vision")
    assert list(parts) == ["patch_embed", "cls_token", "pos_embed", "blocks", "norm"] and not unnamed
    named = [p for part in parts.values() for p in part.params]
    assert sorted(named) == sorted(n for n, _ in vit.backbone.named_parameters())  # each tensor in one part
    cnn = tunable(load_encoder(registry.get("baseline/random-efficientnet-lite0"), device="cpu"), "cls")
    assert cnn.pooling == "pooler"  # no CLS token: its own pooling
    cnn_parts, unnamed = part_map(cnn.backbone, "vision")
    assert list(cnn_parts) == ["patch_embed", "blocks", "head"] and not unnamed
    with pytest.raises(ProbeError, match=r"has no part 'cls_token' \(a CNN\); its vision parts: patch_embed, blocks, head"):
        resolve(parse_parts("cls_token", "vision"), cnn_parts, "baseline/random-efficientnet-lite0", "vision")
    n_blocks = len({i for i in parts["blocks"].block_of.values() if i is not None})
    with pytest.raises(ProbeError, match=rf"test/tiny-vit has {n_blocks} vision blocks; blocks:99 asks for its last 99"):
        resolve(parse_parts("blocks:99", "vision"), parts, "test/tiny-vit", "vision")
    assert resolve(parse_parts(f"blocks:{n_blocks}", "vision"), parts, "test/tiny-vit", "vision").tensors == \
        resolve(parse_parts("blocks", "vision"), parts, "test/tiny-vit", "vision").tensors
    bert = tunable(load_encoder(registry.get("test/tiny-bert"), device="cpu"), "cls")
    text_parts, _ = part_map(bert.backbone, "text", cls_row=bert.cls_id)
    assert text_parts["cls"].rows == (101,) and text_parts["norm"].stage == "embeddings"  # [CLS] in BERT's vocabulary
    assert text_parts["blocks"].stage == "blocks" and text_parts["token_embeddings"].stage == "embeddings"


def test_the_papers_notation_names_stages():
    from probe.errors import ProbeError
    from probe.unfreezing.config import GRIDS, TuneConfig, from_notation

    vision, text = from_notation("V_u^f,T_u^u")
    config = TuneConfig(vision_parts=vision, text_parts=text)
    assert config.setting == "V_u^f,T_u^u" and config.tag == "Vuf-Tuu"
    assert len(GRIDS["to-freeze-16"]) == 16 == len(set(GRIDS["to-freeze-16"]))
    # each of Table 2's variants differs from the best setting in exactly one letter
    best = GRIDS["to-freeze"][0]
    assert all(sum(a != b for a, b in zip(best, other, strict=True)) == 1 for other in GRIDS["to-freeze"][1:])
    with pytest.raises(ProbeError, match="is not the paper's notation"):
        from_notation("V_x^f,T_u^u")
    with pytest.raises(ProbeError, match="must name both sides"):
        from_notation("V_u^f")


def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    from probe.unfreezing import train

    data = _train_split()

    def sides():
        vision, v_module = _side("test/tiny-vit", "patch_embed,cls_token", data)
        text, t_module = _side("test/tiny-bert", "cls,blocks:1", data)
        return vision, text, v_module, t_module

    vision, text, v_module, t_module = sides()
    straight = _fit(vision, text, data, epochs=2)  # 200 captions in batches of 32: 6 steps per epoch
    want = [_state(v_module), _state(t_module), straight.probe.vision_head_.state_dict()]

    real_step, calls = train._step, {"n": 0}

    def dying_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:  # killed in step 11: the last checkpoint is step 9's (every 3 steps)
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    vision, text, _, _ = sides()
    monkeypatch.setattr(train, "_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        _fit(vision, text, data, run_dir=tmp_path, epochs=2, checkpoint_every=3)
    monkeypatch.setattr(train, "_step", real_step)
    vision, text, v_module, t_module = sides()  # a new process: fresh modules, the checkpoint on disk
    resumed = _fit(vision, text, data, run_dir=tmp_path, epochs=2, checkpoint_every=3)
    assert resumed.resumed_at == 9
    got = [_state(v_module), _state(t_module), resumed.probe.vision_head_.state_dict()]
    for mine, theirs in zip(got, want, strict=True):
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert resumed.history == straight.history and resumed.steps == straight.steps == 12


TINY = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert")


def test_an_all_frozen_tune_is_probe_run_with_the_same_head(run_cli, tmp_path, shared_cache):
    head = ("--head", "linear", "--loss", "infonce", "--epochs", "3", "--batch-size", "64", "--lr", "1e-3",
            "--out-dim", "32")
    common = (*TINY, *head, "--results", str(tmp_path), "--cache-dir", str(shared_cache), "--workers", "0")
    ran = run_cli("run", *common, "--no-save-models")
    assert ran.returncode == 0, ran.stderr
    tuned = run_cli("tune", *common, "--vision-parts", "none", "--text-parts", "none", "--pooling", "entry", "--norm",
                    "--no-save-models")
    assert tuned.returncode == 0, tuned.stderr
    (run_record,) = (tmp_path / "records" / "alignment").rglob("*.json")
    (tune_record,) = (tmp_path / "records" / "tune").rglob("*.json")
    mine, theirs = json.loads(tune_record.read_text()), json.loads(run_record.read_text())
    assert mine["kind"] == "tune" and mine["tune"]["setting"] == "V_f^f,T_f^f"  # nothing trained
    assert mine["tune"]["trainable_params"]["vision"] == mine["tune"]["trainable_params"]["text"] == 0
    # "auto" as it ran on a CPU
    assert mine["tune"]["config"]["precision"] == "fp32" and mine["tune"]["config"]["grad_checkpointing"] is False
    assert mine["metrics"].keys() == theirs["metrics"].keys()
    for key, value in theirs["metrics"].items():
        assert mine["metrics"][key] == pytest.approx(value, abs=1e-6), key
    for a, b in zip(mine["training"]["history"], theirs["training"]["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_a_tuned_model_is_saved_loads_and_encodes_as_scored(run_cli, tmp_path, shared_cache):
    from probe.aligned import AlignedModel
    from probe.data import get_dataset
    from probe.metrics.retrieval import metrics_from_ranks, retrieval_ranks

    # a pattern reaching an entry that cannot train (pixels) skips its run, counted; bf16 as on a GPU
    result = run_cli("tune", *TINY, "--vision", "baseline/pix*", "--text-parts", "cls,norm", "--vision-parts",
                     "cls_token", "--epochs", "2", "--batch-size", "64", "--results", str(tmp_path), "--cache-dir",
                     str(shared_cache), "--workers", "0", "--encoder-lr", "1e-3", "--precision", "bf16",
                     "--grad-checkpointing")
    assert result.returncode == 0, result.stderr
    assert "skipping 1 tune run(s) that would train an entry that cannot train: baseline/pixels-16" in result.stderr
    (record_path,) = (tmp_path / "records" / "tune").rglob("*.json")
    record = json.loads(record_path.read_text())
    assert record["tune"]["config"]["precision"] == "bf16" and record["tune"]["config"]["grad_checkpointing"] is True
    assert record["tune"]["trainable_params"]["vision"] == 32 and record["tune"]["trainable_params"]["text"] == 32 + 64
    assert record["cost"]["train_flops"] > 0 and record["tune"]["samples_seen"] == record["cost"]["pairs_seen"] > 0
    model = AlignedModel.load(tmp_path / record["saved_model"])
    assert model.tuned
    # the finished run's folder (checkpoint, tuned benchmark features) is gone; the saved model stays
    assert not (tmp_path / "tune").exists() or not any((tmp_path / "tune").rglob("*.npy"))
    test = get_dataset("shapes").load("test")
    images = model.encode_image([ref.load() for ref in test.images])
    texts = model.encode_text(test.captions)
    i2t, t2i = retrieval_ranks(images, texts, test.caption_image, text_groups=test.caption_groups)
    # the saved model reproduces the score its run recorded (same weights, same pooling)
    assert metrics_from_ranks(i2t, t2i)["probing_score"] == pytest.approx(
        record["metrics"]["alignment/probing_score"], abs=1e-6)
    scored = run_cli("eval", "--model", str(tmp_path / record["saved_model"]), "--eval", "shapes", "--results",
                     str(tmp_path), "--cache-dir", str(shared_cache))
    assert scored.returncode == 0, scored.stderr
    assert "equal to the record of the run that fitted it" in scored.stdout, scored.stdout

    # --dry-run: the finished run is there; a longer one of the same pair and setting is estimated from
    # its seconds per step: 4 epochs x (1,500 shapes/train captions // 64) = 92 steps at most
    same = ("tune", *TINY, "--text-parts", "cls,norm", "--vision-parts", "cls_token", "--batch-size", "64",
            "--results", str(tmp_path), "--encoder-lr", "1e-3", "--precision", "bf16", "--grad-checkpointing",
            "--dry-run", "--skip-existing")
    there = run_cli(*same, "--epochs", "2")
    assert there.returncode == 0, there.stderr
    assert "there (skipped)" in there.stdout and "0 run(s) to train, 1 already there (skipped)" in there.stdout
    # a record whose inputs changed is run again, by the dry run's count as by the run's
    record_path.write_text(json.dumps(record | {"identity": "0" * 20}))
    outdated = run_cli(*same, "--epochs", "2")
    assert outdated.returncode == 0, outdated.stderr
    assert ("1 run(s) to train, 0 already there (skipped); 1 there but run again (their inputs changed)"
            in outdated.stdout), outdated.stdout
    record_path.write_text(json.dumps(record))
    longer = run_cli(*same, "--epochs", "4")
    assert longer.returncode == 0, longer.stderr
    per_step = record["timing"]["train_s"] / record["training"]["steps"]
    assert record["training"]["steps"] == 2 * (1500 // 64)
    from probe.pipeline.preview import duration

    assert "to run" in longer.stdout and "<= 92" in longer.stdout
    assert f"<= {duration(92 * per_step)} ({per_step:.2f} s/step)" in longer.stdout
    assert "1 run(s) to train, 0 already there (skipped)" in longer.stdout


def test_bad_tune_input_is_one_line(run_cli, tmp_path):
    out = ("--results", str(tmp_path))
    assert_one_line_error(run_cli("tune", *TINY, "--vision-parts", "patch", *out),
                          "unknown vision part 'patch'", "patch_embed, cls_token")
    assert_one_line_error(run_cli("tune", "--vision", "baseline/pixels-16", "--text", "test/tiny-bert", *out),
                          "baseline/pixels-16 cannot be tuned", "no weights to train")
    onnx = "sentence-transformers/paraphrase-minilm-l3-v2.onnx"
    from probe.encoders.loadable import check
    from probe.registry import Registry

    if check(Registry.load().get(onnx), False).ok:
        assert_one_line_error(run_cli("tune", "--vision", "test/tiny-vit", "--text", onnx, "--text-parts", "all", *out),
                              f"{onnx} cannot be tuned: an ONNX graph has fixed weights")
    assert_one_line_error(run_cli("tune", *TINY, "--freeze", "V_u^x,T_u^u", *out), "not the paper's notation")
    assert_one_line_error(run_cli("tune", *TINY, "--freeze", "V_u^f,T_u^u", "--grid", "to-freeze", *out),
                          "give one of --freeze, --grid")
    cnn = run_cli("tune", "--vision", "baseline/random-efficientnet-lite0", "--text", "test/tiny-bert",
                  "--vision-parts", "cls_token", "--workers", "0", *out)
    assert_one_line_error(cnn, "has no part 'cls_token' (a CNN)", "patch_embed, blocks, head")
    assert not list(Path(tmp_path).rglob("*.json"))  # refused before any record


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    from probe.errors import ProbeError

    data = _train_split()
    vision, _ = _side("test/tiny-vit", "cls_token", data)
    text, _ = _side("test/tiny-bert", "none", data)
    _fit(vision, text, data, run_dir=tmp_path, checkpoint_every=3)
    from probe.align.config import ProbeConfig
    from probe.features.paired import PairedFeatures
    from probe.unfreezing.config import TuneConfig
    from probe.unfreezing.train import tune_fit

    pairs = PairedFeatures(vision.features, text.features, data.caption_image).usable_pairs()
    with pytest.raises(ProbeError, match="was written by another configuration"):
        tune_fit(vision, text, data.caption_image, pairs, ProbeConfig(batch_size=32, out_dim=16), TuneConfig(), "cpu",
                 run_dir=tmp_path, run_key="another", progress=False)
    # a valid torch file of this run's key whose tensors have other shapes, or that is not a checkpoint
    from probe.unfreezing.train import CHECKPOINT

    payload = torch.load(tmp_path / CHECKPOINT, map_location="cpu", weights_only=True)
    name = next(iter(payload["weights"]["vision"]))
    payload["weights"]["vision"][name] = torch.zeros(3)
    torch.save(payload, tmp_path / CHECKPOINT)
    with pytest.raises(ProbeError, match=r"checkpoint .* does not fit this run \(RuntimeError: .*\); delete it"):
        _fit(vision, text, data, run_dir=tmp_path, checkpoint_every=3)
    torch.save([1, 2], tmp_path / CHECKPOINT)
    with pytest.raises(ProbeError, match="holds a list, not a probe tune checkpoint"):
        _fit(vision, text, data, run_dir=tmp_path, checkpoint_every=3)


def test_the_report_lays_tune_results_out_as_the_papers_table(run_cli, tmp_path, shared_cache):
    """Two settings x two seeds: one row per setting, each benchmark's mean +- std over the seeds
    (numpy on the records), and the score-against-samples plot."""
    import re

    common = (*TINY, "--epochs", "2", "--batch-size", "64", "--results", str(tmp_path / "r"), "--cache-dir",
              str(shared_cache), "--workers", "0", "--no-save-models", "--seed", "0", "--seed", "1",
              "--encoder-lr", "1e-3")
    for freeze in ("V_f^f,T_f^u", "V_u^f,T_f^f"):
        result = run_cli("tune", *common, "--freeze", freeze)
        assert result.returncode == 0, result.stderr
    report = run_cli("report", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "out"))
    assert report.returncode == 0, report.stderr
    paths = sorted((tmp_path / "r" / "records" / "tune").rglob("*.json"))
    records = [json.loads(p.read_text()) for p in paths]
    assert len(records) == 4
    assert sorted(p.name.rsplit("__", 1)[1] for p in paths) == ["linear-infonce-epochs2-batch_size64-normFalse-seed0.json"] * 2 + \
        ["linear-infonce-epochs2-batch_size64-normFalse-seed1.json"] * 2  # each seed named once
    page = (tmp_path / "out" / "leaderboard.html").read_text()
    assert "Partial unfreezing" in page and "validation probing score against samples seen" in page
    # a folder of tune results alone: the header speaks of them (no empty leaderboard, no filter box)
    assert "No head fits (<code>probe run</code>) here: 4 partial-unfreezing result(s) of\n1 vision" in page
    assert "result(s) shown" not in page and 'id="filter"' not in page
    for setting in ("V_f^f,T_f^u", "V_u^f,T_f^f"):
        scores = [r["metrics"]["alignment/probing_score"] for r in records if r["tune"]["setting"] == setting]
        want = f"{np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f}"
        row = re.search(rf"<tr><td class=\"text\">{re.escape(setting)}</td>(.*?)</tr>", page)
        assert row and want in row.group(1), (setting, want, row and row.group(1))
    tables = json.loads((tmp_path / "out" / "leaderboard.json").read_text())["tune"]
    # the grid's order (u before f, vision before text), not the order they ran in
    assert [row["setting"] for row in tables[0]["rows"]] == ["V_u^f,T_f^f", "V_f^f,T_f^u"]
    assert all(row["seeds"] == 2 for row in tables[0]["rows"])


def _ranks(model, data):
    from probe.metrics.retrieval import retrieval_ranks

    images = model.encode_image([ref.load() for ref in data.images])
    return retrieval_ranks(images, model.encode_text(data.captions), data.caption_image, text_groups=data.caption_groups)


def _probing_scores(i2t, t2i, owner, counts):
    """Probing scores (mean of both R@10) of resampled images (``counts[b, i]``: image i drawn that
    many times in resample b), each with its captions."""
    i2t_hits = (counts * (i2t < 10)).sum(axis=1) / counts.sum(axis=1)
    caption_counts = counts[:, owner]
    t2i_hits = (caption_counts * (t2i < 10)).sum(axis=1) / caption_counts.sum(axis=1)
    return 0.5 * (i2t_hits + t2i_hits)


def test_training_the_text_token_embeddings_changes_the_score(run_cli, tmp_path):
    """On shapes, with the vision side frozen: the text encoder's token embeddings trained vs frozen,
    scored on the same test images; the paired bootstrap interval of the difference excludes zero.
    It goes up here (a random-weight BERT, whose word embeddings carry nothing until trained); with
    all-MiniLM-L6-v2 the change is within the intervals (README)."""
    from probe.aligned import AlignedModel
    from probe.data import get_dataset

    common = ("--vision", "efficientnet/lite0-in1k", "--text", "baseline/random-bert-l6", "--vision-parts", "none",
              "--epochs", "8", "--encoder-lr", "1e-3", "--results", str(tmp_path), "--workers", "0")
    for parts in ("none", "token_embeddings"):
        result = run_cli("tune", *common, "--text-parts", parts)
        assert result.returncode == 0, result.stderr
    records = {json.loads(p.read_text())["tune"]["setting"]: json.loads(p.read_text())
               for p in (tmp_path / "records" / "tune").rglob("*.json")}
    frozen, trained = records["V_f^f,T_f^f"], records["V[none],T[token_embeddings]"]
    assert trained["tune"]["trainable_params"]["text"] == 30522 * 384 + 2 * 384  # word + token-type embeddings
    test = get_dataset("shapes").load("test")
    ranks = [_ranks(AlignedModel.load(tmp_path / r["saved_model"]), test) for r in (frozen, trained)]
    for (i2t, t2i), record in zip(ranks, (frozen, trained), strict=True):  # the saved models give the records' scores
        counts = np.ones((1, test.n_images))
        assert _probing_scores(i2t, t2i, test.caption_image, counts)[0] == pytest.approx(
            record["metrics"]["alignment/probing_score"], abs=1e-6)
    counts = np.random.default_rng(0).multinomial(test.n_images, np.full(test.n_images, 1 / test.n_images), size=2000)
    difference = (_probing_scores(*ranks[1], test.caption_image, counts)
                  - _probing_scores(*ranks[0], test.caption_image, counts))
    low, high = np.quantile(difference, [0.025, 0.975])
    assert low > 0, (low, high)  # measurably better with the token embeddings trained
