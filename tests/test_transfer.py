"""The zero-shot transfer protocol: fit on a corpus, score benchmarks it never saw, say so in the record."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error
from PIL import Image

from probe.data import get_dataset
from probe.data.splits import carve_out, transfer_plan
from probe.errors import ProbeError

TINY = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "2")


def test_subset_keeps_each_image_with_its_own_captions_and_labels():
    data = get_dataset("shapes").load("val")
    rows = [7, 2, 40]
    part = data.subset(rows, "val-part")
    assert part.n_images == 3 and part.split == "val-part" and part.dataset == "shapes"
    for new, old in enumerate(rows):
        assert [part.captions[j] for j in part.captions_of(new)] == [data.captions[j] for j in data.captions_of(old)]
        assert part.labels["shape"][new] == data.labels["shape"][old]
        assert part.images[new] is data.images[old]
    assert part.image_fingerprint() != data.image_fingerprint()  # its own content (features: rows of the whole)
    # where its rows sit in the whole split, also for a subset of a subset
    assert part.parent.whole is data and part.parent.images.tolist() == rows
    inner = part.subset([2, 0], "val-inner")
    assert inner.parent.whole is data and inner.parent.images.tolist() == [40, 7]
    assert [data.captions[j] for j in inner.parent.captions] == inner.captions


def test_carve_out_is_seeded_disjoint_and_complete():
    data = get_dataset("shapes").load("train")
    fit, held = carve_out(data, seed=0)
    again_fit, again_held = carve_out(data, seed=0)
    assert held.n_images == 15 and fit.n_images == 285  # 5% of 300
    assert [repr(r) for r in held.images] == [repr(r) for r in again_held.images]
    assert {repr(r) for r in fit.images} | {repr(r) for r in held.images} == {repr(r) for r in data.images}
    assert not {repr(r) for r in fit.images} & {repr(r) for r in held.images}
    assert len(fit.captions) + len(held.captions) == len(data.captions)
    other_fit, other_held = carve_out(data, seed=1)
    assert {repr(r) for r in other_held.images} != {repr(r) for r in held.images}
    with pytest.raises(ProbeError, match="too few to hold 10 out"):
        carve_out(data.subset(range(12), "tiny"))


def test_a_corpus_without_val_holds_out_a_seeded_slice(tmp_path):
    rows = ["image,caption,split"]
    for i in range(40):
        Image.new("RGB", (8, 8), (i * 6, 0, 0)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,a red square number {i},train")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    plan = transfer_plan(get_dataset(f"csv:{tmp_path / 'pairs.csv'}"), [get_dataset("shapes-ood")],
                         {"retrieval"}, explicit_tasks=False)
    assert plan.val is not None and plan.val.n_images == 10 and plan.fit.n_images == 30
    assert "seeded carve-out of 10 of the 40 'train' images" in plan.held_out_rule
    assert [t.benchmark for t in plan.targets] == ["shapes-ood"] and plan.protocol == "zero-shot transfer"


def test_transfer_run_writes_one_record_per_benchmark(run_cli, tmp_path, shared_cache):
    out = tmp_path / "r"
    result = run_cli("run", "--train", "shapes", "--eval", "shapes-ood", "--eval", "shapes", *TINY,
                     "--results", str(out), env={"PROBE_CACHE_DIR": str(shared_cache)})
    assert result.returncode == 0, result.stderr
    assert "x 2 benchmarks = 2 result(s) fitted on shapes, scored on shapes-ood, shapes" in result.stderr
    records = {p.name: json.loads(p.read_text()) for p in (out / "records" / "alignment").rglob("*.json")}
    ood = records["test_tiny-vit__test_tiny-bert__linear-siglip-epochs2-seed0__on-shapes-ood.json"]
    own = records["test_tiny-vit__test_tiny-bert__linear-siglip-epochs2-seed0.json"]  # where --dataset puts it
    assert ood["protocol"] == "zero-shot transfer" and own["protocol"] == "in-domain"
    ood_data = get_dataset("shapes-ood")
    fingerprint = f"{ood_data.load('test').content_fingerprint}+{ood_data.load('winoground').content_fingerprint}"
    assert ood["benchmark"] == {"name": "shapes-ood", "split": "test", "compositional_split": "winoground",
                                "description": ood_data.info.protocol, "fingerprint": fingerprint}
    corpus = get_dataset("shapes").load("train")
    assert ood["corpus"]["n_images"] == 300 and ood["corpus"]["fingerprint"].startswith(corpus.image_fingerprint())
    assert ood["corpus"]["held_out"] == "its 'val' split (75 images)" and ood["splits"]["eval"] == "test"
    # one fit, scored twice: the same training curve, different benchmarks' numbers
    assert ood["training"] == own["training"]
    assert ood["metrics"]["alignment/probing_score"] != own["metrics"]["alignment/probing_score"]
    assert set(ood["features"]["text"]) == {"fit", "val", "eval:shapes-ood", "compositional:shapes-ood",
                                            "prompts-shape:shapes-ood", "prompts-colour:shapes-ood"}
    again = run_cli("run", "--train", "shapes", "--eval", "shapes-ood", "--eval", "shapes", *TINY, "--skip-existing",
                    "--results", str(out), env={"PROBE_CACHE_DIR": str(shared_cache)})
    assert "0 written, 0 failed, 2 already there" in again.stderr


def test_transfer_bad_input_is_one_line(run_cli):
    assert_one_line_error(run_cli("run", *TINY, "--eval", "shapes-ood"), "--eval needs --train")
    assert_one_line_error(run_cli("run", *TINY, "--train", "shapes"), "--train needs at least one --eval")
    assert_one_line_error(run_cli("run", *TINY, "--train", "shapes", "--eval", "shapes-od"),
                          "unknown benchmark 'shapes-od'", "did you mean shapes-ood")
    assert_one_line_error(run_cli("run", *TINY, "--train", "shapes", "--eval", "shapes-ood", "-d", "digits"),
                          "not both")
    assert_one_line_error(run_cli("run", *TINY, "--train", "shapes-ood", "--eval", "shapes"),
                          "has no 'train' split")


def test_transfer_scores_are_computed_on_the_benchmark_not_the_corpus():
    """The plan's targets carry the benchmark's own splits, classes and templates."""
    plan = transfer_plan(get_dataset("shapes"), [get_dataset("shapes-ood")], {"retrieval", "zeroshot"}, False)
    (target,) = plan.targets
    assert target.eval.dataset == "shapes-ood" and target.label_tasks == ("shape", "colour")
    assert target.eval.templates["shape"][0] == "an illustration of a {}."
    assert target.role("eval") == "eval:shapes-ood" and np.all(plan.fit.labels["shape"] < 14)


def test_records_state_what_a_result_cost(run_cli, tmp_path, shared_cache):
    out = tmp_path / "r"
    result = run_cli("run", "--train", "shapes", "--eval", "shapes-ood", *TINY, "--batch-size", "64",
                     "--results", str(out), env={"PROBE_CACHE_DIR": str(tmp_path / "fresh-cache")})
    assert result.returncode == 0, result.stderr
    (path,) = (out / "records" / "alignment").rglob("*.json")
    record = json.loads(path.read_text())
    cost, training = record["cost"], record["training"]
    assert cost["optimizer_steps"] == training["steps"] == 2 * (1500 // 64)
    assert cost["pairs_seen"] == 64 * cost["optimizer_steps"] and cost["device"] == training["device"]
    # a linear-head step: both heads' matmuls and the 64 x 64 logits forward, about twice that backward
    forward = 2 * 64 * (64 + 32) * 512 + 2 * 64 * 64 * 512
    per_step = cost["head_train_flops"] / cost["optimizer_steps"]
    assert forward <= per_step <= 4 * forward
    meta = {json.loads(p.read_text())["model"]: json.loads(p.read_text())
            for p in (tmp_path / "fresh-cache").rglob("meta.json") if "train.images" in str(p)
            or "train.captions" in str(p)}
    assert cost["extraction_flops"]["vision"] == pytest.approx(meta["test/tiny-vit"]["flops_per_input"] * 300)
    assert cost["extraction_flops"]["text"] == pytest.approx(meta["test/tiny-bert"]["flops_per_input"] * 1500)
    assert meta["test/tiny-vit"]["flops_per_input"] > 2 * 16 * 192 * 32  # at least the patch embedding


def test_img2dataset_shards_are_a_training_corpus(run_cli, tmp_path):
    """Shards as img2dataset writes them (key.jpg, key.txt, key.json per sample) fit heads; the
    corpus has no val split, so early stopping holds out a seeded slice."""
    import io
    import tarfile

    shards = tmp_path / "cc-like"
    shards.mkdir()
    rng = np.random.default_rng(0)
    for shard in range(2):
        with tarfile.open(shards / f"{shard:05d}.tar", "w") as tar:
            for i in range(30):
                key = f"{shard:05d}{i:04d}"
                colour = tuple(int(v) for v in rng.integers(0, 255, 3))
                buffer = io.BytesIO()
                Image.new("RGB", (32, 32), colour).save(buffer, format="JPEG")
                caption = f"a square of colour {colour[0]} {colour[1]} {colour[2]}".encode()
                meta = json.dumps({"key": key, "caption": caption.decode(), "status": "success"}).encode()
                for name, payload in ((f"{key}.jpg", buffer.getvalue()), (f"{key}.txt", caption),
                                      (f"{key}.json", meta)):
                    info = tarfile.TarInfo(name)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    out = tmp_path / "r"
    # the corpus's features computed ahead (as on a cluster), then the run reads them: its fit and held-out
    # parts are rows of the whole split's entry, not entries of their own
    extracted = run_cli("extract", "-m", "test/tiny-vit", "-m", "test/tiny-bert", "-d", f"wds:{shards}",
                        "--results", str(out), "--workers", "0")
    assert extracted.returncode == 0, extracted.stderr
    before = sorted(p.parent.name for p in (out / "features").rglob("meta.json"))
    result = run_cli("run", "--train", f"wds:{shards}", "--eval", "shapes-ood", *TINY, "--batch-size", "16",
                     "--results", str(out))
    assert result.returncode == 0, result.stderr
    assert f"test/tiny-vit wds:{shards}/train: 60 images, from the cache" in result.stderr
    assert f"test/tiny-bert wds:{shards}/train: 60 captions, from the cache" in result.stderr
    corpus_entries = sorted(p.parent.name for p in (out / "features").rglob("meta.json") if "shapes" not in str(p))
    assert corpus_entries == before and all(name.startswith("train.") for name in before)
    (path,) = (out / "records" / "alignment").rglob("*.json")
    record = json.loads(path.read_text())
    assert record["corpus"]["n_images"] == 50 and record["corpus"]["split"] == "train-fit"
    assert record["corpus"]["held_out"].startswith("a seeded carve-out of 10 of the 60 'train' images")
    assert record["splits"]["val"] == "train-heldout" and record["protocol"] == "zero-shot transfer"
    assert record["features"]["vision"]["fit"] == record["features"]["vision"]["val"] in before


def test_a_carve_out_reads_its_rows_of_the_whole_splits_entry(tmp_path):
    """The fit and held-out parts of a corpus without a val split read the entry of the whole split
    (as `probe extract` writes it), row for row equal to encoding each part as a split of its own."""
    from probe.data.splits import SplitPlan
    from probe.features import ExtractOptions, split_features
    from probe.features.roles import encoder_features
    from probe.registry import Registry

    data = get_dataset("shapes").load("val")
    fit, held = carve_out(data, seed=0)
    plan = SplitPlan(fit=fit, val=held)
    shared = ExtractOptions(cache_dir=tmp_path / "shared", workers=0, progress=False)
    apart = ExtractOptions(cache_dir=tmp_path / "apart", workers=0, progress=False)
    for name in ("test/tiny-vit", "test/tiny-bert"):
        spec = Registry.load().get(name)
        got = encoder_features(spec, plan, shared, with_prompts=False)
        for role, part in (("fit", fit), ("val", held)):
            rows = part.n_images if spec.modality == "vision" else len(part.captions)
            own = split_features(spec, part, apart).dense(rows)  # the part encoded as a split of its own
            np.testing.assert_allclose(got.by_role[role], own, atol=1e-5)
        (entry,) = [p.parent for p in (tmp_path / "shared").rglob("meta.json") if spec.name.split("/")[1] in str(p)]
        assert entry.name.startswith("val.") and got.keys["fit"] == got.keys["val"] == entry.name


def test_rows_of_a_subset_keep_their_skipped_inputs_missing():
    from probe.features.mapped import FeatureRows

    stored = np.arange(12, dtype=np.float32).reshape(4, 3)
    rows = FeatureRows(stored, np.array([0, 2, 3, 5]), n=6)  # inputs 1 and 4 were skipped
    part = rows.subset(np.array([5, 1, 2]))
    assert part.shape == (3, 3) and len(part) == 3 and part.nbytes_float32 == 3 * 3 * 4
    want = np.array([[9, 10, 11], [np.nan] * 3, [3, 4, 5]], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(part), want)
    np.testing.assert_array_equal(part.take(np.array([2, 0])), want[[2, 0]])
    assert part.finite_rows().tolist() == [True, False, True]
    assert rows.finite_rows().tolist() == [True, False, True, True, False, True]


def test_split_roles_name_their_target():
    """A role is ``base:key``; the key (a benchmark's name) may itself hold a colon."""
    from probe.data.splits import Role

    role = Role.parse("eval:imagefolder:/data/pets")
    assert role == Role("eval", "imagefolder:/data/pets") and str(role) == "eval:imagefolder:/data/pets"
    assert Role.parse("fit") == Role("fit") and str(Role("fit")) == "fit"
    # the fit and early-stopping splits serve every target's records; a target's own roles serve only it
    assert Role("val").serves("coco") and Role("fit").serves("")
    assert Role("prompts-zeroshot", "coco").serves("coco") and not Role("prompts-zeroshot", "coco").serves("")
    assert not Role("eval").serves("coco") and Role("eval").serves("")


def test_a_records_identity_holds_the_zero_shot_prompts_it_was_scored_with():
    """Templates change zero-shot scores as much as images do: a target's prompts digest changes with
    its templates, enters the pair identity, and is absent where nothing is scored zero-shot."""
    import dataclasses

    from probe.align.config import ProbeConfig
    from probe.data import get_dataset
    from probe.data.splits import Target, in_domain_plan
    from probe.records.identity import pair_identity
    from probe.registry import Registry

    plan = in_domain_plan(get_dataset("shapes"), {"retrieval", "zeroshot"}, explicit_tasks=False)
    target = plan.target
    assert target.label_tasks and target.prompts_fingerprint()
    task = target.label_tasks[0]
    assert target.prompt_texts(task)[0].endswith(".") and target.eval.classes[task][0] in target.prompt_texts(task)[0]
    sketched = dataclasses.replace(target, eval=dataclasses.replace(
        target.eval, templates={**target.eval.templates, task: ["a sketch of a {}."]}))
    assert sketched.prompts_fingerprint() != target.prompts_fingerprint()
    assert Target(target.benchmark, target.eval).prompts_fingerprint() is None  # no label tasks scored
    registry = Registry.load()
    vision, text = registry.get("test/tiny-vit"), registry.get("test/tiny-bert")

    def identity(t: Target) -> str:
        return pair_identity("alignment", vision, text, ProbeConfig(), {"name": "shapes"}, t, t.protocol("shapes"),
                             ["zeroshot"])

    assert identity(sketched) != identity(target) and identity(target) == identity(target)
