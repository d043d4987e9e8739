"""Hostile input: stale files reused, data dropped without a word, poisoned files, unwritable output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error
from PIL import Image

from probe.errors import ProbeError


def test_a_file_rewritten_with_its_old_size_and_mtime_gets_a_new_fingerprint(tmp_path):
    from probe.data.base import FileImage

    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)
    before_stat = path.stat()
    before = FileImage(str(path)).fingerprint()
    Image.new("RGB", (8, 8), (30, 20, 10)).save(path)
    assert path.stat().st_size == before_stat.st_size
    os.utime(path, ns=(before_stat.st_atime_ns, before_stat.st_mtime_ns))  # mtime set back by hand
    assert path.stat().st_mtime_ns == before_stat.st_mtime_ns
    assert FileImage(str(path)).fingerprint() != before  # ctime moved: the features are recomputed


def test_a_rewritten_tar_shard_gets_new_fingerprints(tmp_path):
    import io
    import tarfile

    from probe.data.local import WebDataset

    def shard(colour) -> None:
        with tarfile.open(tmp_path / "0.tar", "w") as tar:
            for name, data in (("a.png", _png_bytes(colour)), ("a.txt", b"a red square")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    shard((200, 0, 0))
    first = WebDataset(str(tmp_path)).load("train")
    shard((0, 0, 200))
    second = WebDataset(str(tmp_path)).load("train")
    assert first.image_fingerprint() != second.image_fingerprint()
    assert second.images[0].load().getpixel((1, 1)) == (0, 0, 200)


def _png_bytes(colour) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_jsonl_label_zero_is_a_label(tmp_path):
    from probe.data import get_dataset

    for name in ("a", "b", "c"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    rows = [{"image": "a.png", "caption": "x", "label": 0}, {"image": "b.png", "caption": "y", "label": 1},
            {"image": "c.png", "caption": "z", "label": 2}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = get_dataset(f"jsonl:{tmp_path / 'd.jsonl'}").load("train")
    assert data.classes["label"] == ["0", "1", "2"] and data.labels["label"].tolist() == [0, 1, 2]


def test_sixteen_bit_and_transparent_images_decode_as_they_look(tmp_path):
    from probe.data.base import FileImage

    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert FileImage(str(tmp_path / "deep.png")).load().getpixel((0, 0)) == (128, 128, 128)  # not clipped to white
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert FileImage(str(tmp_path / "clear.png")).load().getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("image_size = 32", "image_size = 0", "image_size must be positive, got 0"),
    ("std = [0.5, 0.5, 0.5]", "std = [0.5, 0.0, 0.5]", "std values must be positive"),
    ("pooling = \"cls\"", "pooling = \"cls\"\ncrop_pct = 1.5", "crop_pct must be in (0, 1], got 1.5"),
    ("pooling = \"cls\"", "pooling = \"cls\"\nimagenet_knn = 790.0", "imagenet_knn is a percentage"),
])
def test_registry_values_that_cannot_work_are_refused(tmp_path, field, value, message):
    from probe.registry import parse_registry_file

    body = ('modality = "vision"\n[[model]]\nname = "a/b"\nloader = "baseline"\nweights = "random-init"\n'
            'arch = "vit_tiny_patch16_224"\npooling = "cls"\nimage_size = 32\nmean = [0.5, 0.5, 0.5]\n'
            'std = [0.5, 0.5, 0.5]\nembed_dim = 8\nparams_m = 1.0\nobjective = "none"\nlicense = "x"\n'
            'reference = "x"\n')
    path = tmp_path / "bad.toml"
    path.write_text(body.replace(field, value, 1))
    with pytest.raises(ProbeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_registry_file(path)


def test_a_decompression_bomb_is_skipped_not_fatal(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from probe.data import get_dataset
    from probe.features import ExtractOptions, split_features
    from probe.registry import Registry

    root = tmp_path / "imgs" / "cls"
    root.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (40 if i != 1 else 250, 40), (i * 80, 0, 0)).save(root / f"{i}.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 4000)  # 250 x 40 = 10,000 > 2 x 4,000: a "bomb" here
    data = get_dataset(f"imagefolder:{tmp_path / 'imgs'}").load("all")
    result = split_features(Registry.load().get("test/tiny-vit"), data,
                            ExtractOptions(cache_dir=tmp_path / "cache", workers=0, progress=False))
    assert result.features.shape == (2, 64)
    assert [s["index"] for s in result.meta["skipped"]] == [1]


def test_a_meta_json_of_the_wrong_shape_is_recomputed(tmp_path):
    from probe.data import get_dataset
    from probe.features import ExtractionStats, ExtractOptions, split_features
    from probe.registry import Registry

    spec = Registry.load().get("test/tiny-bert")
    data = get_dataset("shapes").load("val")
    options = ExtractOptions(cache_dir=tmp_path, progress=False, workers=0)
    first = split_features(spec, data, options)
    for wrong in ("[]", '{"files": 3}', '{"files": {"features.npy": []}}'):
        (first.path / "meta.json").write_text(wrong)
        stats = ExtractionStats()
        again = split_features(spec, data, options, stats=stats)
        assert not stats.from_cache and np.array_equal(first.features, again.features)


def _record_files(results: Path) -> list[Path]:
    return sorted((results / "records").rglob("*.json"))


def test_one_bad_record_file_does_not_block_the_report_or_a_resumed_run(run_cli, tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    run = ("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "2",
           "--results", str(results))
    assert run_cli(*run).returncode == 0
    good = _record_files(results)[0]
    (good.parent / "zz-binary.json").write_bytes(b"\xff\xfe\x00garbage")
    no_metrics = json.loads(good.read_text())
    no_metrics.pop("metrics", None)
    (good.parent / "zz-no-metrics.json").write_text(json.dumps(no_metrics))
    report = run_cli("report", "--results", str(results), "--out", str(reports))
    assert report.returncode == 0, report.stderr
    assert "zz-binary.json" in report.stderr and "2 record file(s)" in report.stderr
    assert (reports / "leaderboard.html").is_file()
    again = run_cli(*run, "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert "1 already there" in again.stderr


def test_an_unwritable_results_folder_is_refused_before_any_work(run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--results",
                     str(blocker / "results"))
    assert_one_line_error(result, "cannot write to", "--results")
    assert not list(tmp_path.rglob("*.safetensors"))
    out = run_cli("report", "--results", str(tmp_path / "none"), "--out", str(blocker / "reports"))
    assert_one_line_error(out, "cannot write to", "--out")
