"""``probe run --dry-run``: what a sweep would encode and fit, read from the cache and records only."""

from __future__ import annotations

import json

import pytest

from probe.align.config import ProbeConfig
from probe.flops import describe
from probe.pipeline.preview import duration, head_flop_rates

PAIR = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "2")
# shapes, by its documented sizes: train 300 images x 5 captions, val 75, test 150, winoground 80 (one
# caption each); zero-shot prompts: 14 shapes x 6 templates + 8 colours x 5 templates
IMAGES = 300 + 75 + 150 + 80
TEXTS = 5 * (300 + 75 + 150) + 80 + 14 * 6 + 8 * 5


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _row(stdout: str, encoder: str) -> str:
    return next(line for line in stdout.splitlines() if line.strip().startswith(encoder + " "))


def test_a_cold_dry_run_counts_every_input_and_computes_nothing(run_cli, tmp_path):
    cache, results = tmp_path / "cache", tmp_path / "results"
    dry = run_cli("run", *PAIR, "--results", str(results), "--cache-dir", str(cache), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: no model loaded, nothing computed" in dry.stdout
    assert f"{IMAGES} images" in _row(dry.stdout, "test/tiny-vit") and "0 of 4" in _row(dry.stdout, "test/tiny-vit")
    assert f"{TEXTS:,} texts" in _row(dry.stdout, "test/tiny-bert") and "0 of 6" in _row(dry.stdout, "test/tiny-bert")
    assert "unknown: no rate on cpu yet" in _row(dry.stdout, "test/tiny-vit")
    assert "154.9 KB" in _row(dry.stdout, "test/tiny-vit")  # 605 rows x 64 float32
    assert f"to encode: {IMAGES} images and {TEXTS:,} texts" in dry.stdout
    # 1,500 training captions // batch 256 = 5 steps per epoch, 2 epochs; no earlier fit to time it by
    assert "head fits: 1 (1 pair(s) x their configurations), at most 10 optimiser steps each" in dry.stdout
    assert "1 fit(s) of a head kind no earlier fit on cpu timed" in dry.stdout
    assert "1 pair(s) to fit, 1 result(s) to score" in dry.stdout
    assert not cache.exists() and not results.exists()  # no folder made, no feature, record or model written


def test_a_dry_run_refuses_a_folder_the_run_could_not_write(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    dry = run_cli("run", *PAIR, "--results", str(blocker / "results"), "--dry-run")
    assert dry.returncode == 2 and "Traceback" not in dry.stderr
    assert f"cannot write to {blocker / 'results'} ({blocker} is not a folder)" in dry.stderr
    assert "--results" in dry.stderr


def test_after_a_run_the_dry_run_finds_its_features_records_and_rates(run_cli, tmp_path):
    cache, results = tmp_path / "cache", tmp_path / "results"
    done = run_cli("run", *PAIR, "--results", str(results), "--cache-dir", str(cache), "--extract-batch-size", "10")
    assert done.returncode == 0, done.stderr
    before = _files(cache)
    again = run_cli("run", *PAIR, "--results", str(results), "--cache-dir", str(cache), "--dry-run", "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert "to encode: 0 images and 0 texts" in again.stdout
    assert "0 pair(s) to fit, 0 result(s) to score; 1 result(s) already there (skipped)" in again.stdout
    refit = run_cli("run", *PAIR, "--results", str(results), "--cache-dir", str(cache), "--dry-run")
    assert "1 of them are already there and would be written again" in refit.stdout
    (path,) = (results / "records" / "alignment").rglob("*.json")
    record = json.loads(path.read_text())
    rate = record["cost"]["head_train_flops"] / record["timing"]["fit_grid_s"]
    assert f"at the rates earlier fits on cpu reached (linear {describe(rate)}/s)" in refit.stdout
    # the same fit again: its estimate is the recorded fit's own time, scaled to the steps it may take
    from probe.pipeline.preview import preview_fits
    from probe.pipeline.runner import Job
    from probe.registry import Registry

    registry = Registry.load()
    job = Job((registry.get("test/tiny-vit"), registry.get("test/tiny-bert")), ((ProbeConfig(epochs=2), "shapes"),))
    fits = preview_fits([job], 1500, results, "cpu")
    assert fits.steps == (10,) and fits.untimed == 0
    assert fits.seconds == pytest.approx(record["timing"]["fit_grid_s"] * 10 / record["cost"]["optimizer_steps"])
    assert "4 of 4" in _row(refit.stdout, "test/tiny-vit") and "nothing" in _row(refit.stdout, "test/tiny-vit")
    assert _files(cache) == before

    # the train split's entry stopped after its first chunk (4 batches of 10 = 40 images): 260 left
    (train,) = cache.glob("test_tiny-vit/shapes/train.images.*")
    meta = json.loads((train / "meta.json").read_text())
    for name in ("meta.json", "features.npy", "index.npy"):
        (train / name).unlink()
    (train / "chunks").mkdir()
    (train / "chunks" / "00000.npz").write_bytes(b"finished chunk")
    partial = run_cli("run", *PAIR, "--results", str(results), "--cache-dir", str(cache), "--dry-run",
                      "--extract-batch-size", "10")
    row = _row(partial.stdout, "test/tiny-vit")
    assert "3 of 4, 1 partial" in row and "260 images" in row
    extract = run_cli("extract", "-m", "test/tiny-vit", "-d", "shapes", "--cache-dir", str(cache), "--batch-size", "10",
                      "--dry-run")
    assert extract.returncode == 0, extract.stderr
    assert _row(extract.stdout, "test/tiny-vit").split() == row.split()  # the same four splits, seen alike
    assert "to encode: 260 images and 0 texts" in extract.stdout
    # the estimate uses the rate the largest remaining entry (test, 150 images) measured, on this device kind
    (test,) = cache.glob("test_tiny-vit/shapes/test.images.*")
    how = json.loads((test / "meta.json").read_text())["rate"]
    assert how["device"] == "cpu" and how["rows"] == 150 and meta["rate"]["rows"] == 300
    rate = how["rows"] / how["seconds"]
    shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
    assert f"~{duration(260 / rate)} ({shown} images/s on cpu)" in row
    # an entry measured on another kind of device says nothing about this one
    for meta_path in cache.glob("test_tiny-vit/shapes/*/meta.json"):
        data = json.loads(meta_path.read_text())
        data["rate"]["device"] = "cuda:0"
        meta_path.write_text(json.dumps(data))
    elsewhere = run_cli("run", *PAIR, "--results", str(results), "--cache-dir", str(cache), "--dry-run",
                        "--extract-batch-size", "10")
    assert "unknown: no rate on cpu yet" in _row(elsewhere.stdout, "test/tiny-vit")


def test_a_float32_entry_counts_as_cached_for_a_float16_request(run_cli, tmp_path):
    results = tmp_path / "mine"  # extract and run both keep the cache in <results>/features
    for model in ("test/tiny-vit", "test/tiny-bert"):
        made = run_cli("extract", "-m", model, "-d", "shapes", "--results", str(results), "--dtype", "float32",
                       "--workers", "0", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    assert not (tmp_path / "results").exists() and (results / "features" / "test_tiny-vit").is_dir()
    half = run_cli("run", *PAIR, "--results", str(results), "--dtype", "float16", "--dry-run")
    assert half.returncode == 0, half.stderr
    assert "4 of 4" in _row(half.stdout, "test/tiny-vit")  # float32 serves float16, rounded on read
    assert "4 of 6" in _row(half.stdout, "test/tiny-bert")  # the prompts were never extracted


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (12, 600, 3 * 3600 + 1800, 5 * 86400)] == ["12 s", "10 min", "3.5 h", "5.0 days"]


def _record(folder, name, vision, text, config, seconds, flops, device="cpu", status="ok"):
    from probe.io import write_json

    write_json(folder / f"{name}.json", {
        "status": status, "dataset": "shapes", "vision": {"name": vision}, "text": {"name": text}, "config": config,
        "cost": {"device": device, "head_train_flops": flops}, "timing": {"fit_grid_s": seconds}})


def test_head_rates_pool_the_grids_of_one_head_kind_on_one_device_kind(tmp_path):
    folder = tmp_path / "records" / "alignment" / "shapes"
    folder.mkdir(parents=True)
    fast, slow = {"head": "linear", "lr": 0.001}, {"head": "linear", "lr": 0.0003}
    star = {"head": "star", "lr": 0.001}
    # one grid of two configurations, the first scored on two benchmarks: its FLOPs count once
    _record(folder, "a1", "v1", "t1", fast, 2.0, 4e9)
    _record(folder, "a1-ood", "v1", "t1", fast, 2.0, 4e9)
    _record(folder, "a2", "v1", "t1", slow, 2.0, 2e9)
    _record(folder, "b", "v2", "t1", fast, 1.0, 1e9)
    # a grid of two head kinds cannot say which took the time; a failed fit and a GPU fit say nothing of the CPU
    _record(folder, "c1", "v1", "t2", fast, 5.0, 1e9)
    _record(folder, "c2", "v1", "t2", star, 5.0, 1e9)
    _record(folder, "d", "v2", "t2", fast, 9.0, 1e9, status="failed")
    _record(folder, "e", "v2", "t2", star, 0.5, 8e9, device="cuda:0")
    assert head_flop_rates(tmp_path, "cpu") == pytest.approx({"linear": (4e9 + 2e9 + 1e9) / (2.0 + 1.0)})
    assert head_flop_rates(tmp_path, "cuda:1") == pytest.approx({"star": 8e9 / 0.5})
