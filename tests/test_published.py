"""`probe data get` for the published benchmarks, on tiny fixtures in each upstream layout (the files
their authors publish), checked through the benchmark readers that score them. Nothing downloads."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error
from PIL import Image

from probe.errors import ProbeError

#: the first three ImageNet classes in wnid order, with their clip_benchmark names
WNIDS = {"n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark"}


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), (40 * seed % 256, 90, 200 - 30 * seed % 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("PROBE_DATA", str(root))
    return root


def test_imagenet_val_is_sorted_into_wnid_folders_by_torchvisions_devkit_parser(data_root, monkeypatch):
    """ILSVRC2012_devkit_t12.tar.gz (data/meta.mat: the synsets struct, leaves first by ILSVRC2012_ID;
    data/ILSVRC2012_validation_ground_truth.txt: one ID per validation image) and the flat
    ILSVRC2012_img_val.tar. The fixtures cannot carry the official MD5s, so only that check is patched."""
    import scipy.io
    import torchvision.datasets.imagenet

    from probe.evaluation.benchmarks import get_benchmark
    from probe.evaluation.preparation import prepare

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]
    synsets = np.zeros(4, dtype=[(f, object) for f in fields])
    for i, (wnid, words) in enumerate([*WNIDS.items(), ("n00001740", "entity")]):
        leaf = i < 3
        synsets[i] = (i + 1, wnid, words, "a gloss", 0 if leaf else 3, np.array([], dtype=np.uint8) if leaf
                      else np.array([1, 2, 3], dtype=np.uint8), 0, 1300)
    mat = io.BytesIO()
    scipy.io.savemat(mat, {"synsets": synsets})
    source = data_root / "imagenet"
    source.mkdir(parents=True)
    truth = [3, 1, 2, 1]  # ILSVRC2012_ID of validation images 1..4
    _tar(source / "ILSVRC2012_devkit_t12.tar.gz", {
        "ILSVRC2012_devkit_t12/data/meta.mat": mat.getvalue(),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": "".join(f"{i}\n" for i in truth).encode()})
    _tar(source / "ILSVRC2012_img_val.tar", {f"ILSVRC2012_val_{i:08d}.JPEG": _jpeg(i) for i in range(1, 5)})
    monkeypatch.setattr(torchvision.datasets.imagenet, "check_integrity",  # existence, not the official MD5
                        lambda path, md5=None: Path(path).is_file())

    where, counts = prepare("imagenet1k", progress=False)
    assert where == source / "val" and counts == {"classes": 3, "images": 4}
    assert sorted(p.name for p in (where / "n01440764").iterdir()) == ["ILSVRC2012_val_00000002.JPEG",
                                                                        "ILSVRC2012_val_00000004.JPEG"]
    data = get_benchmark("imagenet1k").load("test")
    names = data.classes["class"]
    assert [names[i] for i in data.labels["class"]] == ["tench", "tench", "goldfish", "great white shark"]


def test_winoground_from_the_hub_files(data_root):
    from probe.evaluation.benchmarks import get_benchmark
    from probe.evaluation.preparation import prepare

    source = data_root / "winoground"
    (source / "data").mkdir(parents=True)
    examples = [{"id": i, "caption_0": f"a mug in some grass {i}", "caption_1": f"some grass in a mug {i}",
                 "image_0": f"ex_{i}_img_0", "image_1": f"ex_{i}_img_1", "num_main_preds": 1} for i in range(2)]
    (source / "data" / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    _zip(source / "data" / "images.zip", {f"images/ex_{i}_img_{j}.png": _png(i * 2 + j) for i in range(2) for j in range(2)})
    where, counts = prepare("winoground", progress=False)
    assert counts == {"examples": 2, "images": 4} and (where / "images" / "ex_1_img_0.png").is_file()
    data = get_benchmark("winoground").load("test")
    assert len(data.captions) == 4 and data.swap_pairs.shape[0] == 2
    # an archive cut in half, or not a zip at all, is one line naming it, and the benchmark is not present
    archive = source / "data" / "images.zip"
    whole = archive.read_bytes()
    for broken in (whole[: len(whole) // 2], b"<html>Access denied</html>"):
        archive.write_bytes(broken)
        with pytest.raises(ProbeError, match=r"images\.zip: not a readable zip archive .*; download it again"):
            prepare("winoground", progress=False)
        with pytest.raises(ProbeError, match="did not finish"):
            get_benchmark("winoground")
    archive.write_bytes(whole)
    assert prepare("winoground", progress=False)[1] == {"examples": 2, "images": 4}
    assert get_benchmark("winoground").load("test").swap_pairs.shape[0] == 2


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (seed * 50 % 256, 20, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_flickr30k_csv_becomes_karpathy_json(data_root):
    from probe.evaluation.benchmarks import get_benchmark
    from probe.evaluation.preparation import prepare

    source = data_root / "flickr30k"
    source.mkdir(parents=True)
    rows = [("1000092795.jpg", "test", ["Two young guys with shaggy hair.", "Two men in green shirts."]),
            ("10002456.jpg", "train", ["Several men in hard hats.", "Workers look down from up above."]),
            ("1000268201.jpg", "test", ["A child in a pink dress.", "A little girl climbing stairs."])]
    lines = ["raw,sentids,split,filename,img_id"]
    for i, (name, split, captions) in enumerate(rows):
        raw = json.dumps(captions).replace('"', '""')
        lines.append(f'"{raw}","[{2 * i}, {2 * i + 1}]",{split},{name},{i}')
    (source / "flickr_annotations_30k.csv").write_text("\n".join(lines) + "\n")
    _zip(source / "flickr30k-images.zip", {f"flickr30k-images/{name}": _jpeg(i) for i, (name, _, _) in enumerate(rows)})
    where, counts = prepare("flickr30k-karpathy", progress=False)
    assert where == source / "dataset_flickr30k.json" and counts == {"images": 3, "test": 2}
    data = get_benchmark("flickr30k-karpathy").load("test")
    assert data.n_images == 2 and data.captions == [*rows[0][2], *rows[2][2]]
    assert data.images[1].load().size == (48, 40)
    # Karpathy's own dataset_flickr30k.json has no filepath: the images are found in flickr30k-images/
    karpathy = json.loads(where.read_text())
    for image in karpathy["images"]:
        image.pop("filepath")
    where.write_text(json.dumps(karpathy))
    assert get_benchmark("flickr30k-karpathy").load("test").images[0].load().size == (48, 40)


@pytest.mark.parametrize(("name", "table", "archive", "header", "row"), [
    ("datacomp-flickr", "test_1k_flickr.csv", "images_flickr_1k_test.zip", "raw,sentids,split,filename,img_id",
     '"{raw}","[0, 1]",test,{name},{i}'),
    ("datacomp-mscoco", "test_5k_mscoco_2014.csv", "images_mscoco_2014_5k_test.zip", "filename,raw,tokens,cocoid",
     '{name},"{raw}","[]",{i}')])
def test_datacomps_nlphuji_retrieval_sets_become_karpathy_json(data_root, name, table, archive, header, row):
    """DataComp scores nlphuji/<task>'s test split (eval_utils/retr_eval.py:38-45): a CSV whose raw column
    holds each image's captions as a JSON list, and a zip of the images in a folder of the zip's name."""
    from probe.errors import ProbeError
    from probe.evaluation.benchmarks import get_benchmark
    from probe.evaluation.catalogue import Catalogue
    from probe.evaluation.preparation import prepare

    entry = Catalogue.load().benchmarks[name]
    source = entry.data_folder()
    source.mkdir(parents=True)
    images = [("2847514745.jpg", ["A dog runs.", "A brown dog on grass.", "The dog plays."]),
              ("4689169924.jpg", ["Two people talk.", "Friends chat outside."])]
    lines = [header] + [row.format(raw=json.dumps(c).replace('"', '""'), name=n, i=i) for i, (n, c) in enumerate(images)]
    (source / table).write_text("\n".join(lines) + "\n")
    folder = archive.removesuffix(".zip")
    _zip(source / archive, {f"{folder}/{n}": _jpeg(i) for i, (n, _) in enumerate(images)})
    where, counts = prepare(name, progress=False)
    assert counts == {"images": 2, "test": 2, "captions": 5} and where == entry.data_path()
    data = get_benchmark(name).load("test")
    assert data.n_images == 2 and data.captions == images[0][1] + images[1][1]
    assert data.caption_image.tolist() == [0, 0, 0, 1, 1] and data.images[1].load().size == (48, 40)
    assert entry.main_metric == "mean_recall@1" and not entry.unsupported
    # a row that is not the layout's, or an image the zip lacks: one line naming what is wrong
    (source / table).write_text("\n".join([header, row.format(raw="not json", name="x.jpg", i=0)]) + "\n")
    with pytest.raises(ProbeError, match=rf"{table}:2: not an nlphuji retrieval row"):
        prepare(name, progress=False)
    (source / table).write_text("\n".join(lines + [row.format(raw='[""a""]', name="gone.jpg", i=2)]) + "\n")
    with pytest.raises(ProbeError, match=r"1 image\(s\) the CSV lists are not in it \(e\.g\. gone\.jpg\)"):
        prepare(name, progress=False)


def test_clip_benchmarks_retrieval_webdatasets_are_read_as_its_writer_writes_them(data_root):
    """Shards written by clip_benchmark's own convert_retrieval_dataset (webdataset_builder.py:207-265):
    dataset_type.txt says retrieval, each sample an image and <key>.txt, its captions one per line."""
    from clip_benchmark.webdataset_builder import convert_retrieval_dataset
    from PIL import Image

    from probe.errors import ProbeError
    from probe.evaluation.benchmarks import get_benchmark
    from probe.evaluation.preparation import prepare

    folder = data_root / "wds_flickr30k"
    pairs = [(Image.new("RGB", (20 + i, 16), (40 * i, 0, 0)), [f"picture {i} caption {j}" for j in range(1 + i % 3)])
             for i in range(5)]
    convert_retrieval_dataset(pairs, "test", str(folder), image_format="png", verbose=False)
    where, counts = prepare("flickr30k-wds", progress=False)
    assert counts == {"test shards": 1, "retrieval": 1}
    data = get_benchmark("flickr30k-wds").load("test")
    assert data.n_images == 5 and data.captions == [c for _, captions in pairs for c in captions]
    assert data.caption_image.tolist() == [i for i, (_, captions) in enumerate(pairs) for _ in captions]
    assert [image.load().size for image in data.images] == [(20 + i, 16) for i in range(5)]
    (folder / "dataset_type.txt").write_text("classification\n")
    with pytest.raises(ProbeError, match="dataset_type.txt says 'classification'; a retrieval benchmark's says"):
        get_benchmark("flickr30k-wds").load("test")


def test_coco_from_karpathys_zip_and_the_2014_image_zips(data_root):
    from probe.evaluation.benchmarks import get_benchmark
    from probe.evaluation.preparation import prepare

    source = data_root / "coco"
    source.mkdir(parents=True)
    images = [{"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "split": "test",
               "sentences": [{"raw": "A dog on a couch.", "tokens": ["a", "dog", "on", "a", "couch"]}]},
              {"filepath": "train2014", "filename": "COCO_train2014_000000000009.jpg", "split": "restval",
               "sentences": [{"raw": "Food in a bowl.", "tokens": ["food", "in", "a", "bowl"]}]}]
    _zip(source / "caption_datasets.zip", {"dataset_coco.json": json.dumps({"images": images}).encode(),
                                           "dataset_flickr8k.json": b"{}"})
    _zip(source / "train2014.zip", {"train2014/COCO_train2014_000000000009.jpg": _jpeg(1)})
    _zip(source / "val2014.zip", {"val2014/COCO_val2014_000000000042.jpg": _jpeg(2)})
    where, counts = prepare("coco-karpathy", progress=False)
    assert counts == {"train2014": 1, "val2014": 1}
    data = get_benchmark("coco-karpathy").load("test")
    assert data.captions == ["A dog on a couch."] and data.images[0].load().size == (48, 40)


def test_coco_val2017_in_cocos_layout_keeps_sails_first_five_captions(data_root, run_cli):
    """Images by ascending id and captions in file order, as torchvision's CocoCaptions reads them
    (SAIL evaluation/coco_dataset.py:37); only each image's first five captions are kept (SAIL
    evaluation/coco_zs_retrieval.py:68,88), the rest counted; `coco:FOLDER` reads every caption."""
    from probe.data import get_dataset
    from probe.evaluation.benchmarks import get_benchmark
    from probe.evaluation.preparation import prepare

    source = data_root / "downloads"
    source.mkdir(parents=True)
    images = [{"id": 90, "file_name": "000000000090.jpg"}, {"id": 7, "file_name": "000000000007.jpg"},
              {"id": 12, "file_name": "000000000012.jpg"}]  # 12 has no caption
    annotations = ([{"image_id": 90, "id": 100 + i, "caption": f"ninety {i} "} for i in range(7)]
                   + [{"image_id": 7, "id": 200 + i, "caption": f"seven {i}"} for i in range(5)]
                   + [{"image_id": 5, "id": 300, "caption": "an image the file does not list"}])
    _zip(source / "annotations_trainval2017.zip", {
        "annotations/captions_val2017.json": json.dumps({"images": images, "annotations": annotations}).encode(),
        "annotations/instances_val2017.json": b"{}"})
    _zip(source / "val2017.zip", {f"val2017/{im['file_name']}": _jpeg(im["id"]) for im in images})
    before = run_cli("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--train", "shapes",
                     "--eval", "coco-val2017", env={"PROBE_DATA": str(data_root)})
    assert_one_line_error(before, "coco-val2017", "probe data get coco-val2017")
    where, counts = prepare("coco-val2017", source=source, progress=False)
    assert counts == {"val2017": 3}
    data = get_benchmark("coco-val2017").load("val2017")
    assert [Path(im.path).name for im in data.images] == ["000000000007.jpg", "000000000090.jpg"]
    assert data.captions == [f"seven {i}" for i in range(5)] + [f"ninety {i}" for i in range(5)]
    assert data.caption_image.tolist() == [0] * 5 + [1] * 5
    assert data.dropped == {"images without a caption": 1, "captions beyond the first 5 of an image": 2,
                            "captions of an image the file does not list": 1}
    assert data.images[1].load().size == (48, 40)
    every = get_dataset(f"coco:{where}").load("val2017")
    assert len(every.captions) == 12 and every.captions[-1] == "ninety 6"
    assert_one_line_error(run_cli("select", "--dataset", f"coco:{where}", "--split", "val2014"),
                          "has no split 'val2014'", "val2017")


def test_missing_files_and_unsafe_archives_are_one_line(data_root, run_cli, tmp_path):
    env = {"PROBE_DATA": str(data_root)}
    missing = run_cli("data", "get", "flickr30k-karpathy", env=env)
    assert_one_line_error(missing, "flickr_annotations_30k.csv, flickr30k-images.zip not in",
                          "huggingface-cli download nlphuji/flickr30k", "--allow-download")
    assert_one_line_error(run_cli("data", "get", "imagenet", env=env), "unknown recipe 'imagenet'", "imagenet1k")
    source = data_root / "winoground"
    source.mkdir(parents=True)
    (source / "examples.jsonl").write_text("")
    _zip(source / "images.zip", {"../escape.png": _png(1)})
    assert_one_line_error(run_cli("data", "get", "winoground", env=env), "would be written outside")
    assert not (data_root / "escape.png").exists()
    # the refused preparation left examples.jsonl behind: the benchmark is not called present, nor scored
    listed = json.loads(run_cli("benchmarks", "winoground", "--json", env=env).stdout)
    assert [b["present"] for b in listed["benchmarks"]] == [False]
    assert_one_line_error(run_cli("eval", "--model", str(tmp_path), "--eval", "winoground", env=env),
                          "the preparation of", "did not finish", "probe data get winoground")


def test_a_clip_benchmark_set_is_checked_in_place_and_named_for_download(data_root, run_cli):
    from probe.evaluation.benchmarks import get_benchmark
    from probe.evaluation.preparation import prepare

    missing = run_cli("data", "get", "cifar10", env={"PROBE_DATA": str(data_root)})
    assert_one_line_error(missing, "huggingface-cli download clip-benchmark/wds_cifar10")
    folder = data_root / "wds_cifar10"
    (folder / "test").mkdir(parents=True)
    (folder / "classnames.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    _tar(folder / "test" / "0.tar", {"s0.webp": _png(1), "s0.cls": b"3", "s1.webp": _png(2), "s1.cls": b"7"})
    where, counts = prepare("cifar10", progress=False)
    assert where == folder and counts == {"test shards": 1}
    data = get_benchmark("cifar10").load("test")
    assert data.labels["class"].tolist() == [3, 7]
    # downloads kept inside the data folder are refused as a source before anything is removed
    download = folder / "download"
    shutil.copytree(folder / "test", download / "test")
    (download / "classnames.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    inside = run_cli("data", "get", "cifar10", "--source", str(download), env={"PROBE_DATA": str(data_root)})
    assert_one_line_error(inside, f"--source {download} is inside the benchmark's data folder {folder}")
    assert (download / "test" / "0.tar").is_file() and (folder / "test" / "0.tar").is_file()
    # a copy from elsewhere replaces the folder only once complete
    elsewhere = data_root / "mirror"
    shutil.copytree(download, elsewhere)
    (elsewhere / "test" / "0.tar").write_bytes((folder / "test" / "0.tar").read_bytes())
    assert prepare("cifar10", source=elsewhere, progress=False)[1] == {"test shards": 1}
    assert (elsewhere / "test" / "0.tar").is_file() and not (folder / "download").exists()
    assert sorted(p.name for p in data_root.iterdir() if not p.name.endswith(".lock")) == ["mirror", "wds_cifar10"]


def test_ulcc_dictionaries_become_four_way_questions(tmp_path):
    """ulcc's layout: dictionary.json without its outer braces, answer1..answer4 (or a lone answer / answer1
    whose distractors come from the topic's other words), words translated through languages/en.lng."""
    from probe.data.published import Ulcc

    animals, jobs = tmp_path / "dictionaries" / "animals", tmp_path / "dictionaries" / "jobs"
    for topic, entries in ((animals, [("loewe.png", ["loewe", "giraffe", "hare", "fly"]),
                                      ("giraffe.png", ["giraffe", "loewe", "hare", "fly"])]),
                           (jobs, [("a.png", ["sailor"]), ("b.png", ["boxer"]), ("c.png", ["vet"]),
                                   ("d.png", ["nurse"]), ("e.png", ["clown"])])):
        (topic / "images").mkdir(parents=True)
        body = []
        for image, words in entries:
            Image.new("RGB", (8, 8)).save(topic / "images" / image)
            keys = ["answer"] if topic == jobs and image == "a.png" else [f"answer{i + 1}" for i in range(len(words))]
            body.append("{" + ", ".join([f'"image": "images/{image}"'] + [f'"{k}": "{w}"' for k, w in zip(keys, words, strict=True)])
                        + "}")
        (topic / "dictionary.json").write_text('"author": "someone",\n"images": [\n' + ",\n".join(body) + "\n]\n")
    (animals / "languages").mkdir()
    (animals / "languages" / "en.lng").write_text("# animals\nloewe=lion\ngiraffe=giraffe\nhare=hare\nfly=fly\n")
    data = Ulcc("ulcc", tmp_path / "dictionaries", ["a drawing of a {}."], "d").load("test")
    classes, candidates = data.classes["four_way"], data.candidates["four_way"]

    def options(row):
        return sorted(classes[i] for i in np.flatnonzero(candidates[row]))

    assert data.n_images == 7 and candidates.sum(axis=1).tolist() == [4] * 7
    assert classes[data.labels["four_way"][0]] == "lion" and options(0) == ["fly", "giraffe", "hare", "lion"]
    assert classes[data.labels["four_way"][2]] == "sailor"
    assert "sailor" in options(2) and set(options(2)) <= {"sailor", "boxer", "vet", "nurse", "clown"}
    again = Ulcc("ulcc", tmp_path / "dictionaries", ["a drawing of a {}."], "d").load("test")
    assert (again.candidates["four_way"] == candidates).all()  # the drawn distractors are the same every run


def test_multiple_choice_accuracy_ranks_only_each_images_own_options():
    from probe.metrics.zeroshot import topk_hits

    classes = np.eye(4)
    images = np.array([[0.9, 0.1, 0.0, 0.0],   # nearest class 0, not among its options {1, 2}: picks 1
                       [0.0, 0.2, 0.9, 0.0]])  # nearest class 2, among its options {2, 3}: picks 2
    options = np.array([[False, True, True, False], [False, False, True, True]])
    hits = topk_hits(images, classes, np.array([1, 3]), ks=(1,), candidates=options)[1]
    assert hits.tolist() == [True, False]
    assert topk_hits(images, classes, np.array([1, 3]), ks=(1,))[1].tolist() == [False, False]


@pytest.mark.skipif(not Path("/usr/share/ulcc/dictionaries").is_dir(), reason="sudo apt-get install ulcc")
def test_the_installed_ulcc_package_gives_34_four_way_questions():
    from probe.evaluation.benchmarks import get_benchmark

    data = get_benchmark("ulcc").load("test")
    labels, options = data.labels["four_way"], data.candidates["four_way"]
    assert data.n_images == 34 and (options.sum(axis=1) == 4).all() and options[np.arange(34), labels].all()
    assert {data.classes["four_way"][i] for i in labels} >= {"lion", "giraffe", "farmer", "hanger"}
