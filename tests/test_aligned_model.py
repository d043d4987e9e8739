"""Saved aligned models: load, encode raw inputs, score again without refitting, export."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, assert_one_line_error

from probe.errors import ProbeError

TINY = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "3")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, shared_cache):
    """A transfer run on tiny encoders: its results folder, its records and the saved model's folder."""
    root = tmp_path_factory.mktemp("aligned")
    env = {**os.environ, "PROBE_CACHE_DIR": str(shared_cache)}
    ran = subprocess.run([sys.executable, "-m", "probe", "run", "--train", "shapes", "--eval", "shapes-ood", *TINY,
                          "--results", str(root)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    (record_path,) = (root / "records" / "alignment").rglob("*.json")
    record = json.loads(record_path.read_text())
    return root, record, root / record["saved_model"]


def test_a_run_saves_each_fitted_pair(fitted):
    root, record, folder = fitted
    meta = json.loads((folder / "aligned.json").read_text())
    assert record["saved_model"].startswith("models/shapes/") and (folder / "heads.safetensors").is_file()
    assert meta["vision"]["name"] == "test/tiny-vit" and meta["text"]["pooling"] == "mean"
    assert meta["config"]["epochs"] == 3 and meta["dims"] == {"vision": 64, "text": 32}
    assert meta["corpus"]["fingerprint"] == record["corpus"]["fingerprint"]


def test_encode_image_on_raw_images_reproduces_features_then_heads(fitted, shared_cache):
    from probe.aligned import AlignedModel
    from probe.data import get_dataset
    from probe.features import ExtractOptions, split_features

    _, _, folder = fitted
    model = AlignedModel.load(folder, device="cpu")
    data = get_dataset("shapes").load("train")
    images = [ref.load() for ref in data.images[:64]]
    cached = split_features(model.vision_spec, data, ExtractOptions(cache_dir=shared_cache, batch_size=32,
                                                                     progress=False)).dense(data.n_images)[:64]
    assert np.array_equal(model.encode_image(images, batch_size=32), model.embed_image_features(cached))
    texts = data.captions[:10]
    cached_text = split_features(model.text_spec, data, ExtractOptions(cache_dir=shared_cache, batch_size=32,
                                                                        progress=False)).features[:10]
    np.testing.assert_allclose(model.encode_text(texts, batch_size=32), model.embed_text_features(cached_text),
                               atol=1e-6)


def test_zero_shot_classifier_equals_a_brute_force_computation(fitted):
    from probe.aligned import AlignedModel
    from probe.data import get_dataset
    from probe.metrics.zeroshot import topk_accuracy

    _, _, folder = fitted
    model = AlignedModel.load(folder, device="cpu")
    classes, templates = ["circle", "square", "star"], ["a {}.", "a drawing of a {}."]
    classifier = model.zero_shot_classifier(classes, templates)
    brute = []
    for name in classes:  # one prompt at a time, by hand
        prompts = [model.encode_text([t.format(name)])[0] for t in templates]
        mean = np.mean([p / np.linalg.norm(p) for p in prompts], axis=0)
        brute.append(mean / np.linalg.norm(mean))
    np.testing.assert_allclose(classifier, np.array(brute), atol=1e-6)
    data = get_dataset("shapes-ood").load("test")
    keep = [i for i in range(data.n_images) if data.labels["shape"][i] in (0, 1, 3)][:30]
    labels = np.array([{0: 0, 1: 1, 3: 2}[data.labels["shape"][i]] for i in keep])
    images = model.encode_image([data.images[i].load() for i in keep])
    hits = sum(int(np.argmax([image @ c for c in brute]) == y) for image, y in zip(images, labels, strict=True))
    assert topk_accuracy(images, classifier, labels, (1,))[1] == pytest.approx(hits / len(keep))


def test_probe_eval_reproduces_the_run_and_scores_new_benchmarks(fitted, run_cli, shared_cache):
    root, record, folder = fitted
    env = {"PROBE_CACHE_DIR": str(shared_cache)}
    again = run_cli("eval", "--model", str(folder), "--eval", "shapes-ood", "--results", str(root), env=env)
    assert again.returncode == 0, again.stderr
    assert "equal to the record of the run that fitted it" in again.stdout
    # the run's record, as if its inputs (an entry, the data) had changed since: replaced, not compared
    (path,) = (root / "records" / "alignment").rglob("*on-shapes-ood.json")
    kept = path.read_text()
    path.write_text(json.dumps({**json.loads(kept), "identity": "0" * 20}))
    replaced = run_cli("eval", "--model", str(folder), "--eval", "shapes-ood", "--results", str(root), env=env)
    assert "replacing a record whose inputs differ" in replaced.stdout, replaced.stdout
    assert json.loads(path.read_text())["identity"] == json.loads(kept)["identity"]  # the run's own identity again
    new = run_cli("eval", "--model", str(folder), "--eval", "digits", "--results", str(root), env=env)
    assert new.returncode == 0, new.stderr
    (path,) = (root / "records" / "alignment").rglob("*on-digits.json")
    digits = json.loads(path.read_text())
    assert digits["protocol"] == "zero-shot transfer" and digits["benchmark"]["name"] == "digits"
    assert digits["corpus"] == record["corpus"] and "training" not in digits
    # named as the run named it, relative to the results folder, however --model was typed
    assert digits["saved_model"] == record["saved_model"] and not digits["saved_model"].startswith("/")
    assert 0 <= digits["metrics"]["zeroshot/digit_top1"] <= 1


def test_export_loads_in_a_fresh_process_without_the_results_folder(fitted, run_cli, tmp_path, shared_cache):
    _, _, folder = fitted
    out = tmp_path / "take-home"
    exported = run_cli("export", str(folder), "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    code = ("import probe, numpy; m = probe.AlignedModel.load('take-home', device='cpu'); "
            "e = m.encode_text(['a red circle', 'a blue star']); print(e.shape, round(float((e * e).sum()), 4))")
    fresh = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == "(2, 512) 2.0"  # two unit vectors in the shared 512-d space
    assert_one_line_error(run_cli("export", str(folder), "--out", str(out)), "exists and is not empty")
    # scored from outside the results folder, typed relative to where the command runs: the record holds
    # the absolute path (a path relative to the typing place would lead nowhere later)
    scored = run_cli("eval", "--model", "take-home", "--eval", "digits", "--results", str(tmp_path / "r"), cwd=tmp_path,
                     env={"PROBE_CACHE_DIR": str(shared_cache)})
    assert scored.returncode == 0, scored.stderr
    (path,) = (tmp_path / "r" / "records").rglob("*on-digits.json")
    assert json.loads(path.read_text())["saved_model"] == str(out.resolve())


def test_broken_or_unloadable_models_are_one_line_errors(fitted, run_cli, tmp_path):
    import shutil

    from probe.aligned import AlignedModel

    _, _, folder = fitted
    assert_one_line_error(run_cli("eval", "--model", str(tmp_path), "--eval", "shapes-ood"),
                          "is not a saved aligned model")
    truncated = tmp_path / "truncated"
    shutil.copytree(folder, truncated)
    heads = truncated / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:100])
    assert_one_line_error(run_cli("eval", "--model", str(truncated), "--eval", "shapes-ood"),
                          "does not match the checksum")
    elsewhere = tmp_path / "hub"
    shutil.copytree(folder, elsewhere)
    meta = json.loads((elsewhere / "aligned.json").read_text())
    meta["vision"] |= {"name": "dinov2/vit-s14", "loader": "timm", "weights": "timm/vit_small_patch14_dinov2.lvd142m",
                       "arch": None, "arch_kwargs": {}}
    (elsewhere / "aligned.json").write_text(json.dumps(meta))
    with pytest.raises(ProbeError, match="'dinov2/vit-s14' cannot be loaded here"):
        AlignedModel.load(elsewhere, device="cpu").encode_image([Path("unused.png")])
    assert_one_line_error(run_cli("eval", "--model", str(folder), "--eval", "imagenet"), "unknown benchmark 'imagenet'")


def test_a_saved_tfidf_pair_encodes_new_text_as_its_run_did(run_cli, tmp_path):
    """TF-IDF is fitted on the training captions: its vocabulary, IDF weights and projection are saved
    with the heads (no pickle), so encode_text reproduces the cached features -> heads, also after export."""
    from probe.aligned import AlignedModel
    from probe.data import get_dataset
    from probe.features import ExtractOptions, split_features

    cache, results = tmp_path / "cache", tmp_path / "results"
    ran = run_cli("run", "--vision", "test/tiny-vit", "--text", "baseline/tfidf-svd-256", "--epochs", "1",
                  "--train", "shapes", "--eval", "shapes", "--eval", "shapes-ood",
                  "--results", str(results), "--cache-dir", str(cache))
    assert ran.returncode == 0, ran.stderr
    record_path, ood_path = sorted((results / "records" / "alignment").rglob("*.json"))
    assert ood_path.name.endswith("on-shapes-ood.json")
    folder = results / json.loads(record_path.read_text())["saved_model"]
    # probe eval scores with the saved fit, on its own corpus and on the benchmark it transferred to:
    # every number equals the run's (a TF-IDF refitted on each benchmark's captions would differ), also
    # with an empty feature cache, where the saved state must encode the benchmark's captions itself
    for cache_dir in (cache, tmp_path / "empty-cache"):
        again = run_cli("eval", "--model", str(folder), "--eval", "shapes", "--eval", "shapes-ood",
                        "--results", str(results), "--cache-dir", str(cache_dir))
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("equal to the record of the run that fitted it") == 2, again.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["aligned.json", "heads.safetensors", "tfidf.json",
                                                        "tfidf.safetensors"]
    train, test = get_dataset("shapes").load("train"), get_dataset("shapes").load("test")
    for path in (folder, AlignedModel.load(folder).export(tmp_path / "exported", folder)):
        model = AlignedModel.load(path, device="cpu")
        cached = split_features(model.text_spec, test, ExtractOptions(cache_dir=cache, progress=False),
                                fit_data=train).features[:12]
        np.testing.assert_allclose(model.encode_text(test.captions[:12]), model.embed_text_features(cached),
                                   atol=1e-5)
    (folder / "tfidf.safetensors").write_bytes(b"truncated")
    with pytest.raises(ProbeError, match=r"tfidf\.safetensors is missing or does not match the checksum"):
        AlignedModel.load(folder)


def _hostile(folder: Path, tmp_path: Path, name: str, change) -> Path:
    """A copy of the saved model with its aligned.json changed by ``change`` (the heads untouched)."""
    import shutil

    copy = tmp_path / name
    shutil.copytree(folder, copy)
    meta = json.loads((copy / "aligned.json").read_text())
    changed = change(meta)
    (copy / "aligned.json").write_text(json.dumps(meta if changed is None else changed))
    return copy


def test_a_hostile_aligned_json_is_one_line_and_writes_nothing_outside(fitted, run_cli, tmp_path, monkeypatch):
    """Each malformed shape of aligned.json is refused when loaded (by the API, eval and export alike),
    naming the file and the key; a state file named by a path is refused, so export never writes outside
    its folder."""
    import hashlib

    from probe.aligned import AlignedModel

    _, _, folder = fitted
    payload = tmp_path / "payload.sh"
    payload.write_text("echo owned\n")
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()

    def config(**changes):
        return lambda m: m["config"].update(changes)

    cases = {
        "list": (lambda m: [m], "expected a JSON object"),
        "no-vision": (lambda m: m.pop("vision") and None, "key 'vision': Field required"),
        "unknown-key": (lambda m: m.update(extra=1), "key 'extra'"),
        "config-field": (config(lerning_rate=1), "key 'config'"),
        "config-value": (config(epochs=0), "epochs must be >= 1"),
        "dims-string": (lambda m: m["dims"].update(vision="64"), "key 'dims.vision'"),
        "dims-wrong": (lambda m: m["dims"].update(vision=65), "has shape (64,), expected (65,)"),
        "other-head": (config(head="mlp"), "is missing; the heads file does not belong"),
        "swapped": (lambda m: m.update(vision=m["text"], text=m["vision"]), "a text encoder"),
        "traversal": (lambda m: m.update(text_state={"../payload.sh": digest}), "names '../payload.sh'"),
        "bad-digest": (lambda m: m.update(heads_sha256="x"), "expected a sha256"),
        "half-tuned": (lambda m: m.update(encoders_sha256=digest), "come together"),
    }
    for name, (change, fragment) in cases.items():
        copy = _hostile(folder, tmp_path / "models", name, change)
        with pytest.raises(ProbeError) as caught:
            AlignedModel.load(copy)
        assert fragment in str(caught.value) and str(copy) in str(caught.value), (name, caught.value)
        assert "\n" not in str(caught.value)
    traversal = tmp_path / "models" / "traversal"
    out = tmp_path / "out" / "model"
    assert_one_line_error(run_cli("export", str(traversal), "--out", str(out)), "names '../payload.sh'")
    assert_one_line_error(run_cli("eval", "--model", str(traversal), "--eval", "shapes"), "names '../payload.sh'")
    assert not out.exists() and not (tmp_path / "out" / "payload.sh").exists()
    # a folder typed with ~, as the export help writes it, is the user's home folder
    import shutil

    shutil.copytree(folder, tmp_path / "exp")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert AlignedModel.load("~/exp").config.epochs == 3


def test_an_export_that_fails_leaves_nothing_and_a_retry_succeeds(fitted, tmp_path, monkeypatch):
    import errno
    import shutil

    from probe.aligned import AlignedModel

    _, _, folder = fitted
    model = AlignedModel.load(folder)
    real, calls = shutil.copy2, []

    def full_disk(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", full_disk)
    out = tmp_path / "take-home"
    with pytest.raises(ProbeError, match=r"cannot write .*take-home/aligned\.json: No space left on device"):
        model.export(out, folder)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half folder, no staging folder left
    monkeypatch.setattr(shutil, "copy2", real)
    assert AlignedModel.load(model.export(out, folder)).config == model.config


def test_the_api_refuses_what_cannot_be_encoded_in_one_line(fitted, tmp_path):
    from probe.aligned import AlignedModel

    _, _, folder = fitted
    model = AlignedModel.load(folder, device="cpu")
    assert model.encode_text([]).shape == (0, 512) and model.encode_image([]).shape == (0, 512)
    with pytest.raises(ProbeError, match="a list of texts, not one string"):
        model.encode_text("a red circle")
    with pytest.raises(ProbeError, match="text 1 is 3, not a string"):
        model.encode_text(["a red circle", 3])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    with pytest.raises(ProbeError, match=r"image 0 \(.*corrupt\.png\) cannot be read"):
        model.encode_image([corrupt])
    for classes, templates, fragment in (([], ["a {c}."], "no class names"), (["cat"], [], "no prompt templates"),
                                         (["cat", "dog"], ["a photo."], "no {} or {c}")):
        with pytest.raises(ProbeError, match=re.escape(fragment)):
            model.zero_shot_classifier(classes, templates)
