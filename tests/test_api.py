"""The Python API: the same work and the same one-line errors as the command line, as calls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

import probe
from probe.errors import ProbeError

TINY = dict(epochs=1, tasks=["retrieval"], progress=False)


def test_import_probe_loads_no_torch():
    code = "import sys, probe; probe.run; probe.RunResult; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_run_returns_the_records_the_command_line_writes(tmp_path, shared_cache):
    result = probe.run("test/tiny-vit", "test/tiny-bert", results_dir=tmp_path / "api", cache_dir=shared_cache, **TINY)
    assert len(result.written) == 1 and not result.failed and result.cache_dir == shared_cache
    (record,) = result.records
    assert record.vision.name == "test/tiny-vit" and record.identity and 0 <= record.metrics["alignment/probing_score"] <= 1
    frame = result.to_frame()
    assert frame.loc[0, "alignment/probing_score"] == record.metrics["alignment/probing_score"]
    again = probe.run("test/tiny-vit", "test/tiny-bert", results_dir=tmp_path / "api", cache_dir=shared_cache,
                      skip_existing=True, **TINY)
    assert again.existing == result.written and not again.written
    from probe.api.alignment import head_configs

    # explicit arguments win over a preset's values; what is not given comes from the preset
    (config,) = head_configs("sail-probing", epochs=3)
    assert config.epochs == 3 and config.recipe == "sail-probing" and config.batch_size == 32768 and config.lr == 1e-5


@pytest.mark.parametrize("call, fragment", [
    (lambda tmp: probe.run("nope/vit", "test/tiny-bert", results_dir=tmp), "no model matches 'nope/vit'"),
    (lambda tmp: probe.run("test/tiny-vit", "test/tiny-bert", train="shapes", evals=["imagenet"], results_dir=tmp),
     "unknown benchmark 'imagenet'"),
    (lambda tmp: probe.run("test/tiny-vit", "test/tiny-bert", heads=["deep"], results_dir=tmp), "unknown head 'deep'"),
    (lambda tmp: probe.run("test/tiny-vit", "test/tiny-bert", dataset=f"imagefolder:{tmp / 'missing'}",
                           results_dir=tmp), "missing"),
    (lambda tmp: probe.run("test/tiny-vit", "test/tiny-bert", results_dir=tmp / "file.txt" / "r"),
     "cannot write to"),
])
def test_bad_input_through_the_api_is_a_probe_error_not_an_exit(tmp_path, call, fragment):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    with pytest.raises(ProbeError) as caught:
        call(tmp_path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "records").exists()


def test_the_api_example_runs(tmp_path, shared_cache, monkeypatch):
    monkeypatch.setenv("PROBE_CACHE_DIR", str(shared_cache))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py"), str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=tmp_path, env={**__import__("os").environ})
    assert done.returncode == 0, done.stderr
    assert "best: test/tiny-vit" in done.stdout and "text embeddings (2, 512)" in done.stdout
    assert done.stdout.count("shapes-ood/test") == 2 and "selected before training: [('test/tiny-vit" in done.stdout
    assert (tmp_path / "r" / "reports" / "leaderboard.html").is_file()
    assert "digits/test: probing score" in done.stdout and "(written)" in done.stdout


def test_select_returns_its_ranking_and_record(tmp_path, shared_cache):
    chosen = probe.select(["test/tiny-vit", "test/tiny-vit-wide"], "test/tiny-bert", top=1, k=3, max_pairs=40,
                          n_boot=5, results_dir=tmp_path, cache_dir=shared_cache, progress=False)
    assert len(chosen.candidates) == 2 and len(chosen.selected) == 1 and chosen.path.is_file()
    frame = chosen.to_frame()
    assert list(frame["rank"]) == ["1", "2"] and frame["mutual_knn"].is_monotonic_decreasing
    assert chosen.selected[0] == (frame.loc[0, "vision"], frame.loc[0, "text"])
    with pytest.raises(ProbeError, match="unknown metric|metric 'knn'"):
        probe.select("test/tiny-vit", "test/tiny-bert", metric="knn", results_dir=tmp_path)


def test_models_and_benchmarks_are_rows_the_commands_print(run_cli):
    import json

    rows = probe.models("test/*")
    by_name = {row["name"]: row for row in rows}
    assert by_name["test/tiny-vit"]["available"] is True and by_name["test/tiny-vit"]["modality"] == "vision"
    assert rows == json.loads(run_cli("models", "test/*", "--json").stdout)
    assert all(row["modality"] == "text" for row in probe.models("test/*", modality="text"))
    listed = probe.benchmarks("offline")
    assert [b["name"] for b in listed["benchmarks"]] == ["shapes", "shapes-ood", "digits"]
    assert listed["suites"][0]["suite"] == "offline"
    with pytest.raises(ProbeError, match="unknown benchmark 'imagenet'"):
        probe.benchmarks("imagenet")
    with pytest.raises(ProbeError, match="modality 'audio'"):
        probe.models(modality="audio")


def test_correlate_returns_its_tables(tmp_path, shared_cache):
    probe.run(["test/tiny-vit", "test/tiny-vit-wide"], ["test/tiny-bert"], results_dir=tmp_path,
              cache_dir=shared_cache, **TINY)
    with pytest.raises(ProbeError, match="no successful probing records of heads fitted on 'digits'"):
        probe.correlate(dataset="digits", results_dir=tmp_path, cache_dir=shared_cache, progress=False)
    found = probe.correlate(dataset="shapes", results_dir=tmp_path, cache_dir=shared_cache, progress=False)
    assert set(found.models) == {"test/tiny-vit", "test/tiny-vit-wide", "test/tiny-bert"}
    assert list(found.tables) == ["shapes/test"] and len(found.paths) == 1 and found.paths[0].is_file()
    frame = found.to_frame()
    assert set(frame["benchmark"]) == {"shapes/test"} and {"correlate", "spearman"} <= set(frame.columns)
    # correlates records are known by their content: one whose identity no longer matches is recomputed
    records = {p.stem: p for p in (tmp_path / "records" / "correlates").rglob("*.json")}
    assert len(records) == 3 and all(json.loads(p.read_text())["identity"] for p in records.values())
    stamps = {name: p.stat().st_mtime_ns for name, p in records.items()}
    changed, legacy = records["test_tiny-vit"], records["test_tiny-bert"]
    changed.write_text(json.dumps(json.loads(changed.read_text()) | {"identity": "0" * 20}))
    older = json.loads(legacy.read_text())
    del older["identity"]
    legacy.write_text(json.dumps(older))
    again = probe.correlate(dataset="shapes", results_dir=tmp_path, cache_dir=shared_cache, progress=False)
    assert sorted((p.name, why.split(" (")[0]) for p, why in again.stale) == [
        ("test_tiny-bert.json", "written before records held what produced them"),
        ("test_tiny-vit.json", "its inputs changed")]
    assert records["test_tiny-vit-wide"].stat().st_mtime_ns == stamps["test_tiny-vit-wide"]  # kept as it was
    assert json.loads(changed.read_text())["identity"] != "0" * 20 and json.loads(legacy.read_text())["identity"]
    assert again.models == found.models


def test_extract_reports_each_entry_as_it_is_done(tmp_path):
    seen = []
    entries = probe.extract(["test/tiny-vit", "test/tiny-bert"], dataset="shapes", splits=["val"],
                            cache_dir=tmp_path / "cache", results_dir=tmp_path, progress=False, on_entry=seen.append)
    by_model = {e.model: e for e in entries}
    assert seen == entries and {e.split for e in entries} == {"val"}
    assert by_model["test/tiny-vit"].shape == (75, 64) and by_model["test/tiny-bert"].shape == (375, 32)  # 5 captions
    vit = by_model["test/tiny-vit"]
    assert not vit.stats.from_cache and (vit.path / "meta.json").is_file()
    again = probe.extract("test/tiny-vit", dataset="shapes", splits=["val"], cache_dir=tmp_path / "cache",
                          results_dir=tmp_path, progress=False)
    assert again[0].stats.from_cache and again[0].path == vit.path
    with pytest.raises(ProbeError, match="unknown executor 'rya'"):
        probe.extract("test/tiny-vit", executor="rya")


def test_tune_returns_its_records(tmp_path, shared_cache):
    result = probe.tune("test/tiny-vit", "test/tiny-bert", vision_parts="cls_token", epochs=1, batch_size=64,
                        workers=0, save_models=False, results_dir=tmp_path, cache_dir=shared_cache, progress=False)
    (record,) = result.records
    assert record.kind == "tune" and record.tune.setting and 0 <= record.metrics["alignment/probing_score"] <= 1
    kept = probe.tune("test/tiny-vit", "test/tiny-bert", vision_parts="cls_token", epochs=1, batch_size=64, workers=0,
                      save_models=False, results_dir=tmp_path, cache_dir=shared_cache, progress=False, skip_existing=True)
    assert kept.existing == result.written and not kept.written  # the same identity: kept
    import json

    (path,) = result.written
    path.write_text(json.dumps({**json.loads(path.read_text()), "identity": "0" * 20}))
    redone = probe.tune("test/tiny-vit", "test/tiny-bert", vision_parts="cls_token", epochs=1, batch_size=64,
                        workers=0, save_models=False, results_dir=tmp_path, cache_dir=shared_cache, progress=False,
                        skip_existing=True)
    assert redone.written == [path] and redone.stale == [(path, "its inputs changed (an encoder entry, the "
                                                                "configuration, or the data fitted on or scored)")]
    with pytest.raises(ProbeError, match="give one of --freeze, --grid or --vision-parts"):
        probe.tune("test/tiny-vit", "test/tiny-bert", freeze="V_u^f,T_u^u", grid="to-freeze", results_dir=tmp_path)


def test_migrate_renames_only_when_asked(tmp_path):
    with pytest.raises(ProbeError, match="no results folder at"):
        probe.migrate(tmp_path / "nowhere")
    folder = tmp_path / "records" / "alignment" / "shapes"
    folder.mkdir(parents=True)
    (folder / "v__t__linear-siglip-seed1-seed1.json").write_text("{}")
    counted = probe.migrate(tmp_path, dry_run=True)
    assert (counted.renamed, counted.quarantined) == (1, 0) and "would rename 1" in counted.summary()
    assert (folder / "v__t__linear-siglip-seed1-seed1.json").is_file()
    done = probe.migrate(tmp_path)
    assert done.renamed == 1 and [p.name for p in folder.iterdir()] == ["v__t__linear-siglip-seed1.json"]
    assert "nothing to migrate" in probe.migrate(tmp_path).summary()
