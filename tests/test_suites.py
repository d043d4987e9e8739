"""Suites named after a paper or a tool hold what it evaluated, member by member, and say which
members probe does not score and why; a zero-shot score DataComp averages by mean per-class recall
is computed as clip_benchmark computes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error

#: mlfoundations/datacomp@4a8df19 tasklist.yml: task key (line) -> main metric (acc1 where none is
#: given, evaluate.py:389-390); FairFace (:376) and UTKFace (:384) have none and are not averaged
DATACOMP_38 = {
    "vtab/caltech101 (4)": "mean_per_class_recall", "cifar10 (15)": "top1", "vtab/cifar100 (24)": "top1",
    "vtab/clevr_count_all (34)": "top1", "vtab/clevr_closest_object_distance (44)": "top1",
    "country211 (54)": "top1", "vtab/dtd (63)": "top1", "vtab/eurosat (73)": "top1",
    "fgvc_aircraft (83)": "mean_per_class_recall", "food101 (93)": "top1", "gtsrb (102)": "top1",
    "imagenet1k (111)": "top1", "imagenet_sketch (119)": "top1", "imagenetv2 (128)": "top1",
    "imagenet-a (137)": "top1", "imagenet-o (146)": "top1", "imagenet-r (155)": "top1",
    "vtab/kitti_closest_vehicle_distance (164)": "top1", "mnist (174)": "top1", "objectnet (183)": "top1",
    "vtab/flowers (192)": "mean_per_class_recall", "vtab/pets (203)": "mean_per_class_recall",
    "voc2007 (214)": "top1", "vtab/pcam (223)": "top1", "renderedsst2 (233)": "top1", "vtab/resisc45 (242)": "top1",
    "cars (252)": "top1", "stl10 (261)": "top1", "sun397 (270)": "top1", "vtab/svhn (280)": "top1",
    "retrieval/flickr_1k_test_image_text_retrieval (292)": "mean_recall@1",
    "retrieval/mscoco_2014_5k_test_image_text_retrieval (301)": "mean_recall@1",
    "misc/winogavil (310)": "jaccard_score_10-12", "wilds/iwildcam (322)": "F1-macro_all",
    "wilds/camelyon17 (333)": "top1", "wilds/fmow (343)": "acc_worst_region",
    "fairness/dollar_street (356)": "acc_top5_wg", "fairness/geode (366)": "acc_wg",
}
NOT_SCORED = {"datacomp-winogavil", "datacomp-iwildcam", "datacomp-fmow", "datacomp-dollar-street", "datacomp-geode"}


def _probe_name(task_key: str) -> str:
    key = task_key.split(" (")[0]
    if key.startswith("retrieval/"):
        return "datacomp-" + ("flickr" if "flickr" in key else "mscoco")
    return "datacomp-" + key.split("/")[-1].replace("_", "-")


def test_datacomp_38_is_datacomps_task_list_with_its_main_metrics():
    from probe.evaluation.catalogue import Catalogue

    catalogue = Catalogue.load()
    members = catalogue.suites["datacomp-38"].benchmarks
    assert list(members) == [_probe_name(key) for key in DATACOMP_38]
    for key, metric in DATACOMP_38.items():
        entry = catalogue.benchmarks[_probe_name(key)]
        assert entry.main_metric == metric, key
        assert f"tasklist.yml:{key.split('(')[1].rstrip(')')}" in entry.description
        assert bool(entry.unsupported) == (entry.name in NOT_SCORED), key
        if not entry.unsupported and "retrieval" not in key:  # DataComp's download layout and files
            folder = key.split(" (")[0]
            folder = folder.split("/", 1)[1] if folder.startswith("fairness/") else folder
            assert entry.data == f"datacomp/wds_{folder.replace('/', '-')}_test"
            assert entry.hub_repo == f"djghosh/wds_{folder.replace('/', '-')}_test"
            assert (entry.classnames, entry.templates) == ("data:classnames.txt",
                                                           "data:zeroshot_classification_templates.txt")
    assert set(catalogue.suites["datacomp-scorable"].benchmarks) == set(members) - NOT_SCORED


def test_mean_per_class_recall_is_clip_benchmarks_balanced_accuracy():
    from sklearn.metrics import balanced_accuracy_score

    from probe.metrics.zeroshot import mean_per_class_recall, topk_hits

    rng = np.random.default_rng(0)
    images, classes = rng.normal(size=(200, 8)), rng.normal(size=(12, 8))
    labels = np.concatenate([np.arange(12), np.minimum(rng.integers(0, 12, 188), rng.integers(0, 12, 188))])  # unbalanced
    labels[-5:] = -1  # unlabelled: left out, as top-k leaves them out
    hits = topk_hits(images, classes, labels, (1,))[1]
    kept = labels[labels >= 0]
    predicted = (images @ classes.T).argmax(axis=1)[labels >= 0]
    assert mean_per_class_recall(hits, kept) == pytest.approx(balanced_accuracy_score(kept, predicted))
    assert mean_per_class_recall(hits, kept) != pytest.approx(hits.mean())  # unbalanced: differs from top-1


def test_main_scores_are_each_sources_definition():
    from probe.records import keys

    metrics = {keys.retrieval("i2t_R@1"): 0.5, keys.retrieval("t2i_R@1"): 0.3, keys.zeroshot("class", 1): 0.6,
               keys.zeroshot_per_class_recall("class"): 0.4}
    assert keys.main_score(metrics, "mean_recall@1") == ("retrieval/mean_R@1", pytest.approx(0.4))
    assert keys.main_score(metrics, "mean_per_class_recall") == ("zeroshot/mean_per_class_recall", 0.4)
    assert keys.main_score(metrics, "top1") == (keys.ZEROSHOT_MEAN_TOP1, 0.6)
    assert keys.main_score({}, "top1") is None


def test_suites_say_which_members_are_here_missing_or_not_scored(run_cli, tmp_path, monkeypatch):
    import tarfile

    data = tmp_path / "data"
    folder = data / "datacomp" / "wds_cifar10_test"
    (folder / "test").mkdir(parents=True)
    (folder / "classnames.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    (folder / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\na {c}.\n")
    with tarfile.open(folder / "test" / "0.tar", "w") as tar:
        tar.add(__file__, arcname="s0.cls")  # a member, so the shard is not empty
    env = {"PROBE_DATA": str(data)}
    listed = run_cli("benchmarks", "datacomp-38", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    suite = json.loads(listed.stdout)["suites"][0]
    assert suite["here"] == ["datacomp-cifar10"] and set(suite["unsupported"]) == NOT_SCORED
    assert len(suite["missing"]) == 32
    shown = run_cli("benchmarks", "datacomp-38", env=env)
    assert "datacomp-geode: not scored by probe: its main metric, worst-region accuracy" in shown.stdout
    assert "datacomp-gtsrb: missing; get it: probe data get datacomp-gtsrb --allow-download" in shown.stdout
    tiny = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--train", "shapes")
    assert_one_line_error(run_cli("run", *tiny, "--eval", "datacomp-38", env=env),
                          "37 benchmarks cannot be scored here: 32 have no data here (datacomp-caltech101",
                          "5 are not scored by probe (datacomp-winogavil, datacomp-iwildcam",
                          "`probe benchmarks datacomp-38` says how to get each and why")
    assert_one_line_error(run_cli("run", *tiny, "--eval", "datacomp-winogavil", env=env),
                          "benchmark 'datacomp-winogavil' is not scored by probe", "Jaccard")
    from probe.evaluation.benchmarks import prompt_templates
    from probe.evaluation.catalogue import Catalogue

    monkeypatch.setenv("PROBE_DATA", str(data))  # the templates DataComp's download put beside the shards
    assert prompt_templates(Catalogue.load().benchmarks["datacomp-cifar10"]) == ["a photo of a {c}.", "a {c}."]


def test_sail_and_freeze_align_suites_name_their_sources():
    from probe.evaluation.catalogue import Catalogue

    catalogue = Catalogue.load()
    sail = catalogue.suites["sail"]
    assert sail.benchmarks == ("imagenet1k", "imagenetv2", "coco-val2017", "winoground")
    assert catalogue.benchmarks["coco-val2017"].captions_per_image == 5
    freeze = catalogue.suites["freeze-align-datasets"]
    assert len(freeze.benchmarks) == 13 and "not reproduced" in freeze.description
    assert {b for b in freeze.benchmarks if catalogue.benchmarks[b].unsupported} == {"cub", "ucf101"}
