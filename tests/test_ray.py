"""`--executor ray`: the same cache entries and records as the local executor, failures recorded,
bad input refused in one line. The test starts a local Ray instance itself and shuts it down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_one_line_error

ray = pytest.importorskip("ray")

TINY = ("--vision", "test/tiny-vit", "--vision", "baseline/pixels-16", "--text", "test/tiny-bert", "--epochs", "2",
        "--lr", "1e-3", "--lr", "3e-4")


@pytest.fixture(scope="module")
def ray_address():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _records(results: Path) -> dict[str, dict]:
    out = {}
    for path in (results / "records" / "alignment").rglob("*.json"):
        record = json.loads(path.read_text())
        out[path.relative_to(results).as_posix()] = record
    return out


def _entries(cache: Path) -> dict[str, bytes]:
    return {p.relative_to(cache).as_posix(): p.read_bytes() for p in cache.rglob("features.npy")}


def test_ray_writes_the_local_executors_features_and_records(run_cli, tmp_path, ray_address):
    local = run_cli("run", *TINY, "--results", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    remote = run_cli("run", *TINY, "--results", str(tmp_path / "ray"), "--executor", "ray",
                     "--ray-address", ray_address)
    assert remote.returncode == 0, remote.stderr
    assert "4 written, 0 failed" in remote.stderr
    # the same content-addressed entries, bit for bit
    local_entries, ray_entries = _entries(tmp_path / "local" / "features"), _entries(tmp_path / "ray" / "features")
    assert local_entries.keys() == ray_entries.keys() and len(local_entries) >= 6
    assert all(local_entries[k] == ray_entries[k] for k in local_entries)
    # the same records under the same names, metric for metric
    mine, theirs = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert mine.keys() == theirs.keys() and len(mine) == 4
    for name, record in mine.items():
        assert theirs[name]["metrics"] == record["metrics"] and theirs[name]["intervals"] == record["intervals"]
    assert len(list((tmp_path / "ray" / "models").rglob("heads.safetensors"))) == 4  # saved heads too


def test_a_failing_pair_on_ray_is_a_failure_record_and_a_rerun_completes(run_cli, tmp_path, ray_address):
    from test_run import BROKEN

    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "mine.toml").write_text(BROKEN.format(weights=tmp_path / "garbage.pth"))
    args = ("--registry", str(tmp_path / "mine.toml"), "run", "--vision", "test/tiny-vit", "--vision",
            "mine/broken-vit", "--text", "test/tiny-bert", "--epochs", "2", "--results", str(tmp_path / "r"),
            "--executor", "ray", "--ray-address", ray_address, "--skip-existing")
    first = run_cli(*args)
    assert first.returncode == 1 and "1 written, 1 failed" in first.stderr, first.stderr
    failed = [r for r in _records(tmp_path / "r").values() if r["status"] == "failed"]
    assert len(failed) == 1 and "mine/broken-vit" in failed[0]["error"]
    again = run_cli(*args[:2], "run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "2",
                    "--results", str(tmp_path / "r"), "--executor", "ray", "--ray-address", ray_address,
                    "--skip-existing")
    assert again.returncode == 0 and "0 written, 0 failed, 1 already there" in again.stderr, again.stderr


def test_bad_executor_input_is_one_line(run_cli, tmp_path, monkeypatch):
    pair = ("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--results", str(tmp_path))
    assert_one_line_error(run_cli(*pair, "--executor", "rya"), "unknown executor 'rya'", "local, ray")
    assert_one_line_error(run_cli(*pair, "--ray-address", "10.0.0.1:6379"), "--ray-address needs --executor ray")
    unreachable = run_cli(*pair, "--executor", "ray", "--ray-address", "127.0.0.1:9", timeout=60)
    assert_one_line_error(unreachable, "--ray-address 127.0.0.1:9", "nothing answers there within 15 s")
    assert_one_line_error(run_cli(*pair, "--executor", "ray", "--ray-address", "head"), "is not HOST:PORT")
    assert not (tmp_path / "records").exists()  # refused before any work
    import sys

    from probe.errors import ProbeError
    from probe.pipeline.ray_executor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ProbeError, match=r"needs Ray, which is not installed: pip install 'probe\[ray\]'"):
        import_ray()


def test_a_cache_that_a_node_cannot_see_is_refused(tmp_path, ray_address, monkeypatch):
    from probe.errors import ProbeError
    from probe.pipeline import ray_executor

    executor = ray_executor.RayExecutor(shared=(tmp_path / "cache",))
    # a node that mounts another filesystem: it looks for the marker and does not find it
    monkeypatch.setattr(ray_executor, "_sees", lambda path, name: ("10.9.9.9", False))
    with pytest.raises(ProbeError, match=r"cache is not visible from the Ray node\(s\) 10\.9\.9\.9"):
        executor.connect()
    assert not list((tmp_path / "cache").iterdir())  # the marker is cleaned up


def test_extraction_on_ray_matches_local_and_keeps_finished_chunks(run_cli, tmp_path, ray_address):
    import numpy as np

    from probe.data import get_dataset
    from probe.features import ExtractOptions, split_features, split_inputs
    from probe.features.extract import chunk_plan, entry_for
    from probe.io import write_npz
    from probe.registry import Registry

    local = run_cli("extract", "-m", "test/tiny-vit", "-d", "shapes", "--split", "val", "--batch-size", "8",
                    "--cache-dir", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    # a run killed after its first chunk: that chunk is on disk (marked, to see that it is kept)
    spec, data = Registry.load().get("test/tiny-vit"), get_dataset("shapes").load("val")
    options = ExtractOptions(cache_dir=tmp_path / "ray", batch_size=8, progress=False)  # chunks of 32 images
    reference = split_features(spec, data, ExtractOptions(cache_dir=tmp_path / "local", progress=False))
    inputs, content, name, fit_texts = split_inputs(spec, data)
    entry, _, dtype = entry_for(spec, data.dataset, data.split, name, content, options, fit_texts)
    ranges, _ = chunk_plan(spec, inputs, options)
    assert len(ranges) >= 3
    first = np.asarray(reference.dense(len(inputs)))[ranges[0].start:ranges[0].stop]
    entry.chunks.mkdir(parents=True)
    write_npz(entry.chunk_path(0), features=first + 1.0, ids=np.arange(ranges[0].start, ranges[0].stop),
              bad=np.zeros(0, dtype=np.int64), errors=np.asarray([""]))
    remote = run_cli("extract", "-m", "test/tiny-vit", "-d", "shapes", "--split", "val", "--batch-size", "8",
                     "--cache-dir", str(tmp_path / "ray"), "--executor", "ray", "--ray-address", ray_address)
    assert remote.returncode == 0, remote.stderr
    assert "assembled from chunks computed on Ray" in remote.stdout
    assembled = split_features(spec, data, options)
    got = assembled.dense(len(inputs))
    want = reference.dense(len(inputs))
    # the actors timed their chunks; the chunk left by the killed run (written untimed, as before chunks
    # were timed) is not counted in the rate
    rate = assembled.meta["rate"]
    assert rate["rows"] == len(inputs) - len(ranges[0]) and rate["device"] == "cpu" and rate["seconds"] > 0
    np.testing.assert_array_equal(got[ranges[0].start:ranges[0].stop], first + 1.0)  # kept, not recomputed
    np.testing.assert_array_equal(got[ranges[1].start:], want[ranges[1].start:])  # the rest computed on Ray


def _kill_chunk_writers() -> int:
    """SIGKILL every Ray Data actor process holding an encoder (their titles name the actor class)."""
    import os
    import signal

    killed = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes().replace(b"\0", b" ")
        except OSError:  # the process ended meanwhile
            continue
        pid = int(cmdline.parent.name)
        if pid != os.getpid() and b"_ChunkWriter" in title:
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def test_killing_a_worker_mid_extraction_leaves_a_correct_cache(tmp_path, ray_address):
    """A worker killed while it writes chunks: the chunks finished before stay, the run completes
    (Ray restarts the actor and retries its chunk) or a rerun does, and the entry equals the local
    executor's bit for bit."""
    import threading
    import time

    import numpy as np

    if not Path("/proc").is_dir():
        pytest.skip("finds the worker's process through /proc (Linux)")
    from probe.data import get_dataset
    from probe.features import ExtractionStats, ExtractOptions, split_features, split_inputs
    from probe.features.extract import entry_for
    from probe.pipeline.ray_extract import ray_split_features
    from probe.registry import Registry

    spec, data = Registry.load().get("test/tiny-vit"), get_dataset("shapes").load("train")
    # one batch of 2 images per chunk: 150 chunks, so there is a middle to kill the worker in
    options = ExtractOptions(cache_dir=tmp_path / "ray", batch_size=2, chunk_batches=1, workers=0, progress=False)
    reference = split_features(spec, data, ExtractOptions(cache_dir=tmp_path / "local", batch_size=2, progress=False))
    inputs, content, name, fit_texts = split_inputs(spec, data)
    entry, _, _ = entry_for(spec, data.dataset, data.split, name, content, options, fit_texts)
    outcome: dict = {}

    def extract() -> None:
        try:
            outcome["stats"] = ExtractionStats()
            ray_split_features(spec, data, options, concurrency=1, stats=outcome["stats"])
        except Exception as exc:  # a run that gives up is allowed: the rerun below must then complete
            outcome["error"] = exc

    driver = threading.Thread(target=extract)
    driver.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (entry.chunks.is_dir() and len(list(entry.chunks.glob("*.npz"))) >= 20):
        time.sleep(0.05)
    finished_before = len(list(entry.chunks.glob("*.npz"))) if entry.chunks.is_dir() else 0
    assert 20 <= finished_before < 150, "the extraction was not caught in its middle"
    assert _kill_chunk_writers() >= 1
    driver.join(timeout=300)
    assert not driver.is_alive()
    stats = ExtractionStats()
    final = ray_split_features(spec, data, options, concurrency=1, stats=stats)  # a rerun
    if "error" in outcome:  # it gave up: the rerun kept every chunk finished before the kill
        assert stats.reused_chunks >= finished_before and stats.computed_chunks == 150 - stats.reused_chunks
    else:  # Ray restarted the actor: the rerun found the entry complete
        assert stats.from_cache and outcome["stats"].computed_chunks + outcome["stats"].reused_chunks == 150
    n = len(inputs)
    np.testing.assert_array_equal(final.dense(n), reference.dense(n))
    assert final.meta["flops_per_input"] == reference.meta["flops_per_input"] > 0  # measured by the actors


@pytest.fixture
def not_ray():
    """Local servers that accept connections but are not Ray: one silent, one greeting like SSH."""
    import socket
    import threading

    servers, stop = {}, threading.Event()

    def serve(name: str, reply: bytes | None) -> None:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        servers[name] = f"127.0.0.1:{server.getsockname()[1]}"

        def loop():
            held = []
            while not stop.is_set():
                try:
                    connection, _ = server.accept()
                except OSError:
                    continue
                held.append(connection)
                if reply is not None:
                    connection.sendall(reply)
            for connection in held:
                connection.close()
            server.close()

        threading.Thread(target=loop, daemon=True).start()

    serve("silent", None)
    serve("ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    yield servers
    stop.set()


def test_an_address_that_is_not_ray_is_refused_in_one_line_within_the_timeout(run_cli, tmp_path, not_ray, ray_address):
    import time

    from probe.errors import ProbeError
    from probe.pipeline.ray_executor import HANDSHAKE_TIMEOUT, check_reachable

    with pytest.raises(ProbeError, match=r"not an HTTP/2 SETTINGS frame"):
        check_reachable(not_ray["ssh"])
    check_reachable(ray_address)  # a real Ray head's GCS answers the greeting
    pair = ("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--results", str(tmp_path))
    started = time.monotonic()
    silent = run_cli(*pair, "--executor", "ray", "--ray-address", not_ray["silent"], timeout=120)
    assert_one_line_error(silent, f"--ray-address {not_ray['silent']}: something answers there, but not Ray",
                          f"no answer to an HTTP/2 greeting within {HANDSHAKE_TIMEOUT:.0f} s")
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 30  # the interpreter's start included
    assert not (tmp_path / "records").exists()


def test_probe_tune_runs_on_ray_through_the_pair_runner(run_cli, tmp_path, ray_address, shared_cache):
    """probe tune goes through the same runner as probe run, so --executor ray runs each pair's tune runs
    as Ray tasks and writes the records a local run writes."""
    common = ("tune", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--vision-parts", "cls_token",
              "--text-parts", "none", "--epochs", "1", "--batch-size", "64", "--workers", "0", "--cache-dir",
              str(shared_cache), "--no-save-models")
    local = run_cli(*common, "--results", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    on_ray = run_cli(*common, "--results", str(tmp_path / "ray"), "--executor", "ray", "--ray-address", ray_address)
    assert on_ray.returncode == 0, on_ray.stderr
    assert "done: 1 written, 0 failed, 0 already there" in on_ray.stderr
    here = {p.name: json.loads(p.read_text()) for p in (tmp_path / "local" / "records" / "tune").rglob("*.json")}
    there = {p.name: json.loads(p.read_text()) for p in (tmp_path / "ray" / "records" / "tune").rglob("*.json")}
    assert here.keys() == there.keys() and len(here) == 1
    for name, record in here.items():
        assert there[name]["metrics"] == pytest.approx(record["metrics"], abs=1e-6)
