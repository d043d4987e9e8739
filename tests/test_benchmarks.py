"""Benchmarks as data: the catalogue, readers for published layouts (tiny fixtures written in those
layouts), classification- and compositional-only scoring, and clear refusals."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error
from PIL import Image

from probe.align.config import ProbeConfig
from probe.errors import ProbeError

TINY = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "2")
WNIDS = ("n01440764", "n01443537", "n01484850")  # ImageNet classes 0, 1, 2


def _png(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_DATA", str(tmp_path))
    return tmp_path


def test_imagenet_wnid_folders_take_clip_benchmarks_names(data_root):
    import importlib.resources as resources

    from probe.evaluation.benchmarks import get_benchmark

    for i, wnid in enumerate(WNIDS):
        for j in range(2):
            _png(data_root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{i}{j}.JPEG", (40 * i, 0, 0))
    data = get_benchmark("imagenet1k").load("val")
    names = json.loads((resources.files("clip_benchmark") / "datasets" / "en_classnames.json").read_text())["imagenet1k"]
    assert data.dataset == "imagenet1k" and data.n_images == 6 and not data.captions
    assert data.labels["class"].tolist() == [0, 0, 1, 1, 2, 2]
    assert [data.classes["class"][label] for label in (0, 1, 2)] == names[:3] == ["tench", "goldfish",
                                                                                 "great white shark"]
    assert len(data.templates["class"]) == 80 and data.templates["class"][0] == "a bad photo of a {c}."
    _png(data_root / "imagenet" / "val" / "cats" / "x.JPEG", (0, 0, 0))
    with pytest.raises(ProbeError, match="folder 'cats' is not an ImageNet wnid"):
        get_benchmark("imagenet1k").load("val")


def _winoground(root: Path) -> None:
    lines = []
    for i in range(4):
        for j in (0, 1):
            _png(root / "winoground" / "images" / f"ex_{i}_img_{j}.png", (60 * i, 100 * j, 0))
        lines.append(json.dumps({"id": i, "caption_0": f"a red thing over a blue thing {i}",
                                 "caption_1": f"a blue thing over a red thing {i}",
                                 "image_0": f"ex_{i}_img_0", "image_1": f"ex_{i}_img_1", "tag": "Object"}))
    (root / "winoground" / "examples.jsonl").write_text("\n".join(lines) + "\n")


def test_winoground_as_published_and_its_scores_by_hand(data_root):
    from probe.evaluation.benchmarks import get_benchmark
    from probe.metrics.compositional import winoground_scores

    _winoground(data_root)
    data = get_benchmark("winoground").load("test")
    assert data.n_images == 8 and data.captions[2] == "a red thing over a blue thing 1"
    assert data.swap_pairs.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert data.caption_image.tolist() == list(range(8))
    assert Path(data.images[3].path).name == "ex_1_img_1.png"
    # s[c, i] per example, chosen by hand: 1 all right; 2 text right only; 3 image right only; 4 all wrong
    sims = {0: [[0.9, 0.1], [0.2, 0.8]], 1: [[0.5, 0.6], [0.1, 0.7]], 2: [[0.5, 0.1], [0.6, 0.7]],
            3: [[0.1, 0.9], [0.8, 0.2]]}
    # embeddings realising those similarities: captions are basis vectors, images hold the columns
    text = np.zeros((8, 8))
    image = np.zeros((8, 8))
    for k, s in sims.items():
        text[2 * k, 2 * k], text[2 * k + 1, 2 * k + 1] = 1.0, 1.0
        image[2 * k, [2 * k, 2 * k + 1]] = [s[0][0], s[1][0]]
        image[2 * k + 1, [2 * k, 2 * k + 1]] = [s[0][1], s[1][1]]
    scores = winoground_scores(image, text, data.caption_image, data.swap_pairs)
    # text: s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1); image: s(c0,i0) > s(c0,i1) and s(c1,i1) > s(c1,i0)
    assert scores == {"text": 2 / 4, "image": 2 / 4, "group": 1 / 4}


def _clip_wds(root: Path, names: list[str] | None) -> Path:
    folder = root / "wds_toy"
    (folder / "test").mkdir(parents=True)
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        for i, label in enumerate([0, 1, 2, 1]):
            for name, payload in ((f"s{i}.png", _png_bytes((80 * label, 0, 0))), (f"s{i}.cls", str(label).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    if names:
        (folder / "classnames.txt").write_text("\n".join(names) + "\n")
    catalogue = root / "mine.toml"
    catalogue.write_text('[[benchmark]]\nname = "toy"\ntask = ["zeroshot"]\nreader = "clip-wds"\ndata = "wds_toy"\n'
                         'classnames = "data:classnames.txt"\ntemplates = ["a photo of a {c}.", "a {c}."]\n'
                         'description = "three colours"\nget = "made by the test"\n')
    return catalogue


def _png_bytes(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_clip_benchmark_webdataset_layout(data_root, monkeypatch):
    from probe.evaluation.benchmarks import get_benchmark

    monkeypatch.setenv("PROBE_BENCHMARKS", str(_clip_wds(data_root, ["black", "dark red", "red"])))
    data = get_benchmark("toy").load("test")
    assert data.labels["class"].tolist() == [0, 1, 2, 1] and data.classes["class"] == ["black", "dark red", "red"]
    assert np.asarray(data.images[2].load())[0, 0].tolist() == [160, 0, 0]
    (data_root / "wds_toy" / "classnames.txt").unlink()
    with pytest.raises(ProbeError, match="benchmark 'toy' has no classnames: .*classnames.txt is missing"):
        get_benchmark("toy").load("test")


def test_classification_and_compositional_benchmarks_end_to_end(run_cli, tmp_path, shared_cache, data_root):
    catalogue = _clip_wds(data_root, ["black", "dark red", "red"])
    _winoground(data_root)
    env = {"PROBE_CACHE_DIR": str(shared_cache), "PROBE_DATA": str(data_root), "PROBE_BENCHMARKS": str(catalogue)}
    out = tmp_path / "r"
    ran = run_cli("run", "--train", "shapes", "--eval", "toy", "--eval", "winoground", *TINY, "--results", str(out),
                  env=env)
    assert ran.returncode == 0, ran.stderr
    records = {json.loads(p.read_text())["benchmark"]["name"]: json.loads(p.read_text())
               for p in (out / "records" / "alignment").rglob("*.json")}
    toy, wino = records["toy"]["metrics"], records["winoground"]["metrics"]
    assert set(toy) == {"zeroshot/class_top1", "zeroshot/class_mean_per_class_recall"} and set(records["toy"]["intervals"]) == set(toy)
    assert set(wino) == {"compositional/text", "compositional/image", "compositional/group"}
    assert records["winoground"]["benchmark"]["compositional_split"] == "test"
    assert records["toy"]["protocol"] == "zero-shot transfer"


def test_benchmark_refusals_are_one_line(run_cli, tmp_path):
    env = {"PROBE_DATA": str(tmp_path)}
    assert_one_line_error(run_cli("run", "--train", "shapes", "--eval", "imagenet1k", *TINY, env=env),
                          "benchmark 'imagenet1k'", f"expected at {tmp_path / 'imagenet' / 'val'}", "ILSVRC2012")
    assert_one_line_error(run_cli("run", "--train", "shapes", "--eval", "imagenet", *TINY, env=env),
                          "unknown benchmark 'imagenet'", "did you mean", "imagenet1k")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[benchmark]]\nname = "x"\ntask = ["zeroshot"]\nreader = "clip-wds"\ndata = "x"\n'
                   'description = "no class names"\n')
    assert_one_line_error(run_cli("benchmarks", env={**env, "PROBE_BENCHMARKS": str(bad)}),
                          "benchmark 'x'", "needs 'classnames' and 'templates'")


def test_benchmarks_command_lists_tasks_data_and_suites(run_cli, tmp_path):
    listed = run_cli("benchmarks", "--json", env={"PROBE_DATA": str(tmp_path)})
    assert listed.returncode == 0, listed.stderr
    table = json.loads(listed.stdout)
    by_name = {row["name"]: row for row in table["benchmarks"]}
    assert by_name["imagenet1k"]["classes"] == "1000" and by_name["imagenet1k"]["templates"] == "80"
    assert by_name["imagenet1k"]["present"] is False and by_name["shapes-ood"]["present"] is True
    assert by_name["imagenet1k"]["data"] == str(tmp_path / "imagenet" / "val")
    assert {"suite": "offline", "benchmarks": ["shapes", "shapes-ood", "digits"]}.items() <= \
        next(s for s in table["suites"] if s["suite"] == "offline").items()


def test_swap_pairs_with_an_unreadable_image_leave_the_denominator_and_are_counted():
    """Three swap pairs, one with an image that could not be read (NaN features): the scores are over the
    other two (one hit, one miss: 1/2), not a miss over three (1/3), and the record's dropped says so."""
    from types import SimpleNamespace

    from probe.evaluation.evaluate import dropped_counts, evaluate
    from probe.features.paired import PairedFeatures

    class Identity:
        def embed_images(self, x):
            with np.errstate(invalid="ignore"):  # an unreadable image's NaN row stays NaN
                return x / np.linalg.norm(x, axis=1, keepdims=True)

        embed_texts = embed_images

    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 16)).astype(np.float32)
    texts = images.copy()  # caption i is image i: every pair a hit ...
    texts[[4, 5]] = images[[5, 4]]  # ... but the third, whose captions are swapped: a miss on every score
    images[1] = np.nan  # the first pair's second image could not be read
    swap = np.array([[0, 1], [2, 3], [4, 5]])
    pairs = PairedFeatures(images, texts, np.arange(6))
    metrics, intervals = evaluate(Identity(), pairs, compositional=(pairs, swap), retrieval=False)
    assert metrics == {"compositional/text": 0.5, "compositional/image": 0.5, "compositional/group": 0.5}
    roles = {"compositional": SimpleNamespace(dropped={}, swap_pairs=swap)}
    vision = SimpleNamespace(skipped={"compositional": 1}, by_role={"compositional": images})
    assert dropped_counts(roles, vision) == {"compositional": {"unreadable images (skipped at extraction)": 1,
                                                               "swap pairs left out (an image unreadable)": 1}}


@pytest.mark.parametrize("line, fragment", [
    ("[1, 2]", "expected a JSON object with image_0"),
    ('{"image_0": "a", "image_1": "b", "caption_0": 3, "caption_1": "x"}', "'caption_0' must be a non-empty string, got 3"),
    ('{"image_0": "a", "caption_0": "x", "caption_1": "y"}', "'image_1' must be a non-empty string, got None"),
    ("{not json", "invalid JSON"),
])
def test_malformed_winoground_lines_are_one_line(data_root, line, fragment):
    from probe.evaluation.benchmarks import get_benchmark

    _winoground(data_root)
    file = data_root / "winoground" / "examples.jsonl"
    file.write_text(file.read_text() + line + "\n")
    with pytest.raises(ProbeError) as caught:
        get_benchmark("winoground").load("test")
    assert "examples.jsonl:5: " in str(caught.value) and fragment in str(caught.value)
    file.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(ProbeError, match="examples.jsonl: not UTF-8 text"):
        get_benchmark("winoground").load("test")


def test_karpathy_images_of_a_misspelt_or_missing_split_are_counted(tmp_path):
    from probe.data.local import KarpathyDataset

    images = [{"filename": f"{i}.jpg", "split": split, "sentences": [{"raw": f"caption {i}"}]}
              for i, split in enumerate(["test", "test", "tset", "Test", "train"])]
    images.append({"filename": "5.jpg", "sentences": [{"raw": "no split"}]})
    file = tmp_path / "dataset_coco.json"
    file.write_text(json.dumps({"images": images}))
    data = KarpathyDataset(str(file)).load("test")
    assert data.n_images == 2
    assert data.dropped == {"images of no known split (left out of every split)": 3}


def test_a_karpathy_benchmark_is_known_by_its_catalogue_name_under_any_data_root(tmp_path, monkeypatch):
    """The same COCO files under two $PROBE_DATA roots (two machines merging results) are one benchmark:
    one name, one target, so one record path and one leaderboard tab."""
    from probe.align.sweep import alignment_path
    from probe.data.splits import TASKS, make_target
    from probe.evaluation.benchmarks import get_benchmark

    names = []
    for root in (tmp_path / "machine-a", tmp_path / "machine-b"):
        coco = root / "coco"
        images = []
        for i in range(3):
            _png(coco / "val2014" / f"{i}.jpg", (80 * i, 0, 0))
            images.append({"filepath": "val2014", "filename": f"{i}.jpg", "split": "test",
                           "sentences": [{"raw": f"a photo number {i}"}]})
        (coco / "dataset_coco.json").write_text(json.dumps({"images": images}))
        monkeypatch.setenv("PROBE_DATA", str(root))
        benchmark = get_benchmark("coco-karpathy")
        target = make_target(benchmark, {"retrieval"} & set(TASKS), explicit_tasks=False, key=benchmark.info.name)
        assert benchmark.load("test").dataset == "coco-karpathy"
        names.append((benchmark.info.name, target.benchmark, alignment_path(tmp_path, "shapes", "v", "t",
                                                                           ProbeConfig(), target.benchmark),
                      target.reference()["fingerprint"]))
    assert names[0] == names[1] and names[0][:2] == ("coco-karpathy", "coco-karpathy")
    # the record's data fingerprint is the same under both roots, and another caption changes it
    (coco / "dataset_coco.json").write_text(json.dumps({"images": [*images[:2], {**images[2], "sentences": [
        {"raw": "another caption"}]}]}))
    changed = get_benchmark("coco-karpathy").load("test").content_fingerprint
    assert changed != names[1][3]


TOY = ('[[benchmark]]\nname = "toy"\ntask = ["zeroshot"]\nreader = "clip-wds"\ndata = "wds_toy"\n'
       'classnames = ["a", "b"]\ntemplates = ["a {c}."]\ndescription = "d"\n')


@pytest.mark.parametrize("text, fragment", [
    (TOY.replace('name = "toy"', "name = 3"), "'name' must be a non-empty string, got 3"),
    (TOY.replace('data = "wds_toy"', "data = 7"), "'data' must be a string, got 7"),
    (TOY.replace('classnames = ["a", "b"]', "classnames = [1, 2]"), "'classnames' must be a string or a list"),
    ('benchmark = "toy"\n', "'benchmark' must be tables ([[benchmark]] ...)"),
    ('[[suite]]\nbenchmarks = ["shapes"]\n', "a [[suite]] needs 'name'"),
    ('[[suite]]\nname = "mine"\n', "suite 'mine': 'benchmarks' must be a non-empty list"),
    ('[[suite]]\nname = "mine"\nbenchmarks = []\n', "must be a non-empty list of benchmark names"),
    ('[[suite]]\nname = "mine"\nbenchmarks = [3]\n', "must be a non-empty list of benchmark names"),
    (TOY.replace('name = "toy"', 'name = "shapes"'), "'shapes' is already defined in"),
    ('[[benchmarks]]\nname = "x"\n', "unknown top-level key 'benchmarks'"),
    (b"[[benchmark]]\nname = \"caf\xe9\"\n", "not UTF-8 text"),
])
def test_malformed_benchmark_files_are_one_line_naming_the_file(tmp_path, monkeypatch, text, fragment):
    from probe.evaluation.catalogue import Catalogue

    file = tmp_path / "mine.toml"
    file.write_bytes(text if isinstance(text, bytes) else text.encode())
    monkeypatch.setenv("PROBE_BENCHMARKS", str(file))
    with pytest.raises(ProbeError) as caught:
        Catalogue.load()
    assert fragment in str(caught.value) and str(file) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("templates, fragment", [
    ("", "zeroshot_classification_templates.txt: empty"),
    ("a photo of a {x}.\n", "it holds {x}; the class is written {} or {c}"),
    ("a photo of a {c.\n", "template 1 'a photo of a {c.'"),
    ("a photo.\n", "no {} or {c} for the class name"),
    ("a {c}, {c:>4}.\n", "the class is written {} or {c}"),
])
def test_bad_templates_files_are_refused_never_replaced(data_root, monkeypatch, templates, fragment):
    from probe.evaluation.benchmarks import get_benchmark

    catalogue = _clip_wds(data_root, ["black", "dark red", "red"])
    catalogue.write_text(catalogue.read_text().replace('templates = ["a photo of a {c}.", "a {c}."]',
                                                       'templates = "data:zeroshot_classification_templates.txt"'))
    (data_root / "wds_toy" / "zeroshot_classification_templates.txt").write_text(templates)
    monkeypatch.setenv("PROBE_BENCHMARKS", str(catalogue))
    with pytest.raises(ProbeError) as caught:
        get_benchmark("toy").load("test")
    assert fragment in str(caught.value), caught.value


@pytest.mark.parametrize("cls, fragment", [(b"-1", "'-1' is not a non-negative integer"),
                                           (b"two", "'two' is not a non-negative integer"),
                                           (b"", "'' is not a non-negative integer")])
def test_bad_class_indices_in_shards_are_one_line(data_root, monkeypatch, cls, fragment):
    from probe.evaluation.benchmarks import get_benchmark

    catalogue = _clip_wds(data_root, ["black", "dark red", "red"])
    shard = data_root / "wds_toy" / "test" / "0.tar"
    with tarfile.open(shard, "a") as tar:
        for name, data in (("zz.png", _png_bytes((1, 2, 3))), ("zz.cls", cls)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("PROBE_BENCHMARKS", str(catalogue))
    with pytest.raises(ProbeError) as caught:
        get_benchmark("toy").load("test")
    assert fragment in str(caught.value) and "zz.cls" in str(caught.value)


def test_prompt_parts_that_cannot_make_a_classifier_are_refused():
    from probe.metrics.zeroshot import prompts

    with pytest.raises(ProbeError, match="no class names"):
        prompts([], ["a {c}."])
    with pytest.raises(ProbeError, match="no prompt templates"):
        prompts(["cat"], [])
    with pytest.raises(ProbeError, match="no {} or {c} for the class name"):
        prompts(["cat", "dog"], ["a photo."])
    assert prompts(["apple"], ["a {c} {{literal}}.", "{}"]) == ["a apple {literal}.", "apple"]


def test_a_user_file_replaces_a_builtin_benchmark_only_when_it_says_override(tmp_path, monkeypatch):
    from probe.evaluation.catalogue import Catalogue

    file = tmp_path / "mine.toml"
    file.write_text(TOY.replace('name = "toy"', 'name = "shapes"\noverride = true'))
    monkeypatch.setenv("PROBE_BENCHMARKS", str(file))
    entry = Catalogue.load().benchmarks["shapes"]
    assert entry.reader == "clip-wds" and entry.source == str(file)
    file.write_text('[[suite]]\nname = "offline"\nbenchmarks = ["digits"]\noverride = true\n')
    assert Catalogue.load().suites["offline"].benchmarks == ("digits",)



def test_imagenet_prompts_are_clip_benchmarks_string_for_string():
    """ImageNet's 1,000 classes x 80 templates from clip_benchmark's own metadata, each prompt as its
    zero-shot classifier writes it (``template.format(c=classname)``, metrics/zeroshot_classification.py:48)."""
    import json
    from importlib import resources

    from probe.metrics.zeroshot import prompts

    folder = resources.files("clip_benchmark") / "datasets"
    classnames = json.loads((folder / "en_classnames.json").read_text())["imagenet1k"]
    templates = json.loads((folder / "en_zeroshot_classification_templates.json").read_text())["imagenet1k"]
    assert (len(classnames), len(templates)) == (1000, 80)
    expected = [template.format(c=classname) for classname in classnames for template in templates]
    assert prompts(classnames, templates) == expected
    assert "a origami tench." in expected  # the article is left as the template has it
