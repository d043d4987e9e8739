"""MTEB tasks run for probe's text encoders (the mteb extra): scored as MTEB scores them, on a small
fixture task in MTEB's own task format, with nothing downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error

from probe.errors import ProbeError

mteb_mocks = pytest.importorskip("mteb.mocks")

PAIRS = [("a red circle", "a red circle", 5.0), ("a red circle", "a crimson round shape", 4.0),
         ("a blue square", "a blue box", 3.5), ("a green triangle", "a green star", 2.0),
         ("a small yellow star", "a large purple circle", 0.5), ("a big blue square", "a tiny red dot", 0.0),
         ("two red circles", "a red circle and another", 4.5), ("a purple triangle", "a violet triangle", 4.0)]


class FixtureSTS(mteb_mocks.MockSTSTask):
    """An STS task in MTEB's format whose data is here: eight caption pairs with graded similarity."""

    metadata = mteb_mocks.MockSTSTask.metadata.model_copy(update={"name": "ProbeFixtureSTS"})
    min_score, max_score = 0, 5

    def load_data(self, num_proc=None, **kwargs):
        from datasets import Dataset, DatasetDict

        self.dataset = DatasetDict({"test": Dataset.from_dict({
            "sentence1": [a for a, _, _ in PAIRS], "sentence2": [b for _, b, _ in PAIRS],
            "score": [s for _, _, s in PAIRS]})})
        self.data_loaded = True


def _spec(name: str):
    from probe.registry import Registry

    return Registry.load().get(name)


def test_an_sts_task_scores_as_spearman_of_cosines_and_is_recorded(tmp_path):
    """MTEB's STS main score is Spearman's rank correlation between the embeddings' cosine and the
    gold scores: computed here by hand from probe's own encoding of the same sentences."""
    from scipy.stats import spearmanr

    from probe.encoders import load_encoder
    from probe.features.batches import encode_inputs
    from probe.mteb_scores import run_mteb
    from probe.records import keys
    from probe.records.store import read_record

    spec = _spec("test/tiny-bert")
    path = run_mteb(spec, [FixtureSTS()], tmp_path, device="cpu")
    record = read_record(path)
    assert record.ok, record.error
    encoder = load_encoder(spec, device="cpu")
    a = encode_inputs(encoder, [p[0] for p in PAIRS], 8).astype(np.float64)
    b = encode_inputs(encoder, [p[1] for p in PAIRS], 8).astype(np.float64)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = spearmanr(cosine, [s for _, _, s in PAIRS]).statistic
    assert record.metrics[f"{keys.TEXT_MTEB}:ProbeFixtureSTS"] == pytest.approx(expected, abs=1e-6)
    assert record.metrics[keys.TEXT_MTEB] == pytest.approx(expected, abs=1e-6)
    assert record.config.main_scores == {"ProbeFixtureSTS": "cosine_spearman"}
    stamp = path.stat().st_mtime_ns
    assert run_mteb(spec, [FixtureSTS()], tmp_path, device="cpu") == path and path.stat().st_mtime_ns == stamp
    run_mteb(spec, [FixtureSTS()], tmp_path, device="cpu", recompute=True)
    assert path.stat().st_mtime_ns != stamp


def test_mteb_bad_input_is_one_line(run_cli, tmp_path):
    from probe.mteb_scores import mteb_tasks, run_mteb

    with pytest.raises(ProbeError, match="unknown MTEB task 'STSBenchmrk'; did you mean STSBenchmark"):
        mteb_tasks(["STSBenchmrk"])
    with pytest.raises(ProbeError, match="vision encoder"):
        run_mteb(_spec("test/tiny-vit"), [FixtureSTS()], tmp_path)
    assert_one_line_error(run_cli("correlate", "--mteb-task", "NoSuchTask", "--results", str(tmp_path)),
                          "unknown MTEB task 'NoSuchTask'")
    control = json.loads(run_mteb(_spec("baseline/tfidf-svd-256"), [FixtureSTS()], tmp_path).read_text())
    assert control["status"] == "failed" and "fitted on a corpus" in control["error"]


def test_the_mteb_score_is_a_text_correlate_beside_the_published_average():
    from probe.correlates import correlation_table
    from probe.records import keys

    probed = {("v1", "t1"): 0.2, ("v1", "t2"): 0.4, ("v1", "t3"): 0.6, ("v2", "t1"): 0.3, ("v2", "t2"): 0.5,
              ("v2", "t3"): 0.7}
    models = {"t1": {keys.TEXT_MTEB: 0.1}, "t2": {keys.TEXT_MTEB: 0.5}, "t3": {keys.TEXT_MTEB: 0.9,
                                                                               "published:mteb_avg": 60.0}}
    rows = {row["correlate"]: row for row in correlation_table(probed, models, {})}
    assert rows["MTEB (tasks run here)"]["n"] == 3 and rows["MTEB (tasks run here)"]["spearman"] == pytest.approx(1.0)
    assert rows["published MTEB avg"]["n"] == 1  # one encoder has a published average: not enough to rank
