"""Dataset recipes, built from tiny sources written in each upstream layout (and slices of the real
packages where they are installed)."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error
from PIL import Image

from probe.errors import ProbeError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _png(path: Path, colour, size=(24, 24), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


def tuxpaint_source(root: Path) -> Path:
    """Tux Paint's layout: <category>/.../<stamp>.png with <stamp>.txt whose first line is the caption."""
    stamps = root / "stamps"
    _png(stamps / "animals/cats/cat-1.png", (200, 30, 30))
    (stamps / "animals/cats/cat-1.txt").write_text("A cat.\nfr.utf8=Un chat.\n")
    _png(stamps / "animals/cats/cat-2.png", (190, 40, 30))
    (stamps / "animals/cats/cat-2.txt").write_text("A cat.\n")
    _png(stamps / "food/pear.png", (30, 200, 30, 0), mode="RGBA")  # fully transparent: white after compositing
    (stamps / "food/pear.txt").write_text("A pear.\n")
    _png(stamps / "food/apple.png", (30, 30, 200))  # no caption file
    _png(stamps / "symbols/math/3.png", (0, 0, 0))
    (stamps / "symbols/math/3.txt").write_text("Three.\n")
    (stamps / "town").mkdir(parents=True)
    (stamps / "town/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (stamps / "town/broken.txt").write_text("A broken house.\n")
    _png(stamps / "town/copy.png", (200, 30, 30))  # the same pixels as cat-1
    (stamps / "town/copy.txt").write_text("A red square.\n")
    deep = np.full((20, 20), 40000, dtype=np.uint16)  # 16-bit grey: must scale, not clip to white
    Image.fromarray(deep).save(stamps / "town/grey16.png")
    (stamps / "town/grey16.txt").write_text("A grey wall.\n")
    _png(stamps / "plants/big.png", (10, 90, 10), size=(1600, 400))  # downscaled to 512 on its long side
    (stamps / "plants/big.txt").write_text("A long hedge.\n")
    for i in range(12):
        _png(stamps / f"plants/tree-{i}.png", (10 * i, 120, 40))
        (stamps / f"plants/tree-{i}.txt").write_text(f"Tree number {i}.\n")
    return stamps


def test_tuxpaint_recipe_counts_drops_and_writes_karpathy_layout(home, tmp_path):
    from probe.data import get_dataset
    from probe.data.local import KarpathyDataset
    from probe.recipes import get

    report = get("tuxpaint", source=tuxpaint_source(tmp_path), progress=False)
    assert report.built
    assert report.dropped == {"symbol": 1, "no caption": 1, "unreadable image": 1, "duplicate image": 1}
    assert sum(report.counts.values()) == 2 + 1 + 1 + 1 + 12  # cats, pear, grey16, hedge, trees
    folder = home / "datasets" / "tuxpaint"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {d["reason"] for d in manifest["dropped_items"]} == set(report.dropped)
    assert manifest["source_files"]["animals/cats/cat-1.txt"]["sha256"]
    images = json.loads((folder / "captions.json").read_text())["images"]
    by_source = {im["source"]: im for im in images}
    assert by_source["animals/cats/cat-1.png"]["sentences"] == [{"raw": "A cat."}]  # the first line only
    assert by_source["animals/cats/cat-1.png"]["split"] == by_source["animals/cats/cat-2.png"]["split"]
    pear = Image.open(folder / by_source["food/pear.png"]["filepath"] / by_source["food/pear.png"]["filename"])
    assert pear.getpixel((5, 5)) == (255, 255, 255)
    grey = Image.open(folder / by_source["town/grey16.png"]["filepath"] / by_source["town/grey16.png"]["filename"])
    assert grey.getpixel((5, 5)) == (156, 156, 156)  # 40000 / 65535 * 255
    hedge = by_source["plants/big.png"]
    assert Image.open(folder / hedge["filepath"] / hedge["filename"]).size == (512, 128)
    # the Karpathy reader takes the output as it is, and the recipe name reads it too
    total = sum(KarpathyDataset(str(folder / "captions.json")).load(s).n_images for s in report.counts)
    assert total == sum(report.counts.values())
    data = get_dataset("tuxpaint")
    assert data.info.splits == tuple(s for s in ("train", "val", "test") if s in report.counts)
    assert "recipe tuxpaint" in data.info.protocol and "4 source items dropped" in data.info.protocol


def test_splits_are_the_same_on_every_build(tmp_path, monkeypatch):
    from probe.recipes import get

    source = tuxpaint_source(tmp_path / "src")
    splits = []
    for run in ("a", "b"):
        monkeypatch.setenv("PROBE_HOME", str(tmp_path / run))
        get("tuxpaint", source=source, progress=False)
        images = json.loads((tmp_path / run / "datasets/tuxpaint/captions.json").read_text())["images"]
        splits.append(sorted((im["source"], im["split"], im["filename"]) for im in images))
    assert splits[0] == splits[1] and len({s for _, s, _ in splits[0]}) >= 2


def test_a_changed_build_is_rebuilt_never_used_silently(home, tmp_path, caplog):
    from probe.data import get_dataset
    from probe.recipes import get

    source = tuxpaint_source(tmp_path)
    get("tuxpaint", source=source, progress=False)
    assert not get("tuxpaint", source=source, progress=False).built  # matching files: nothing to do
    captions = home / "datasets/tuxpaint/captions.json"
    captions.write_text(captions.read_text().replace("A cat.", "A dog."))
    with caplog.at_level(logging.WARNING, logger="probe.recipes"):
        report = get("tuxpaint", source=source, progress=False)
    assert report.built and "no longer match its manifest" in caplog.text
    assert "A dog." not in captions.read_text()
    image = next((home / "datasets/tuxpaint/images").rglob("*.png"))
    image.unlink()
    # reading never builds: the changed build is refused, naming the command that rebuilds it
    with pytest.raises(ProbeError, match=r"dataset 'tuxpaint': 1 file\(s\) in .* no longer match its manifest "
                                         r"\(first: images/.*\); run `probe data get tuxpaint` to rebuild it"):
        get_dataset("tuxpaint")
    assert not image.is_file()
    assert get("tuxpaint", source=source, progress=False).built
    data = get_dataset("tuxpaint")
    assert image.is_file() and data.info.name == "tuxpaint"


def test_an_image_rewritten_in_place_with_its_size_and_mtime_set_back_is_caught(home, tmp_path, caplog):
    import os

    from probe.recipes import get

    source = tuxpaint_source(tmp_path)
    get("tuxpaint", source=source, progress=False)
    image = sorted((home / "datasets/tuxpaint/images").rglob("*.png"))[0]
    before, stat = image.read_bytes(), image.stat()
    flipped = bytearray(before)
    flipped[-20] ^= 0xFF  # same size, other bytes
    image.write_bytes(bytes(flipped))
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as the manifest says
    with caplog.at_level(logging.WARNING, logger="probe.recipes"):
        report = get("tuxpaint", source=source, progress=False)
    assert report.built and "no longer match its manifest" in caplog.text
    assert image.read_bytes() == before
    # a file only touched (same bytes) is checked by content once, then trusted on its new times
    os.utime(image)
    assert not get("tuxpaint", source=source, progress=False).built
    manifest = json.loads((home / "datasets/tuxpaint/manifest.json").read_text())
    described = manifest["files"][image.relative_to(home / "datasets/tuxpaint").as_posix()]
    assert described["mtime_ns"] == image.stat().st_mtime_ns and described["ctime_ns"] == image.stat().st_ctime_ns


def _stop_decoding_at(monkeypatch, build_module, n: int) -> dict[str, int]:
    """Make the build's decoder raise KeyboardInterrupt (a kill) at its ``n``-th call; the call count,
    which a test may move on to let later calls through."""
    real, calls = build_module.decode, {"n": 0}

    def stopping(item, max_side=None):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(item, max_side)

    monkeypatch.setattr(build_module, "decode", stopping)
    return calls


def test_a_resumed_build_decodes_again_a_source_changed_since_it_stopped(home, tmp_path, monkeypatch):
    from probe.recipes import build as build_module
    from probe.recipes import get

    source = tuxpaint_source(tmp_path)
    real = build_module.decode
    _stop_decoding_at(monkeypatch, build_module, 15)
    with pytest.raises(KeyboardInterrupt):
        get("tuxpaint", source=source, progress=False)
    monkeypatch.setattr(build_module, "decode", real)
    _png(source / "animals/cats/cat-1.png", (10, 200, 250))  # the stamp redrawn before the rerun
    get("tuxpaint", source=source, progress=False)
    manifest = json.loads((home / "datasets/tuxpaint/manifest.json").read_text())
    captions = json.loads((home / "datasets/tuxpaint/captions.json").read_text())
    (cat,) = [im for im in captions["images"] if im["source"] == "animals/cats/cat-1.png"]
    built = home / "datasets/tuxpaint" / cat["filepath"] / cat["filename"]
    assert Image.open(built).convert("RGB").getpixel((0, 0)) == (10, 200, 250)  # the new drawing, not the old
    assert manifest["source_files"]["animals/cats/cat-1.png"]["sha256"] == hashlib.sha256(
        (source / "animals/cats/cat-1.png").read_bytes()).hexdigest()


def test_a_stopped_build_resumes_from_what_it_wrote(home, tmp_path, monkeypatch):
    from probe.recipes import build as build_module
    from probe.recipes import get

    source = tuxpaint_source(tmp_path)
    calls = _stop_decoding_at(monkeypatch, build_module, 6)
    with pytest.raises(KeyboardInterrupt):
        get("tuxpaint", source=source, progress=False)
    assert (home / "datasets/tuxpaint.partial/journal.jsonl").is_file()
    first = calls["n"]
    calls["n"] = 100
    report = get("tuxpaint", source=source, progress=False)
    assert report.built and not (home / "datasets/tuxpaint.partial").exists()
    # the images written before the stop were not decoded again; only the rest and the unreadable one were
    decoded_again = calls["n"] - 100
    assert decoded_again <= 21 - (first - 1) + 1


def test_two_builds_of_one_recipe_wait_for_each_other(home, tmp_path):
    from filelock import FileLock

    from probe.recipes import get

    source = tuxpaint_source(tmp_path)
    (home / "datasets").mkdir(parents=True)
    results = []
    with FileLock(str(home / "datasets" / ".tuxpaint.lock")):
        worker = threading.Thread(target=lambda: results.append(get("tuxpaint", source=source, progress=False)))
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive() and not results  # waiting for the lock
    worker.join(timeout=60)
    assert results and results[0].built


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_recipe_keeps_the_published_split_and_the_pixels(home, tmp_path):
    from probe.data import get_dataset
    from probe.evaluation.benchmarks import get_benchmark
    from probe.recipes import get

    rng = np.random.default_rng(0)
    root = tmp_path / "fashion-mnist"
    root.mkdir()
    images = {"train": rng.integers(0, 256, (30, 28, 28)), "t10k": rng.integers(0, 256, (12, 28, 28))}
    labels = {"train": np.arange(30) % 10, "t10k": (np.arange(12) * 3) % 10}
    for prefix in ("train", "t10k"):
        _idx(root / f"{prefix}-images-idx3-ubyte.gz", images[prefix])
        _idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels[prefix])
    report = get("fashion-mnist", source=root, progress=False)
    assert report.counts == {"train": 30, "test": 12}
    test = get_dataset("fashion-mnist").load("test")
    assert test.classes["class"][0] == "t-shirt or top" and len(test.templates["class"]) == 5
    by_pixels = {images["t10k"][i].astype(np.uint8).tobytes(): labels["t10k"][i] for i in range(12)}
    for ref, label in zip(test.images, test.labels["class"], strict=True):
        pixels = np.asarray(ref.load())[:, :, 0]
        assert by_pixels[pixels.tobytes()] == label  # every image kept its own label, bit for bit
    assert get_benchmark("fashion-mnist").load("test").n_images == 12
    _idx(root / "t10k-labels-idx1-ubyte.gz", labels["t10k"][:5])
    with pytest.raises(ProbeError, match="has 12 images but 5 labels"):
        get("fashion-mnist", source=root, force=True, progress=False)
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 12, 28, 28)
                                                                    + b"\x00" * 100))
    with pytest.raises(ProbeError, match="truncated"):
        get("fashion-mnist", source=root, force=True, progress=False)


def test_openclipart_titles_and_collection_names(home, tmp_path):
    from probe.recipes import get

    png_root, svg_root = tmp_path / "openclipart/png", tmp_path / "openclipart/svg"

    def clip(name: str, title: str, description: str = "") -> None:
        _png(png_root / f"{name}.png", (len(name) * 20 % 256, 90, 90))
        (svg_root / f"{name}.svg").parent.mkdir(parents=True, exist_ok=True)
        (svg_root / f"{name}.svg").write_text(
            f'<svg><metadata><rdf:RDF><cc:Work><dc:title>{title}</dc:title><dc:description>{description}'
            '</dc:description><dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title></cc:Agent>'
            '</dc:publisher></cc:Work></rdf:RDF></metadata></svg>')

    clip("animals/owl", "Owl on  Branch", "Owl on Branch")
    clip("food/bread", "Bread &amp; butter", "A slice of bread with butter.")
    clip("misc/untitled", "")
    for i in range(5):
        clip(f"icons/icon{i}", "Etiquette Icons")
    report = get("openclipart", source=png_root, progress=False)
    assert report.dropped == {"no title": 1, "collection title": 5}
    sources = json.loads((home / "datasets/openclipart/manifest.json").read_text())["source_files"]
    assert {"animals/owl.png", "svg/animals/owl.svg"} <= set(sources)  # the captions' SVGs are checksummed too
    images = json.loads((home / "datasets/openclipart/captions.json").read_text())["images"]
    captions = {im["source"]: [s["raw"] for s in im["sentences"]] for im in images}
    assert captions == {"animals/owl.png": ["Owl on Branch"],
                        "food/bread.png": ["Bread & butter", "A slice of bread with butter."]}


def test_emoji_recipe_reads_the_npm_layout(home, tmp_path):
    from probe.recipes import get

    root = tmp_path / "emoji"
    entries = []
    for i, (name, category) in enumerate([("GRINNING FACE", "Smileys & Emotion"), ("Egypt Flag", "Flags"),
                                          ("LIGHT SKIN TONE", "Component"), ("RED APPLE", "Food & Drink")]):
        image = f"{i:04x}.png"
        _png(root / "img/google/64" / image, (i * 60, 100, 100))
        entries.append({"name": name, "category": category, "subcategory": "x", "image": image, "unified": image[:-4],
                        "has_img_google": True})
    entries.append({"name": "GHOST", "category": "Smileys & Emotion", "image": "gone.png", "unified": "gone",
                    "has_img_google": True})
    (root / "emoji.json").write_text(json.dumps(entries))
    report = get("emoji", source=root, progress=False)
    assert report.dropped == {"skin-tone swatch": 1, "no image": 1}
    images = json.loads((home / "datasets/emoji/captions.json").read_text())["images"]
    assert sorted(s["raw"] for im in images for s in im["sentences"]) == ["Egypt Flag", "Grinning face", "Red apple"]


def test_bad_recipe_names_and_missing_sources_are_one_line(run_cli, tmp_path):
    env = {"PROBE_HOME": str(tmp_path / "home")}
    assert_one_line_error(run_cli("data", "get", "tuxpain", env=env), "unknown recipe 'tuxpain'",
                          "did you mean tuxpaint")
    assert_one_line_error(run_cli("data", "get", "tuxpaint", "--source", str(tmp_path / "nowhere"), env=env),
                          "its source is not at", "apt-get install tuxpaint-stamps-default")
    assert_one_line_error(run_cli("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--train",
                                  "tuxpaint", "--eval", "tuxpaint", env=env),
                          "dataset 'tuxpaint' is not built here", "probe data get tuxpaint")


REAL_TUXPAINT = Path("/usr/share/tuxpaint/stamps")


@pytest.mark.skipif(not REAL_TUXPAINT.is_dir(), reason="tuxpaint-stamps-default is not installed "
                    "(sudo apt-get install tuxpaint-stamps-default)")
def test_a_slice_of_the_real_tuxpaint_package(home, tmp_path):
    from probe.recipes import get

    animals = sorted((REAL_TUXPAINT / "animals").rglob("*.png"))[:15]
    slice_root = tmp_path / "stamps"
    for png in animals:
        target = slice_root / png.relative_to(REAL_TUXPAINT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, target)
        if png.with_suffix(".txt").is_file():
            shutil.copy(png.with_suffix(".txt"), target.with_suffix(".txt"))
    report = get("tuxpaint", source=slice_root, progress=False)
    images = json.loads((home / "datasets/tuxpaint/captions.json").read_text())["images"]
    assert sum(report.counts.values()) == len(images) >= 10
    for image in images:
        caption = image["sentences"][0]["raw"]
        first_line = (REAL_TUXPAINT / image["source"]).with_suffix(".txt").read_text().splitlines()[0].strip()
        assert caption == first_line and "=" not in caption  # English first line, no translation


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="dataset-fashion-mnist is not installed "
                    "(sudo apt-get install dataset-fashion-mnist)")
def test_the_real_fashion_mnist_package_builds_its_stated_subsets(home):
    from probe.data import get_dataset
    from probe.recipes import get

    report = get("fashion-mnist", progress=False)
    assert report.counts == {"train": 500, "test": 500}
    assert report.dropped == {"beyond the stated train subset": 59500, "beyond the stated test subset": 9500}
    test = get_dataset("fashion-mnist").load("test")
    per_class = np.bincount(test.labels["class"], minlength=10)
    assert per_class.sum() == 500 and per_class.min() > 30 and per_class.max() < 70  # 1,000 each in t10k: ~50 kept
    assert test.images[0].load().size == (28, 28)


def test_datasets_joined_by_plus_are_one_corpus_and_their_parts_score_in_domain(home, tmp_path):
    from probe.data import get_dataset
    from probe.data.splits import IN_DOMAIN, TRANSFER, make_target
    from probe.recipes import get

    get("tuxpaint", source=tuxpaint_source(tmp_path), progress=False)
    tux = get_dataset("tuxpaint").load("train")
    shapes = get_dataset("shapes").load("train")
    both = get_dataset("tuxpaint+shapes")
    assert set(both.info.splits) == {"train", "val", "test"} & set(get_dataset("tuxpaint").info.splits)
    merged = both.load("train")
    assert merged.n_images == tux.n_images + shapes.n_images
    assert merged.captions == tux.captions + shapes.captions
    # every caption still points at its own image
    j = len(tux.captions) + 3
    assert merged.images[merged.caption_image[j]] == shapes.images[shapes.caption_image[3]]
    assert merged.labels == {} and merged.swap_pairs is None  # tuxpaint has no labels: none are mixed in
    target = make_target(get_dataset("tuxpaint"), {"retrieval"}, explicit_tasks=False, key="tuxpaint")
    assert target.protocol("tuxpaint+shapes") == IN_DOMAIN and target.protocol("shapes") == TRANSFER
    with pytest.raises(ProbeError, match="unknown dataset 'nope'"):
        get_dataset("tuxpaint+nope")


def _fashion_fixture(root: Path, n_train: int = 40, n_test: int = 30) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        images[:, 4:24, 4:24] += (labels * 19)[:, None, None]  # a class-dependent brightness: kNN can learn it
        _idx(root / f"{prefix}-images-idx3-ubyte.gz", np.clip(images, 0, 255))
        _idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def test_a_zero_shot_only_benchmark_reaches_the_report_and_correlates_by_corpus(run_cli, tmp_path):
    env = {"PROBE_HOME": str(tmp_path / "home"), "PROBE_RECIPE_SOURCE_FASHION_MNIST": str(_fashion_fixture(
        tmp_path / "fashion"))}
    assert run_cli("data", "get", "fashion-mnist", env=env).returncode == 0
    results = str(tmp_path / "results")
    run = run_cli("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--train", "shapes", "--eval",
                  "fashion-mnist", "--epochs", "1", "--results", results, env=env)
    assert run.returncode == 0, run.stderr
    assert "zero-shot class_top1" in run.stdout
    report = run_cli("report", "--results", results, "--out", str(tmp_path / "reports"), env=env)
    assert report.returncode == 0, report.stderr
    rows = json.loads((tmp_path / "reports" / "leaderboard.json").read_text())["rows"]
    assert [r["benchmark"] for r in rows] == ["fashion-mnist/test"] and rows[0]["alignment/probing_score"] is None
    assert_one_line_error(run_cli("correlate", "--dataset", "fashion-mnist", "--results", results, env=env),
                          "no successful probing records of heads fitted on 'fashion-mnist'", "--corpus")
    correlate = run_cli("correlate", "--dataset", "fashion-mnist", "--corpus", "shapes", "--results", results,
                        env=env)
    assert correlate.returncode == 0, correlate.stderr
    assert "text encoders get no unimodal scores here" in correlate.stderr
    assert "unimodal correlates on fashion-mnist" in correlate.stdout and "heads fitted on shapes" in correlate.stdout


def test_get_data_from_python_builds_once_and_checks_every_name_first(home, tmp_path):
    import probe

    source = tuxpaint_source(tmp_path)
    with pytest.raises(ProbeError, match="unknown recipe 'tuxpiant'.*did you mean tuxpaint"):
        probe.get_data(["tuxpaint", "tuxpiant"], progress=False)
    assert not (home / "datasets" / "tuxpaint").exists()  # nothing built before every name was checked
    seen = []
    (built,) = probe.get_data("tuxpaint", source=source, progress=False, on_done=seen.append)
    assert seen == [built] and built.outcome == "built" and built.folder == home / "datasets" / "tuxpaint"
    assert sum(built.counts.values()) > 0 and built.summary().startswith("tuxpaint: built in ")
    (again,) = probe.get_data("tuxpaint", source=source, progress=False)
    assert again.outcome == "already built" and "files match its manifest" in again.summary()
