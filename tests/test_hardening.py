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
    assert "moved aside to" in report.stderr
    assert (reports / "leaderboard.html").is_file()
    # quarantined, not deleted: out of the records tree, so the next read does not trip on them again
    assert sorted(p.name for p in (results / "quarantine").rglob("*.json")) == ["zz-binary.json", "zz-no-metrics.json"]
    assert not list((results / "records").rglob("zz-*.json"))
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


# --- readers validate what they parse and name the file, row and field --------------------------------

def _pngs(folder: Path, n: int) -> None:
    for i in range(n):
        Image.new("RGB", (16, 16), (30 * i, 90, 200 - 20 * i)).save(folder / f"im{i}.png")


@pytest.mark.parametrize("line, fragment", [
    ("[1, 2]", ":3: expected an object"),
    ('{"image": "im0.png", "caption": 5}', ":3: field 'caption' must be text, got int"),
    ('{"image": ["im0.png"], "caption": "x"}', ":3: field 'image' must be text, got list"),
    ('{"image": "im0.png", "caption": NaN}', ":3: field 'caption' must be text, got float"),
    ('{"image": "im0.png", "caption": "x", "label": 1.5}', ":3: field 'label' must be text or a whole number"),
])
def test_jsonl_rows_of_the_wrong_type_are_named(tmp_path, line, fragment):
    from probe.data import get_dataset

    good = [json.dumps({"image": f"im{i}.png", "caption": f"picture {i}"}) for i in range(2)]
    (tmp_path / "d.jsonl").write_text("\n".join([*good, line]) + "\n")
    with pytest.raises(ProbeError, match=r"d\.jsonl" + fragment.replace("[", r"\[").replace(".", r"\.")):
        get_dataset(f"jsonl:{tmp_path / 'd.jsonl'}")


@pytest.mark.parametrize("content, fragment", [
    (json.dumps({"images": 3}), "needs an object with an 'images' list"),
    (json.dumps([]), "needs an object with an 'images' list"),
    (json.dumps({"images": [{"split": "test", "sentences": [{"raw": "x"}]}]}), "images[0]: no 'filename'"),
    (json.dumps({"images": [{"filename": "a.png", "sentences": "x"}]}), "images[0]: 'sentences' must be a list"),
    (json.dumps({"images": [{"filename": "a.png", "sentences": [{"raw": 7}]}]}),
     "images[0].sentences[0]: field 'raw' must be text"),
    (b"\xff\xfe{}", "not UTF-8 text"),
])
def test_karpathy_json_of_the_wrong_shape_or_encoding_is_named(tmp_path, content, fragment):
    from probe.data import get_dataset

    path = tmp_path / "dataset_coco.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ProbeError, match=str(path).replace(".", r"\.") + r".*" + fragment.replace("[", r"\[")
                       .replace("]", r"\]").replace(".", r"\.")):
        get_dataset(f"karpathy:{path}")


def test_a_csv_with_a_byte_order_mark_reads_and_kind_mismatches_are_named(tmp_path):
    from probe.data import get_dataset

    _pngs(tmp_path, 2)
    (tmp_path / "d.csv").write_text("\ufeffimage,caption\nim0.png,a red square\nim1.png,a blue one\n")
    data = get_dataset(f"csv:{tmp_path / 'd.csv'}").load("train")
    assert data.captions == ["a red square", "a blue one"]
    (tmp_path / "e.csv").write_text("file,caption\nim0.png,x\n")
    with pytest.raises(ProbeError, match=r"no 'image' column; its columns are file, caption"):
        get_dataset(f"csv:{tmp_path / 'e.csv'}")
    with pytest.raises(ProbeError, match=r"is a folder; csv: takes a file"):
        get_dataset(f"csv:{tmp_path}")
    with pytest.raises(ProbeError, match=r"is a file; imagefolder: takes a folder"):
        get_dataset(f"imagefolder:{tmp_path / 'im0.png'}")


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_webdataset_samples_that_cannot_be_read_are_dropped_and_counted(tmp_path):
    from probe.data import get_dataset

    _pngs(tmp_path, 1)
    png = (tmp_path / "im0.png").read_bytes()
    shards = tmp_path / "shards"
    shards.mkdir()
    _tar(shards / "a.tar", [("ok.png", png), ("ok.txt", b"a square"), ("latin.png", png), ("latin.txt", b"caf\xe9"),
                            ("list.png", png), ("list.json", b"[1]"), ("broken.png", png), ("broken.json", b"{"),
                            ("bare.png", png)])
    data = get_dataset(f"wds:{shards}").load("train")
    assert data.captions == ["a square"]
    assert data.dropped == {"samples whose .txt caption is not UTF-8 text": 1,
                            "samples whose .json caption is not UTF-8 text in a JSON object": 2,
                            "samples without a caption": 1}
    (shards / "a.tar").unlink()
    _tar(shards / "b.tar", [("bad.png", png), ("bad.txt", b"\xff\xfe")])
    with pytest.raises(ProbeError, match=r"no usable sample: 1 samples whose \.txt caption is not UTF-8"):
        get_dataset(f"wds:{shards}").load("train")


def test_a_truncated_shard_keeps_its_readable_samples_and_says_it_was_cut(tmp_path):
    from probe.data import get_dataset

    _pngs(tmp_path, 1)
    png = (tmp_path / "im0.png").read_bytes()
    members = [(f"s{i}.{ext}", png if ext == "png" else f"caption {i}".encode()) for i in range(8)
               for ext in ("png", "txt")]
    whole = _tar(tmp_path / "whole.tar", members)
    assert get_dataset(f"wds:{whole}").load("train").dropped == {}  # an intact shard is not flagged
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    data = get_dataset(f"wds:{cut}").load("train")
    assert 0 < len(data.captions) < 8
    assert data.dropped == {"truncated shards (samples after the cut are lost)": 1}


# --- registry files, trust, options -------------------------------------------------------------------

TEXT_ENTRY = ('[[model]]\nname = "user/{name}"\nmodality = "text"\nloader = "sentence-transformers"\n'
              'weights = "someone/model"\nembed_dim = 8\nparams_m = 1\nobjective = "contrastive"\nlicense = "x"\n'
              'reference = "x"\n')


@pytest.mark.parametrize("content, fragment", [
    (b"\xff\xfe[[model]]", "not UTF-8 text"),
    (b"defaults = 3\n", "'defaults' must be tables"),
    (b"model = [1, 2]\n", "'model' must be an array of tables"),
])
def test_registry_files_of_the_wrong_encoding_or_shape_are_named(tmp_path, content, fragment):
    from probe.registry import Registry

    (tmp_path / "mine.toml").write_bytes(content)
    with pytest.raises(ProbeError, match=fragment):
        Registry.load([tmp_path / "mine.toml"])
    (tmp_path / "mine.toml").unlink()
    with pytest.raises(ProbeError, match="holds no .toml files"):
        Registry.load([tmp_path])


def test_user_entries_that_run_code_need_an_explicit_flag(tmp_path, monkeypatch, run_cli):
    from probe.encoders.loadable import check
    from probe.registry import Registry
    from probe.settings import ENV_TRUST_CODE

    (tmp_path / "mine.toml").write_text(TEXT_ENTRY.format(name="remote") + "trust_remote_code = true\n"
                                        + TEXT_ENTRY.format(name="plain") + TEXT_ENTRY.format(name="pkg")
                                        .replace('"sentence-transformers"', '"packaged"').replace("someone/model", "os"))
    registry = Registry.load([tmp_path / "mine.toml"])
    remote, plain, pkg = (registry.get(f"user/{n}") for n in ("remote", "plain", "pkg"))
    monkeypatch.delenv(ENV_TRUST_CODE, raising=False)
    for spec, why in ((remote, "trust_remote_code = true"), (pkg, "imports the Python package 'os'")):
        status = check(spec)
        assert not status.ok and why in status.reason and "--trust-remote-code" in status.reason
    assert plain.runs_code is None and "--trust-remote-code" not in check(plain).reason
    builtin = Registry.load().get("efficientnet/lite0-in1k")  # probe's own packaged entry needs no flag
    assert builtin.runs_code and not builtin.from_user_file
    monkeypatch.setenv(ENV_TRUST_CODE, "1")
    assert "--trust-remote-code" not in check(remote).reason  # now only the weights are missing
    listing = run_cli("--registry", str(tmp_path / "mine.toml"), "models", "user/*", env={ENV_TRUST_CODE: ""})
    assert "user/remote*" in listing.stdout and "user/pkg*" in listing.stdout and "user/plain*" not in listing.stdout
    assert "--trust-remote-code" in listing.stdout


def test_options_that_would_mislead_are_refused(run_cli, tmp_path, monkeypatch):
    from probe.align.config import read_preset as read_recipe
    from probe.encoders.base import pick_device
    from probe.registry import Registry
    from probe.settings import ENV_CACHE, ENV_RESULTS, default_cache_dir, default_results_dir

    with pytest.raises(ProbeError, match="'efficientnet/lite0-in1k' names vision model"):
        Registry.load().list(["efficientnet/lite0-in1k"], modality="text", strict=True)
    for device in ("meta", "mps"):
        with pytest.raises(ProbeError, match=f"device '{device}'"):
            pick_device(device)
    (tmp_path / "c.toml").write_text('[values]\nlr = "fast"\n')
    with pytest.raises(ProbeError, match="lr = 'fast' must be a number"):
        read_recipe(str(tmp_path / "c.toml"))
    (tmp_path / "d.toml").write_text("[values]\nepochs = 2.5\n")
    with pytest.raises(ProbeError, match="epochs = 2.5 must be a whole number"):
        read_recipe(str(tmp_path / "d.toml"))
    monkeypatch.setenv(ENV_CACHE, "")
    monkeypatch.setenv(ENV_RESULTS, " ")
    assert default_cache_dir() == Path("results") / "features" and default_results_dir() == Path("results")
    assert_one_line_error(run_cli("run", "--seed", "-1"), "--seed")
    assert_one_line_error(run_cli("select", "--head", "linaer"), "unknown head 'linaer'")
    assert_one_line_error(run_cli("select", "--max-pairs", "3"), "--max-pairs 3 is too few for --k 10")


def test_a_runs_records_count_unreadable_images_and_flag_metrics_that_cannot_miss(run_cli, tmp_path):
    _pngs(tmp_path, 20)
    rows = ["image,caption,split"] + [f"im{i}.png,picture number {i},{'train' if i < 12 else 'val' if i < 15 else 'test'}"
                                      for i in range(20)]
    rows += ["gone.png,a picture that is not there,test", "also-gone.png,another missing one,train"]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    result = run_cli("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "1",
                     "--dataset", f"csv:{tmp_path / 'd.csv'}", "--results", str(tmp_path / "results"),
                     "--task", "retrieval")
    assert result.returncode == 0, result.stderr
    assert "1 of 13 images could not be read" in result.stderr and "1 of 6 images could not be read" in result.stderr
    (record,) = [json.loads(p.read_text()) for p in _record_files(tmp_path / "results")]
    assert record["dropped"] == {"fit": {"unreadable images (skipped at extraction)": 1},
                                 "eval": {"unreadable images (skipped at extraction)": 1}}
    # six test images and six caption texts: every R@10 (and so the probing score) cannot miss; R@5 can
    assert set(record["saturated"]) == {"retrieval/t2i_R@10", "retrieval/i2t_R@10", "alignment/probing_score"}
    assert "only 6 test images" in record["saturated"]["retrieval/t2i_R@10"]
    assert "cannot miss on this benchmark" in result.stderr
    report = run_cli("report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "reports" / "leaderboard.html").read_text()
    assert 'class="badge trivial" title="only 6 test images' in page  # probing score and t2i R@10 cells


def test_karpathy_images_without_captions_are_counted(tmp_path):
    from probe.data import get_dataset

    _pngs(tmp_path, 3)
    images = [{"filename": f"im{i}.png", "split": "test", "sentences": [{"raw": f"picture {i}"}] if i else []}
              for i in range(3)]
    (tmp_path / "k.json").write_text(json.dumps({"images": images}))
    data = get_dataset(f"karpathy:{tmp_path / 'k.json'}").load("test")
    assert data.n_images == 2 and data.dropped == {"images without a caption": 1}


def test_shards_are_streamed_whole_one_cache_chunk_each_and_equal_offset_reads(tmp_path):
    import numpy as np

    from probe.registry import Registry

    registry = Registry.load()

    from probe.data import get_dataset
    from probe.data.images import open_rgb
    from probe.features import ExtractionStats, ExtractOptions, split_features
    from probe.features.shards import shard_ranges

    _pngs(tmp_path, 6)
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in range(3):  # three shards of four samples, one of them a JPEG among PNGs
        members = []
        for i in range(4):
            image = (tmp_path / f"im{(s + i) % 6}.png").read_bytes()
            if s == 1 and i == 2:
                import io
                out = io.BytesIO()
                open_rgb(tmp_path / "im0.png", "im0").save(out, format="JPEG")
                members.append((f"k{s}{i}.jpg", out.getvalue()))
            else:
                members.append((f"k{s}{i}.png", image))
            members.append((f"k{s}{i}.txt", f"sample {i} of shard {s}".encode()))
        _tar(shards / f"{s}.tar", members)
    data = get_dataset(f"wds:{shards}").load("train")
    assert [len(r) for r in shard_ranges(data.images)] == [4, 4, 4]
    spec = registry.get("test/tiny-vit")
    stats = ExtractionStats()
    streamed = split_features(spec, data, ExtractOptions(cache_dir=tmp_path / "c", workers=2, progress=False),
                              stats=stats)
    assert stats.computed_chunks == 3  # one chunk per shard: a killed extraction resumes at shard grain
    # the same images read one by one at their offsets, through the encoder directly
    from probe.encoders import load_encoder

    encoder = load_encoder(spec, device="cpu")
    import torch

    with torch.inference_mode():
        direct = encoder.encode(torch.stack([encoder.transform()(ref.load()) for ref in data.images]))
    np.testing.assert_allclose(streamed.dense(data.n_images), direct, rtol=1e-5, atol=1e-6)
    # a shard cut short: the samples it never delivers are skipped and listed, the others kept
    whole = (shards / "2.tar").read_bytes()
    cut = tmp_path / "cut"
    cut.mkdir()
    for s in (0, 1):
        (cut / f"{s}.tar").write_bytes((shards / f"{s}.tar").read_bytes())
    (cut / "2.tar").write_bytes(whole)
    listed = get_dataset(f"wds:{cut}").load("train")
    (cut / "2.tar").write_bytes(whole[: len(whole) // 2])  # cut after the listing was made
    result = split_features(spec, listed, ExtractOptions(cache_dir=tmp_path / "c2", workers=0, progress=False))
    skipped = result.meta["skipped"]
    assert 0 < len(skipped) < 4 and all("2.tar" in s["input"] for s in skipped)
    assert len(result.index) == 12 - len(skipped)


def test_a_small_slice_of_shards_is_read_by_offset_not_streamed():
    from probe.data.local import TarImage
    from probe.features.shards import shard_ranges

    whole = [TarImage("a.tar", f"{i}.jpg", 512 + 2048 * i, 1500) for i in range(50)]
    assert shard_ranges(whole) == [range(0, 50)]  # images fill most of the bytes they span: stream
    assert shard_ranges(whole[::25]) is None  # two images 50 kB apart: read by offset
    assert shard_ranges(whole + [TarImage("b.tar", "x.jpg", 512, 10)] + whole[:1]) is None  # not contiguous
