from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, assert_one_line_error
from PIL import Image

from probe.data import get_dataset
from probe.features import ExtractionStats, ExtractOptions, get_features, split_features
from probe.registry import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


def test_cache_hit_skips_the_encoder_and_returns_same_numbers(registry, tmp_path):
    spec = registry.get("test/tiny-vit")
    data = get_dataset("shapes").load("val")
    first = split_features(spec, data, ExtractOptions(cache_dir=tmp_path, batch_size=32, workers=0, progress=False))
    assert first.features.shape == (data.n_images, 64) and first.meta["dtype"] == "float32"
    stats = ExtractionStats()
    again = split_features(spec, data, ExtractOptions(cache_dir=tmp_path, progress=False, device="no-such-device"),
                           stats=stats)  # the encoder is never built on a hit
    assert stats.from_cache and np.array_equal(first.features, again.features)
    meta = json.loads((first.path / "meta.json").read_text())
    for key in ("spec", "revision", "pooling", "preprocessing", "content_fingerprint", "dtype", "shape",
                "probe_version", "format_version"):
        assert key in meta
    # how this process computed it, so its "seconds" can be read; the chunks' rows and wall time
    assert meta["extraction"] == {"device": "cpu", "batch_size": 32, "workers": 0, "decode": "workers"}
    assert meta["rate"]["device"] == "cpu" and meta["rate"]["rows"] == 75
    assert 0 < meta["rate"]["seconds"] <= meta["seconds"]


def test_key_changes_with_dtype_and_preprocessing(registry, tmp_path):
    import dataclasses

    spec = registry.get("test/tiny-vit")
    data = get_dataset("shapes").load("val")

    def options(cache, **kw):
        return ExtractOptions(cache_dir=cache, workers=0, progress=False, **kw)

    a = split_features(spec, data, options(tmp_path))  # "auto" on a CPU: float32
    assert a.features.dtype == np.float32
    half = split_features(spec, data, options(tmp_path / "half", dtype="float16"))  # a cache of its own
    c = split_features(dataclasses.replace(spec, crop_pct=0.8), data, options(tmp_path))
    assert half.features.dtype == np.float16 and a.path != c.path and a.path.name != half.path.name
    assert not np.allclose(a.features, c.features)
    # the rule: a float32 entry serves a float16 request, rounded on read to exactly what a float16 entry holds
    stats = ExtractionStats()
    served = split_features(spec, data, options(tmp_path, dtype="float16"), stats=stats)
    assert stats.from_cache and served.path == a.path
    n = data.n_images
    np.testing.assert_array_equal(served.dense(n), half.dense(n))
    np.testing.assert_array_equal(half.dense(n), np.asarray(a.features).astype(np.float16).astype(np.float32))
    # ... and a float16 entry never serves a float32 request
    stats = ExtractionStats()
    wide = split_features(spec, data, options(tmp_path / "half", dtype="float32"), stats=stats)
    assert not stats.from_cache and wide.features.dtype == np.float32
    np.testing.assert_array_equal(wide.dense(n), a.dense(n))


def test_truncated_entry_is_detected_and_recomputed(registry, tmp_path):
    spec = registry.get("test/tiny-bert")
    data = get_dataset("shapes").load("val")
    first = split_features(spec, data, ExtractOptions(cache_dir=tmp_path, progress=False))
    expected = np.array(first.features)  # a copy: the entry's array maps the file damaged below
    path = first.path / "features.npy"
    path.write_bytes(path.read_bytes()[:-100])
    stats = ExtractionStats()
    again = split_features(spec, data, ExtractOptions(cache_dir=tmp_path, progress=False), stats=stats)
    assert not stats.from_cache and stats.computed_chunks > 0
    assert np.array_equal(expected, again.features)
    # a flipped byte (same size) is caught by the checksum
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    stats = ExtractionStats()
    split_features(spec, data, ExtractOptions(cache_dir=tmp_path, progress=False), stats=stats)
    assert not stats.from_cache


def test_get_features_api(tmp_path):
    feats = get_features("test/tiny-bert", "shapes", "winoground", cache_dir=tmp_path, progress=False)
    assert feats.shape == (80, 32) and feats.dtype == np.float32


def _extract_cmd(cache, *extra):
    return [sys.executable, "-m", "probe", "extract", "-m", "baseline/random-vit-s16", "-d", "shapes",
            "--split", "val", "--batch-size", "8", "--workers", "0", "--cache-dir", str(cache), *extra]


@pytest.mark.slow
def test_killed_extraction_resumes_bit_for_bit(tmp_path):
    cache = tmp_path / "killed"
    proc = subprocess.Popen(_extract_cmd(cache), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cache.rglob("chunks/*.npz"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in cache.rglob("chunks/*.npz"))
    assert 2 <= len(finished) < 5 and not list(cache.rglob("meta.json"))
    resumed = subprocess.run(_extract_cmd(cache), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished)} chunk(s) resumed" in resumed.stdout
    clean = subprocess.run(_extract_cmd(tmp_path / "clean"), cwd=ROOT, capture_output=True, text=True)
    assert clean.returncode == 0
    a = np.load(next(cache.rglob("features.npy")))
    b = np.load(next((tmp_path / "clean").rglob("features.npy")))
    assert a.shape == (75, 768) and np.array_equal(a, b)
    # the killed process's chunks kept their timing: the entry's rate covers every row, not only the
    # resumed ones (a dry run estimates from it)
    rate = json.loads(next(cache.rglob("meta.json")).read_text())["rate"]
    assert rate["rows"] == 75 and rate["device"] == "cpu" and rate["seconds"] > 0


@pytest.mark.slow
def test_concurrent_runs_share_one_entry(tmp_path):
    cache = tmp_path / "cache"
    procs = [subprocess.Popen(_extract_cmd(cache), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    entries = list(cache.rglob("meta.json"))
    assert len(entries) == 1
    assert sum("cached" in out for out, _ in outs) == 1  # the second run waited, then reused
    assert np.load(entries[0].parent / "features.npy").shape == (75, 768)


def _folder_with_bad_images(root):
    for name, colour in (("a", (255, 0, 0)), ("b", (0, 255, 0))):
        path = root / "train" / "thing" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), colour).save(path)
    (root / "train" / "thing" / "c.png").write_bytes(b"not a png at all")
    return f"imagefolder:{root}"


def test_bad_images_skipped_and_listed_or_fail(run_cli, tmp_path):
    dataset = _folder_with_bad_images(tmp_path / "imgs")
    cache = tmp_path / "cache"
    ok = run_cli("extract", "-m", "test/tiny-vit", "-d", dataset, "--cache-dir", str(cache), "--workers", "0")
    assert ok.returncode == 0, ok.stderr
    assert "1 bad image(s) skipped" in ok.stdout
    meta = json.loads(next(cache.rglob("meta.json")).read_text())
    assert meta["shape"] == [2, 64] and meta["skipped"][0]["index"] == 2 and "c.png" in meta["skipped"][0]["input"]
    fail = run_cli("extract", "-m", "test/tiny-vit", "-d", dataset, "--cache-dir", str(tmp_path / "c2"),
                   "--on-bad-image", "fail", "--workers", "0")
    assert_one_line_error(fail, "bad image #2", "c.png")


def test_extract_bad_input_is_one_line(run_cli, tmp_path):
    assert_one_line_error(run_cli("extract", "-m", "test/tiny-vit", "-d", "cifar10"), "unknown dataset 'cifar10'")
    assert_one_line_error(run_cli("extract", "-m", "test/tiny-vit", "-d", f"imagefolder:{tmp_path}/none"),
                          "does not exist")
    assert_one_line_error(run_cli("extract", "-m", "dinov2/vit-s14", "-d", "shapes"),
                          "model 'dinov2/vit-s14' cannot be loaded here", "PROBE_ALLOW_DOWNLOAD")
    assert_one_line_error(run_cli("extract", "-m", "nope/*"), "no model matches 'nope/*'")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    assert_one_line_error(run_cli("extract", "-m", "test/tiny-vit", "-d", f"imagefolder:{tmp_path / 'empty'}"),
                          "is empty")
    assert_one_line_error(run_cli("extract", "-m", "test/tiny-vit", "--split", "dev"), "has no split 'dev'")


def test_float16_storage_refuses_features_beyond_its_range(registry):
    from probe.errors import ProbeError
    from probe.features.extract import _check_half_range

    spec = registry.get("test/tiny-vit")
    _check_half_range(spec, np.array([[65504.0, -1.0, np.nan]], dtype=np.float32))  # the largest float16 fits
    with pytest.raises(ProbeError, match=r"reach 7e\+04, beyond float16's range .* --dtype float32"):
        _check_half_range(spec, np.array([[1.0, -70000.0]], dtype=np.float32))


@pytest.mark.parametrize(("device", "cores", "gpus", "want"), [
    ("cpu", 64, 1, 2),          # the encoder's threads use the cores on a CPU
    ("cuda", 16, 1, 14),        # the GPU's cores less the main process and the pinning thread
    ("cuda:0", 128, 1, 16),     # at most 16
    ("cuda", 128, 8, 14),       # one process per GPU: each takes its share (Ray shows each task one GPU)
    ("cuda", 4, 1, 2),          # never fewer than on a CPU
])
def test_default_workers_follow_the_device_and_the_cores(monkeypatch, device, cores, gpus, want):
    from probe.features import options

    monkeypatch.setattr(options.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(options, "_gpus_on_machine", lambda: gpus)
    assert options.default_workers(device) == want
    assert options.resolved_workers(None, device) == want
    assert options.resolved_workers(5, device) == 5  # asked for: as asked


def test_workers_help_states_the_default(run_cli):
    result = run_cli("run", "--help")
    assert result.returncode == 0
    assert "[default: 2 on a CPU; on a GPU its share of the machine's cores less two, at most 16]" in " ".join(result.stdout.split())


def test_extraction_queues_the_next_batch_before_reading_the_last_one_back():
    """On a GPU encoded_batches keeps one batch in flight: batch i + 1 is taken, decoded and queued
    before batch i's features are read back; on a CPU each batch is read back before the next is
    taken. Every batch comes out in order with its own rows."""
    from probe.features.batches import encoded_batches

    log: list[str] = []

    class Queued:
        device = "cuda:0"  # only named: nothing here runs on a GPU

        def encode_queued(self, batch):
            k = int(batch[0, 0])
            log.append(f"queue {k}")

            def read():
                log.append(f"read {k}")
                return np.asarray(batch, dtype=np.float32) * 2

            return read

    import torch

    batches = [([3 * k, 3 * k + 1], torch.full((2, 4), float(k)), [(3 * k + 2, "bad")]) for k in range(3)]
    batches.insert(2, ([], None, [(99, "all bad")]))  # a batch with nothing to encode

    def loader():
        for batch in batches:
            log.append("take")
            yield batch

    out = list(encoded_batches(Queued(), loader(), None))
    assert log == ["take", "queue 0", "take", "queue 1", "read 0", "take", "read 1", "take", "queue 2", "read 2"]
    on_cpu = Queued()
    on_cpu.device = "cpu"
    log.clear()
    assert [ids for ids, _, _ in encoded_batches(on_cpu, loader(), None)] == [ids for ids, _, _ in out]
    assert log == ["take", "queue 0", "read 0", "take", "queue 1", "read 1", "take", "take", "queue 2", "read 2"]
    assert [ids for ids, _, _ in out] == [[0, 1], [3, 4], [], [6, 7]]
    assert out[2][1] is None and out[2][2] == [(99, "all bad")]
    for (_, feats, bad), k in zip([o for o in out if o[1] is not None], range(3), strict=True):
        assert feats.shape == (2, 4) and (feats == 2 * k).all() and bad == [(3 * k + 2, "bad")]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_read_back_from_a_gpu_waits_for_the_copy():
    import torch

    from probe.encoders.base import read_back

    values = torch.randn(512, 768, device="cuda")
    np.testing.assert_array_equal(read_back(values * 3)(), (values * 3).cpu().numpy())
