from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from probe.data import get_dataset
from probe.errors import ProbeError


def test_shapes_is_deterministic_and_labelled():
    a, b = get_dataset("shapes").load("train"), get_dataset("shapes").load("train")
    assert a.captions == b.captions and a.image_fingerprint() == b.image_fingerprint()
    assert np.array_equal(np.asarray(a.images[3].load()), np.asarray(b.images[3].load()))
    assert len(a.captions) == 5 * a.n_images
    assert all(len(a.captions_of(i)) == 5 for i in range(10))
    shape = a.labels["shape"]
    single = shape >= 0
    assert 0.5 < single.mean() < 0.9  # one- and two-object scenes both present
    assert set(shape[single]) == set(range(len(a.classes["shape"])))  # every category appears
    assert len(a.classes["shape"]) >= 12
    # captions name the labelled shape and colour
    for i in np.flatnonzero(single)[:20]:
        first = a.captions[a.captions_of(i)[0]]
        assert a.classes["shape"][shape[i]] in first and a.classes["colour"][a.labels["colour"][i]] in first
    assert get_dataset("shapes").load("val").image_fingerprint() != a.image_fingerprint()


def test_shapes_ood_shares_the_classes_and_nothing_else():
    shapes, ood = get_dataset("shapes").load("test"), get_dataset("shapes-ood").load("test")
    again = get_dataset("shapes-ood").load("test")
    assert ood.captions == again.captions and ood.image_fingerprint() == again.image_fingerprint()
    assert ood.dataset == "shapes-ood" and ood.classes == shapes.classes  # zero-shot on the same classes
    assert not set(ood.templates["shape"]) & set(shapes.templates["shape"])
    assert not set(ood.captions) & {c for s in ("train", "val", "test") for c in get_dataset("shapes").load(s).captions}
    shapes_scenes = {repr(ref) for s in ("train", "val", "test") for ref in get_dataset("shapes").load(s).images}
    assert not {repr(ref) for ref in ood.images} & shapes_scenes
    from probe.data import shapes as shapes_module
    from probe.data import shapes_ood

    assert not set(shapes_ood.BACKGROUNDS.values()) & set(shapes_module.BACKGROUNDS.values())
    assert set(shapes_ood.FILLS) - set(shapes_module.FILLS) == {"checked", "ringed"}
    single = np.flatnonzero(ood.labels["shape"] >= 0)
    assert len(single) > 80 and set(ood.labels["shape"][single]) == set(range(len(ood.classes["shape"])))
    for i in single[:10]:
        first = ood.captions[ood.captions_of(i)[0]]
        assert ood.classes["shape"][ood.labels["shape"][i]] in first
    swaps = get_dataset("shapes-ood").load("winoground")
    i, j = swaps.swap_pairs[0]
    ci, cj = swaps.captions[swaps.captions_of(i)[0]], swaps.captions[swaps.captions_of(j)[0]]
    assert ci != cj and sorted(ci.replace(";", "").split()) == sorted(cj.replace(";", "").split())


def test_winoground_pairs_swap_colours():
    data = get_dataset("shapes").load("winoground")
    assert data.swap_pairs is not None and len(data.swap_pairs) == data.n_images // 2
    i, j = data.swap_pairs[0]
    ci, cj = data.captions[data.captions_of(i)[0]], data.captions[data.captions_of(j)[0]]
    assert ci != cj and sorted(ci.split()) == sorted(cj.split())  # same words, attributes swapped
    assert not np.array_equal(np.asarray(data.images[i].load()), np.asarray(data.images[j].load()))


def test_digits_split_sizes_and_captions():
    ds = get_dataset("digits")
    sizes = {s: ds.load(s).n_images for s in ds.info.splits}
    assert sizes == {"train": 1000, "val": 297, "test": 500}
    test = ds.load("test")
    label = test.labels["digit"][0]
    assert test.classes["digit"][label] in test.captions[0]
    assert test.images[0].load().size == (64, 64)


def _png(path, colour=(255, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), colour).save(path)


def test_imagefolder_karpathy_jsonl_and_wds(tmp_path):
    _png(tmp_path / "folder" / "train" / "cat" / "a.png")
    _png(tmp_path / "folder" / "train" / "dog" / "b.png")
    data = get_dataset(f"imagefolder:{tmp_path / 'folder'}").load("train")
    assert data.n_images == 2 and data.classes["label"] == ["cat", "dog"] and data.captions[0] == "a photo of a cat"

    _png(tmp_path / "coco" / "val2014" / "x.png")
    _png(tmp_path / "coco" / "train2014" / "y.png")
    karpathy = {"images": [
        {"filepath": "val2014", "filename": "x.png", "split": "test", "sentences": [{"raw": "a red square"}] * 5},
        {"filepath": "train2014", "filename": "y.png", "split": "restval", "sentences": [{"raw": "red"}]},
    ]}
    (tmp_path / "coco" / "dataset_coco.json").write_text(json.dumps(karpathy))
    ds = get_dataset(f"karpathy:{tmp_path / 'coco' / 'dataset_coco.json'}")
    assert "COCO Karpathy split (1 test images)" in ds.info.protocol
    test = ds.load("test")
    assert test.n_images == 1 and len(test.captions) == 5 and ds.load("train").n_images == 1

    (tmp_path / "pairs.jsonl").write_text('{"image": "coco/val2014/x.png", "caption": "c1", "split": "val"}\n'
                                          '{"image": "coco/val2014/x.png", "caption": "c2", "split": "val"}\n')
    pairs = get_dataset(f"jsonl:{tmp_path / 'pairs.jsonl'}").load("val")
    assert pairs.n_images == 1 and pairs.captions == ["c1", "c2"]

    with tarfile.open(tmp_path / "shard-0.tar", "w") as tar:
        tar.add(tmp_path / "coco" / "val2014" / "x.png", arcname="000001.png")
        (tmp_path / "cap.txt").write_text("a red square")
        tar.add(tmp_path / "cap.txt", arcname="000001.txt")
    shard = get_dataset(f"wds:{tmp_path / 'shard-0.tar'}").load("train")
    assert shard.captions == ["a red square"] and shard.images[0].load().size == (20, 20)


def test_bad_dataset_inputs_are_clear(tmp_path):
    with pytest.raises(ProbeError, match="unknown dataset 'cifar'; valid: shapes, digits"):
        get_dataset("cifar")
    with pytest.raises(ProbeError, match="does not exist"):
        get_dataset(f"csv:{tmp_path / 'nope.csv'}")
    (tmp_path / "p.csv").write_text("image,caption\na.png,a cat\nb.png,\n")
    with pytest.raises(ProbeError, match=r"p.csv:3: row has no caption"):
        get_dataset(f"csv:{tmp_path / 'p.csv'}")
    (tmp_path / "empty.csv").write_text("image,caption\n")
    with pytest.raises(ProbeError, match="no rows"):
        get_dataset(f"csv:{tmp_path / 'empty.csv'}")
    with pytest.raises(ProbeError, match="has no split 'test2'"):
        get_dataset("shapes").load("test2")


def test_img2dataset_output_reads_as_a_webdataset_corpus(tmp_path):
    """CC3M / CC12M as img2dataset writes them: NNNNN.tar shards of key.jpg + key.txt + key.json (with
    url, caption, status ...), an NNNNN_stats.json and NNNNN.parquet beside each, failed rows absent."""
    import io
    import json
    import tarfile

    from PIL import Image

    from probe.data import get_dataset

    def jpeg(colour) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), colour).save(buf, format="JPEG")
        return buf.getvalue()

    captions = {"000000000": "a red bus on a street", "000000002": "a dog asleep on a sofa",
                "000010001": "two people hiking in the snow"}
    for shard in ("00000", "00001"):
        with tarfile.open(tmp_path / f"{shard}.tar", "w") as tar:
            for key, caption in captions.items():
                if not key.startswith("0000" + shard[-1]):
                    continue
                meta = {"url": f"https://example.org/{key}.jpg", "caption": caption, "key": key, "status": "success",
                        "error_message": None, "width": 40, "height": 30, "original_width": 400,
                        "original_height": 300, "exif": "{}", "sha256": "0" * 64}
                for ext, payload in (("jpg", jpeg((200, 30, 30))), ("txt", caption.encode()),
                                     ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        (tmp_path / f"{shard}_stats.json").write_text(json.dumps({"count": 3, "successes": 2}))
        (tmp_path / f"{shard}.parquet").write_bytes(b"PAR1")
    data = get_dataset(f"wds:{tmp_path}").load("train")
    assert data.captions == list(captions.values()) and data.n_images == 3 and data.dropped == {}
    assert data.images[0].load().size == (40, 30)
