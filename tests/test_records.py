"""Typed records: validation, schema migration, one flattener, one best-per-pair rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.align.config import ProbeConfig
from probe.errors import ProbeError
from probe.records import best_by_pair, flatten, iter_records, read_record, record_path, write_record
from probe.records import store as record_store
from probe.records.keys import PROBING_SCORE
from probe.records.schema import SCHEMA_VERSION, AlignmentRecord, EncoderRef, SimilarityRecord

VERSIONS = {"probe": "0", "git": None, "python": "3", "torch": "2", "numpy": "1"}


def ref(name: str) -> dict:
    return {"name": name, "loader": "baseline", "weights": "w", "revision": "main", "objective": "none",
            "params_m": 1.0, "embed_dim": 8, "control": False, "published": {}}


def alignment(dataset: str, vision: str, text: str, score: float, lr: float = 1e-3, benchmark: str | None = None,
              **extra) -> dict:
    config = ProbeConfig(lr=lr).to_dict()
    return {"schema_version": SCHEMA_VERSION, "kind": "alignment", "status": "ok", "error": None, "created": "2026-01-01",
            "versions": VERSIONS, "dataset": dataset, "seed": 0,
            "protocol": "zero-shot transfer" if benchmark else "in-domain",
            "corpus": {"name": dataset, "split": "train", "fingerprint": "f", "n_images": 10, "n_captions": 50,
                       "held_out": "its 'val' split", "description": "d"},
            "benchmark": {"name": benchmark or dataset, "split": "test", "compositional_split": None,
                          "description": "d"},
            "splits": {"fit": "train", "val": "val", "eval": "test", "compositional": None}, "config": config,
            "vision": ref(vision), "text": ref(text), "tasks": ["retrieval"], "features": {"vision": {}, "text": {}},
            "metrics": {PROBING_SCORE: score, "retrieval/i2t_R@1": score / 2},
            "intervals": {PROBING_SCORE: [score - 0.1, score + 0.1]}, "interval_level": 0.95} | extra


def write(folder: Path, data: dict | bytes, name: str) -> Path:
    meta = data if isinstance(data, dict) else {}
    path = folder / "records" / meta.get("kind", "alignment") / meta.get("dataset", "d") / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json.dumps(data).encode() if isinstance(data, dict) else data)
    return path


def test_a_record_round_trips_and_keeps_its_shape(tmp_path):
    data = alignment("shapes", "v", "t", 0.5)
    path = write(tmp_path, data, "a")
    record = read_record(path)
    assert isinstance(record, AlignmentRecord) and isinstance(record.vision, EncoderRef)
    assert record.config == ProbeConfig() and record.metric(PROBING_SCORE) == 0.5
    again = write_record(tmp_path / "copy.json", record)
    assert json.loads(again.read_text()) == json.loads(json.dumps(data))  # nothing added, nothing lost


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d | {"colour": "red"}, "colour: Extra inputs are not permitted"),
    (lambda d: {**d, "vision": ref("v") | {"wieghts": "x"}}, "vision.wieghts"),
    (lambda d: {**d, "config": {**d["config"], "hed": "mlp"}}, "config"),
    (lambda d: {k: v for k, v in d.items() if k != "metrics"}, "must hold metrics"),
    (lambda d: d | {"status": "failed", "metrics": None}, "must say why"),
    (lambda d: d | {"status": "maybe"}, "status"),
    (lambda d: d | {"kind": "vibes"}, "kind"),
    # a score that is not a finite JSON number would rank first (NaN sorts anywhere, Infinity on top)
    (lambda d: d | {"metrics": {PROBING_SCORE: float("nan")}}, "metrics.alignment/probing_score: Input should be a finite number"),
    (lambda d: d | {"metrics": {PROBING_SCORE: float("inf")}}, "finite number"),
    (lambda d: d | {"metrics": {PROBING_SCORE: "0.999"}}, "metrics.alignment/probing_score: Input should be a valid number"),
    (lambda d: d | {"metrics": {PROBING_SCORE: True}}, "valid number"),
    (lambda d: d | {"intervals": {PROBING_SCORE: [float("-inf"), 1.0]}}, "intervals.alignment/probing_score.0"),
])
def test_malformed_records_are_refused_with_the_field(tmp_path, change, fragment):
    path = write(tmp_path, change(alignment("shapes", "v", "t", 0.5)), "bad")
    with pytest.raises(ProbeError, match="malformed") as info:
        read_record(path)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert not record_store.is_complete(path)  # --skip-existing recomputes it instead of trusting it


def test_undecodable_files_are_one_line_errors(tmp_path):
    bad_bytes = write(tmp_path, b"\xff\xfe\x00 not utf-8", "bytes")
    with pytest.raises(ProbeError, match="cannot read result record"):
        read_record(bad_bytes)
    not_object = write(tmp_path, b"[1, 2]", "list")
    with pytest.raises(ProbeError, match="not a JSON object"):
        read_record(not_object)


def test_older_schemas_are_migrated_step_by_step_and_others_refused(tmp_path, monkeypatch):
    from probe.records import schema

    seen = []

    def v2_to_v3(d):
        seen.append(2)
        return {**d, "metrics": {k.replace("alignment/", "align/"): v for k, v in d["metrics"].items()}}

    def v3_to_v4(d):
        seen.append(3)
        return {**d, "metrics": {k.replace("align/", "alignment/"): v for k, v in d["metrics"].items()}}

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 4)
    monkeypatch.setattr(record_store, "MIGRATIONS", {2: v2_to_v3, 3: v3_to_v4})
    monkeypatch.setattr(record_store, "OLDEST_READABLE", 2)
    record = read_record(write(tmp_path, alignment("shapes", "v", "t", 0.25, schema_version=2), "old"))
    assert seen == [2, 3] and record.schema_version == 4 and record.metric(PROBING_SCORE) == 0.25
    monkeypatch.setattr(record_store, "OLDEST_READABLE", 3)
    with pytest.raises(ProbeError, match=r"schema_version 2; this probe reads 3 to 4 \(re-run it"):
        read_record(write(tmp_path, alignment("shapes", "v", "t", 0.25, schema_version=2), "older"))
    with pytest.raises(ProbeError, match=r"schema_version 5; this probe reads 3 to 4 \(upgrade probe"):
        read_record(write(tmp_path, alignment("shapes", "v", "t", 0.25, schema_version=5), "newer"))
    with pytest.raises(ProbeError, match="no integer schema_version"):
        read_record(write(tmp_path, alignment("shapes", "v", "t", 0.25, schema_version="1"), "text"))


def test_schema_5_only_adds_fields_so_schema_4_records_keep_their_identity(tmp_path, monkeypatch):
    """A v4 record (no ``chance``, no ``layer``) is read as v5, and the digest a run gives the same
    inputs is still the v4 one, so `--skip-existing` keeps reusing it; a probe that reads only v4
    refuses a v5 record in one line and leaves it where it is (not quarantined as damaged)."""
    import hashlib

    from probe.records import schema
    from probe.records.identity import identity_digest

    v4 = alignment("shapes", "v", "t", 0.25, schema_version=4, identity="0123456789abcdef0123")
    record = read_record(write(tmp_path, v4, "v4"))
    assert record.schema_version == 5 and record.identity == "0123456789abcdef0123" and record.chance is None
    by_hand = hashlib.sha256(json.dumps({"kind": "alignment", "schema_version": 4, "x": 1}, sort_keys=True)
                             .encode()).hexdigest()[:20]  # the v4 digest rule, written out
    assert identity_digest("alignment", x=1) == by_hand
    newer = write(tmp_path, alignment("shapes", "v", "t2", 0.3, chance={}), "v5")
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 4)
    with pytest.raises(ProbeError, match=r"schema_version 5; this probe reads 1 to 4 \(upgrade probe"):
        read_record(newer)
    assert len(iter_records(tmp_path, "alignment")) == 1 and newer.exists()
    assert not (tmp_path / "quarantine").exists()


#: A version-1 alignment record as probe 0.1.0 wrote it (trimmed history; the layout is exact).
V1_ALIGNMENT = {
    "schema_version": 1, "kind": "alignment", "status": "ok", "error": None, "created": "2026-11-29T19:42:11+00:00",
    "versions": VERSIONS, "dataset": "shapes", "seed": 0,
    "protocol": "probe shapes v3 (procedural; 300/75/150 images, 5 captions each)",
    "splits": {"fit": "train", "val": "val", "eval": "test", "compositional": "winoground"},
    "config": ProbeConfig().to_dict(), "vision": ref("efficientnet/lite0-in1k"),
    "text": ref("sentence-transformers/all-minilm-l6-v2.pypi"), "tasks": ["compositional", "retrieval", "zeroshot"],
    "features": {"vision": {"fit": "train.images.k1"}, "text": {"fit": "train.captions.k2"}},
    "metrics": {PROBING_SCORE: 0.853, "zeroshot/shape_top1": 0.814}, "intervals": {PROBING_SCORE: [0.805, 0.896]},
    "interval_level": 0.95,
    "training": {"device": "cpu", "epochs_run": 2, "best_epoch": 2, "steps": 2,
                 "history": [{"epoch": 1, "loss": 9.1, "val_probing_score": 0.5}, {"epoch": 2, "loss": 8.0}]},
    "timing": {"fit_grid_s": 1.5, "eval_s": 0.2, "grid_size": 1},
}


def test_version_1_records_are_read_as_in_domain_results(tmp_path):
    record = read_record(write(tmp_path, V1_ALIGNMENT, "v1"))
    assert record.schema_version == SCHEMA_VERSION and record.protocol == "in-domain" and record.benchmark.fingerprint is None
    assert record.corpus.name == "shapes" and record.corpus.split == "train" and record.corpus.fingerprint is None
    assert record.corpus.description.startswith("probe shapes v3") and record.corpus.held_out == "its 'val' split"
    assert record.benchmark.label == "shapes/test" and record.benchmark.compositional_split == "winoground"
    assert record.metric(PROBING_SCORE) == 0.853 and record.training.history[1].val_probing_score is None
    selection = {"schema_version": 1, "kind": "selection", "status": "ok", "error": None, "created": "x",
                 "versions": VERSIONS, "dataset": "shapes", "seed": 0, "split": "train",
                 "config": {"metric": "cka", "top": 3, "k": 10, "max_pairs": 5000, "head": None, "loss": None},
                 "ranking": [], "agreement": None}
    assert read_record(write(tmp_path, selection, "sel")).agreements == {}


def test_failure_records_carry_the_reason_and_no_metrics(tmp_path):
    record = SimilarityRecord.new(error="features of v failed: OSError: gone", dataset="shapes", split="train",
                                  seed=0, config={"k": 10, "max_pairs": 5, "n_boot": 1, "n_perm": 1, "pairs": "x"},
                                  vision=ref("v"), text=ref("t"))
    path = write_record(record_path(tmp_path, "similarity", "shapes", "v", "t"), record)
    stored = json.loads(path.read_text())
    assert stored["status"] == "failed" and "metrics" not in stored and stored["error"].startswith("features of v")
    assert not record_store.is_complete(path)


def test_a_non_finite_score_is_refused_on_write_and_never_ranked_on_read(tmp_path):
    fields = {k: v for k, v in alignment("shapes", "v", "t", 0.5).items()
              if k not in ("schema_version", "kind", "status", "error", "created", "versions")}
    with pytest.raises(ProbeError, match=r"metric 'alignment/probing_score' is nan, not a finite number"):
        AlignmentRecord.new(**{**fields, "metrics": {PROBING_SCORE: float("nan")}})
    # an interval with nothing to resample is left out; the score stays
    made = AlignmentRecord.new(**{**fields, "intervals": {PROBING_SCORE: [float("nan"), float("nan")]}})
    assert made.metric(PROBING_SCORE) == 0.5 and made.interval(PROBING_SCORE) is None
    write(tmp_path, alignment("shapes", "v", "t", 0.4), "good")
    for name, value in (("nan", float("nan")), ("inf", float("inf")), ("text", "0.999")):
        write(tmp_path, alignment("shapes", "v", name, 0.5) | {"metrics": {PROBING_SCORE: value}}, name)
    best = best_by_pair(iter_records(tmp_path))
    assert {key[-1]: item.record.metric(PROBING_SCORE) for key, item in best.items()} == {"t": 0.4}
    assert sorted(p.name for p in (tmp_path / "quarantine").rglob("*.json")) == ["inf.json", "nan.json", "text.json"]


def test_best_by_pair_keys_by_dataset_and_benchmark(tmp_path):
    rows = [alignment("shapes", "v", "t", 0.4), alignment("shapes", "v", "t", 0.6, lr=3e-4),
            alignment("digits", "v", "t", 0.1), alignment("shapes", "v", "t2", 0.3),
            alignment("shapes", "v", "t", 0.9, status="failed", error="nan loss", metrics=None)]
    for i, data in enumerate(rows):
        write(tmp_path, data, f"r{i}")
    best = best_by_pair(iter_records(tmp_path))
    got = {key: item.record.metric(PROBING_SCORE) for key, item in best.items()}
    assert got == {("shapes", "shapes/test", "v", "t"): 0.6, ("digits", "digits/test", "v", "t"): 0.1,
                   ("shapes", "shapes/test", "v", "t2"): 0.3}
    write(tmp_path, alignment("shapes", "v", "t", 0.2, benchmark="shapes-ood"), "transfer")
    best = best_by_pair(iter_records(tmp_path))  # a transfer score never competes with an in-domain one
    assert best[("shapes", "shapes-ood/test", "v", "t")].record.metric(PROBING_SCORE) == 0.2
    assert best[("shapes", "shapes/test", "v", "t")].record.metric(PROBING_SCORE) == 0.6


def test_flatten_names_every_config_field_so_grid_rows_differ(tmp_path):
    for i, lr in enumerate((1e-3, 3e-4)):
        write(tmp_path, alignment("shapes", "v", "t", 0.5 + i / 10, lr=lr), f"lr{i}")
    rows = [flatten(s) for s in iter_records(tmp_path)]
    assert sorted(r["lr"] for r in rows) == [3e-4, 1e-3]
    row = next(r for r in rows if r["lr"] == 1e-3)
    assert row["epochs"] == 40 and row["head"] == "linear" and row["benchmark"] == "shapes/test"
    assert row[PROBING_SCORE] == 0.5 and row[f"{PROBING_SCORE}_lo"] == pytest.approx(0.4)
    assert row["path"].endswith("lr0.json") and row["vision"] == "v" and row["vision_control"] is False


def test_leaderboard_sections_rank_each_dataset_and_benchmark_apart():
    from scipy.stats import rankdata

    from probe.report.sections import build_sections, competition_ranks

    def row(dataset, benchmark, vision, score, control=False):
        return {"dataset": dataset, "benchmark": benchmark, "vision": vision, "text": "t", "protocol": "in-domain",
                "vision_control": control, "text_control": False, PROBING_SCORE: score,
                "intervals": {PROBING_SCORE: (score - 0.1, score + 0.1)}}

    rows = [row("shapes", "shapes/test", "v", 0.5), row("shapes", "shapes/test", "w", 0.9),
            row("shapes", "shapes/test", "x", 0.5), row("shapes", "shapes/test", "p", 0.2, control=True),
            row("digits", "digits/test", "v", 0.1), row("digits", "digits/test", "w", 0.3)]
    sections = {(s.dataset, s.benchmark): s for s in build_sections(rows)}
    assert set(sections) == {("shapes", "shapes/test"), ("digits", "digits/test")}  # never one table
    shapes = sections[("shapes", "shapes/test")]
    # real pairs ranked (ties share the better rank); the control is shown last by score, with no rank
    assert [r["vision"] for r in shapes.rows][:1] == ["w"] and [r["rank"] for r in shapes.rows] == [1, 2, 2, None]
    assert shapes.n_controls == 1 and shapes.metric == PROBING_SCORE
    assert shapes.rows[0]["score"] == (PROBING_SCORE, 0.9, pytest.approx(0.8), pytest.approx(1.0))
    assert [r["rank"] for r in sections[("digits", "digits/test")].rows] == [1, 2]
    shown = [c.key for c in shapes.columns]
    assert PROBING_SCORE in shown and "retrieval/i2t_R@1" not in shown  # no column that no row has
    assert "dataset" not in shown and "benchmark" not in shown  # said once in the section's heading
    values = [0.9, 0.7, 0.7, 0.7, 0.2, 0.1, 0.1]
    assert competition_ranks(values) == list(rankdata([-v for v in values], method="min"))


def test_by_benchmark_table_takes_each_benchmarks_primary_score_and_the_mean(tmp_path):
    from probe.report.benchmarks import benchmark_matrix

    write(tmp_path, alignment("shapes", "v", "t", 0.8), "in")
    write(tmp_path, alignment("shapes", "v", "t", 0.4, benchmark="shapes-ood"), "ood")
    classification = alignment("shapes", "v", "t", 0.0, benchmark="toy")
    classification["metrics"] = {"zeroshot/a_top1": 0.5, "zeroshot/b_top1": 0.7}
    classification["intervals"] = {"zeroshot/a_top1": [0.4, 0.6], "zeroshot/b_top1": [0.6, 0.8]}
    write(tmp_path, classification, "toy")
    write(tmp_path, alignment("shapes", "w", "t", 0.9), "partial")  # scored on one benchmark only
    labels, rows = benchmark_matrix(iter_records(tmp_path))
    assert labels == ["shapes-ood/test", "shapes/test", "toy/test"]
    full = next(r for r in rows if r["vision"] == "v")
    assert full["scores"]["shapes/test"]["value"] == 0.8 and full["scores"]["shapes/test"]["protocol"] == "in-domain"
    assert full["scores"]["shapes-ood/test"]["lo"] == pytest.approx(0.3)
    assert full["scores"]["toy/test"] == {"metric": "zeroshot/top1", "value": pytest.approx(0.6), "lo": None,
                                          "hi": None, "protocol": "zero-shot transfer"}
    assert full["mean"] == pytest.approx((0.8 + 0.4 + 0.6) / 3)
    assert next(r for r in rows if r["vision"] == "w")["mean"] is None  # not every benchmark: no mean


def test_selection_compares_each_benchmark_on_its_own_primary_score(tmp_path):
    from probe.ranking import probing_scores

    write(tmp_path, alignment("shapes", "v", "t", 0.8), "in")
    write(tmp_path, alignment("shapes", "v", "t", 0.9, lr=3e-4), "in-lr")
    classification = alignment("shapes", "v", "t", 0.0, benchmark="toy")
    classification["metrics"] = {"zeroshot/a_top1": 0.5, "zeroshot/b_top1": 0.7}
    classification["intervals"] = {}
    write(tmp_path, classification, "toy")
    scores = probing_scores(tmp_path, "shapes")
    assert list(scores) == ["shapes/test", "toy/test"]  # in-domain first
    assert scores["shapes/test"] == {("v", "t"): 0.9} and scores["toy/test"] == {("v", "t"): pytest.approx(0.6)}


def test_doubled_seeds_are_written_once_and_a_newer_record_wins(tmp_path):
    """Names older versions wrote with the seed twice take the one-seed name that
    ProbeConfig.run_tag gives; where both exist, the older file is moved aside, not deleted."""
    from probe.records.renames import rename_older_names, single_seed

    config = ProbeConfig(seed=3, epochs=2, lr=0.01)
    assert config.tag == "linear-siglip-lr0.01-epochs2-seed3" and config.run_tag == "linear-siglip-lr0.01-epochs2-seed3"
    assert ProbeConfig(epochs=2, seed=3, head_init="xavier").run_tag == "linear-siglip-epochs2-head_initxavier-seed3"
    assert single_seed("v__t__linear-siglip-epochs2-seed3-head_initxavier-seed3") == \
        "v__t__" + ProbeConfig(epochs=2, seed=3, head_init="xavier").run_tag
    assert single_seed("v__t__Vuf-Tuu__linear-siglip-seed1-seed1__on-x") == "v__t__Vuf-Tuu__linear-siglip-seed1__on-x"
    for kept in ("v__t__linear-siglip-seed0", "v__t__linear-siglip-seed1-seed2", "v__t__mlp-infonce-seed12"):
        assert single_seed(kept) == kept
    folder = tmp_path / "records" / "alignment" / "shapes"
    folder.mkdir(parents=True)
    (folder / "v__t__linear-siglip-seed1-seed1.json").write_text("older")
    (folder / "v__t__linear-siglip-seed1.json").write_text("newer")
    (folder / "v__t__linear-siglip-seed2-seed2.json").write_text("only")
    tune = tmp_path / "tune" / "shapes" / "v__t__Vuf-Tuu__linear-siglip-seed2-seed2"
    tune.mkdir(parents=True)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert rename_older_names(tmp_path, dry_run=True) == (2, 1)  # counted, nothing moved
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert rename_older_names(tmp_path) == (2, 1)
    assert sorted(p.name for p in folder.iterdir()) == ["v__t__linear-siglip-seed1.json", "v__t__linear-siglip-seed2.json"]
    assert (folder / "v__t__linear-siglip-seed1.json").read_text() == "newer"
    assert (folder / "v__t__linear-siglip-seed2.json").read_text() == "only"
    assert (tmp_path / "quarantine" / "records" / "alignment" / "shapes" / "v__t__linear-siglip-seed1-seed1.json"
            ).read_text() == "older"
    assert (tmp_path / "tune" / "shapes" / "v__t__Vuf-Tuu__linear-siglip-seed2").is_dir()
    assert rename_older_names(tmp_path) == (0, 0)
