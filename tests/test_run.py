"""``probe run`` end to end on tiny test encoders, and on the real offline models (slow)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, assert_one_line_error

from probe.encoders.base import pick_device
from probe.records import load
from probe.records.schema import VOLATILE

TINY = ("--vision", "test/tiny-vit", "--vision", "test/tiny-vit-wide", "--text", "test/tiny-bert")


@pytest.fixture
def cache(shared_cache):
    return shared_cache


def records(folder) -> dict[str, dict]:
    """The result records of a results folder (saved models sit beside them under models/)."""
    return {p.name: json.loads(p.read_text()) for p in sorted((folder / "records").rglob("*.json"))}


def test_run_writes_one_reproducible_record_per_pair(run_cli, tmp_path, cache):
    env = {"PROBE_CACHE_DIR": str(cache)}
    first = run_cli("run", *TINY, "--epochs", "2", "--results", str(tmp_path / "a"), env=env)
    assert first.returncode == 0, first.stderr
    run_cli("run", *TINY, "--epochs", "2", "--results", str(tmp_path / "b"), env=env)
    a, b = records(tmp_path / "a"), records(tmp_path / "b")
    assert len(a) == 2 and a.keys() == b.keys()
    for name, record in a.items():
        strip = {k: v for k, v in record.items() if k not in VOLATILE}
        assert strip == {k: v for k, v in b[name].items() if k not in VOLATILE}
        assert record["schema_version"] == 5 and record["status"] == "ok" and record["seed"] == 0
        assert record["protocol"] == "in-domain" and record["benchmark"]["name"] == "shapes"
        assert record["corpus"]["n_images"] == 300 and record["corpus"]["n_captions"] == 1500
        assert record["config"]["head"] == "linear" and record["config"]["epochs"] == 2
        assert record["training"]["device"] == pick_device()  # heads train where the encoders ran
        assert record["vision"]["name"].startswith("test/tiny-vit") and record["text"]["name"] == "test/tiny-bert"
        assert record["splits"] == {"fit": "train", "val": "val", "eval": "test", "compositional": "winoground"}
        metrics = record["metrics"]
        for key in ("retrieval/i2t_R@1", "retrieval/t2i_R@10", "alignment/probing_score", "zeroshot/shape_top1",
                    "zeroshot/colour_top5", "compositional/group"):
            assert 0.0 <= metrics[key] <= 1.0, key
        lo, hi = record["intervals"]["alignment/probing_score"]
        assert lo <= metrics["alignment/probing_score"] <= hi
        assert set(record["features"]["text"]) >= {"fit", "eval", "prompts-shape", "prompts-colour"}
    frame = load(tmp_path / "a")
    assert sorted(frame["vision"]) == ["test/tiny-vit", "test/tiny-vit-wide"]
    row = frame[frame["vision"] == "test/tiny-vit"].iloc[0]
    record = next(r for r in a.values() if r["vision"]["name"] == "test/tiny-vit")
    assert row["alignment/probing_score"] == record["metrics"]["alignment/probing_score"]
    assert row["alignment/probing_score_hi"] == record["intervals"]["alignment/probing_score"][1]


def test_skip_existing_finishes_only_what_is_missing(run_cli, tmp_path, cache):
    env = {"PROBE_CACHE_DIR": str(cache)}
    out = tmp_path / "r"
    part = run_cli("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "2",
                   "--results", str(out), env=env)
    assert part.returncode == 0, part.stderr
    (done,) = (out / "records").rglob("*.json")
    stamp = done.stat().st_mtime_ns
    rest = run_cli("run", *TINY, "--epochs", "2", "--results", str(out), "--skip-existing", env=env)
    assert rest.returncode == 0, rest.stderr
    assert "1 written, 0 failed, 1 already there" in rest.stderr
    assert done.stat().st_mtime_ns == stamp and len(records(out)) == 2


def test_skip_existing_recomputes_exactly_the_records_whose_inputs_changed(run_cli, tmp_path, cache):
    """Records are known by their content: a changed pooling in one registry entry makes --skip-existing
    recompute exactly that entry's records (and say why); a record written before records held their
    identity is recomputed too; the others are kept untouched."""
    registry = tmp_path / "mine.toml"
    entry = ('[[model]]\nname = "mine/bert"\nmodality = "text"\nloader = "baseline"\nweights = "random-init"\narch = "bert"\n'
             'objective = "none"\nlicense = "n/a"\nreference = "test fixture"\n'
             'arch_kwargs = { hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 2, intermediate_size = 64 }\n'
             'pooling = "mean"\nmax_length = 32\nembed_dim = 32\nparams_m = 1.0\n')
    registry.write_text(entry)
    env = {"PROBE_CACHE_DIR": str(cache), "PROBE_REGISTRY": str(registry)}
    out = tmp_path / "r"
    args = ("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--text", "mine/bert", "--epochs", "1",
            "--task", "retrieval", "--results", str(out), "--skip-existing")
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    paths = sorted((out / "records").rglob("*.json"))
    assert len(paths) == 2 and all(json.loads(p.read_text())["identity"] for p in paths)
    stamps = {p.name: p.stat().st_mtime_ns for p in paths}
    same = run_cli(*args, env=env)
    assert "0 written, 0 failed, 2 already there" in same.stderr and "recomputed" not in same.stdout
    registry.write_text(entry.replace('pooling = "mean"', 'pooling = "cls"'))
    dry = run_cli(*args, "--dry-run", env=env)
    assert "1 result(s) already there (skipped); 1 there but computed again (their inputs changed)" in dry.stdout
    changed = run_cli(*args, env=env)
    assert changed.returncode == 0, changed.stderr
    assert "recomputed 1 existing record(s) that no longer stand for this run: 1 its inputs changed" in changed.stdout
    assert "1 written, 0 failed, 1 already there" in changed.stderr
    now = {p.name: p.stat().st_mtime_ns for p in paths}
    assert [name for name in now if now[name] != stamps[name]] == [p.name for p in paths if "mine_bert" in p.name]
    mine = next(p for p in paths if "mine_bert" in p.name)
    assert json.loads(mine.read_text())["text"]["name"] == "mine/bert"
    # a record from before identities: recomputed, and said so
    older = next(p for p in paths if "mine_bert" not in p.name)
    record = json.loads(older.read_text())
    del record["identity"]
    older.write_text(json.dumps(record))
    legacy = run_cli(*args, env=env)
    assert "1 written before records held what produced them" in legacy.stdout
    assert json.loads(older.read_text())["identity"]


def test_a_seed_is_named_once_and_older_doubled_names_are_taken_over(run_cli, tmp_path, cache):
    """Seed 1 is named ``...-seed1`` (older versions wrote ``...-seed1-seed1``); ``probe migrate``
    renames a results folder with the older names in place, record, saved model and its path alike, so
    --skip-existing finds the result instead of fitting it again. No other command renames anything:
    a run says how many it does not see and points to the command."""
    from probe.io import write_json

    env = {"PROBE_CACHE_DIR": str(cache)}
    out = tmp_path / "r"
    args = ("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--epochs", "2", "--seed", "1",
            "--results", str(out))
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    (path,) = (out / "records").rglob("*.json")
    assert path.name == "test_tiny-vit__test_tiny-bert__linear-siglip-epochs2-seed1.json"
    record = json.loads(path.read_text())
    model = out / record["saved_model"]
    assert model.name == "test_tiny-vit__test_tiny-bert__linear-siglip-epochs2-seed1" and model.is_dir()
    # as an older version left them: the seed inside the tag and again at its end
    old_model = model.with_name("test_tiny-vit__test_tiny-bert__linear-siglip-seed1-epochs2-seed1")
    model.rename(old_model)
    old = path.with_name("test_tiny-vit__test_tiny-bert__linear-siglip-seed1-epochs2-seed1.json")
    write_json(old, {**record, "saved_model": str(old_model.relative_to(out))})
    path.unlink()
    stamp = old.stat().st_mtime_ns
    dry = run_cli(*args, "--skip-existing", "--dry-run", env=env)  # says so, renames nothing
    assert dry.returncode == 0, dry.stderr
    assert "2 result file(s) and folder(s) in" in dry.stderr and "have an older probe's names" in dry.stderr
    assert "probe migrate" in dry.stderr
    assert old.is_file() and old_model.is_dir() and not path.exists()
    counted = run_cli("migrate", "--results", str(out), "--dry-run")
    assert counted.returncode == 0 and "would rename 2 result file(s) and folder(s)" in counted.stdout
    assert old.is_file() and old_model.is_dir() and not path.exists()
    migrated = run_cli("migrate", "--results", str(out))
    assert migrated.returncode == 0 and "renamed 2 result file(s) and folder(s)" in migrated.stdout
    assert "nothing to migrate" in run_cli("migrate", "--results", str(out)).stdout
    again = run_cli(*args, "--skip-existing", env=env)
    assert again.returncode == 0, again.stderr
    assert "have an older probe's names" not in again.stderr
    assert "0 written, 0 failed, 1 already there" in again.stderr
    assert [p.name for p in (out / "records").rglob("*.json")] == [path.name]
    assert path.stat().st_mtime_ns != stamp  # its saved_model was rewritten ...
    assert (out / json.loads(path.read_text())["saved_model"]) == model and model.is_dir()  # ... to the new folder
    assert {k: v for k, v in json.loads(path.read_text()).items() if k != "saved_model"} == \
        {k: v for k, v in record.items() if k != "saved_model"}


def test_interrupted_run_resumes(tmp_path, cache):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "probe", "run", *TINY, "--head", "linear", "--head", "mlp", "--epochs", "8",
           "--results", str(out)]
    env = {**__import__("os").environ, "PROBE_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(out.rglob("records/**/*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = records(out)
    assert 1 <= len(before) <= 4
    resumed = subprocess.run(cmd + ["--skip-existing"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{4 - len(before)} written, 0 failed, {len(before)} already there" in resumed.stderr
    after = records(out)
    assert len(after) == 4 and all(after[name] == record for name, record in before.items())


BROKEN = ('[[model]]\nname = "mine/broken-vit"\nmodality = "vision"\nloader = "timm"\narch = "vit_tiny_patch16_224"\n'
          'weights = "{weights}"\npooling = "cls"\nimage_size = 32\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n'
          'embed_dim = 192\nparams_m = 5.7\nobjective = "ssl"\nlicense = "x"\nreference = "x"\n')


def test_failures_are_recorded_and_the_sweep_goes_on(run_cli, tmp_path, cache):
    """An entry that passes the up-front check but fails to load (a corrupt checkpoint) becomes a
    failure record; the other pairs are written."""
    out = tmp_path / "r"
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "mine.toml").write_text(BROKEN.format(weights=tmp_path / "garbage.pth"))
    result = run_cli("--registry", str(tmp_path / "mine.toml"), "run", "--vision", "test/tiny-vit",
                     "--vision", "mine/broken-vit", "--text", "test/tiny-bert", "--epochs", "2", "--results", str(out),
                     env={"PROBE_CACHE_DIR": str(cache)})
    assert result.returncode == 1
    assert "1 written, 1 failed" in result.stderr
    by_vision = {r["vision"]["name"]: r for r in records(out).values()}
    assert by_vision["test/tiny-vit"]["status"] == "ok"
    failed = by_vision["mine/broken-vit"]
    assert failed["status"] == "failed" and "features of mine/broken-vit failed" in failed["error"]
    assert "metrics" not in failed


def test_a_named_model_that_cannot_load_is_refused_before_any_work(run_cli, tmp_path):
    out = tmp_path / "r"
    result = run_cli("run", "--vision", "test/tiny-vit", "--vision", "dinov2/vit-s14", "--text", "test/tiny-bert",
                     "--results", str(out))
    assert_one_line_error(result, "model 'dinov2/vit-s14' cannot be loaded here", "--allow-download")
    assert not (out / "records").exists() and not (out / "features").exists()
    # a pattern reaching available and unavailable entries runs the available ones and names the rest once
    pattern = run_cli("select", "--vision", "test/tiny-vit", "--vision", "dinov2/*", "--text", "test/tiny-bert",
                      "--results", str(out), "--max-pairs", "20", "--k", "3", "--n-boot", "0")
    assert pattern.returncode == 0, pattern.stderr
    assert pattern.stderr.count("dinov2/vit-s14") == 1 and "test/tiny-vit" in pattern.stdout


def test_run_bad_input_is_one_line(run_cli, tmp_path):
    tiny = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert")
    assert_one_line_error(run_cli("run", *tiny, "--head", "deep"), "unknown head 'deep'", "linear, mlp, star")
    assert_one_line_error(run_cli("run", *tiny, "--loss", "clip"), "unknown loss 'clip'", "infonce, siglip")
    assert_one_line_error(run_cli("run", *tiny, "--task", "vqa"), "unknown task 'vqa'")
    assert_one_line_error(run_cli("run", "--vision", "nope/*", "--text", "test/tiny-bert"), "no model matches 'nope/*'")
    table = tmp_path / "pairs.csv"
    (tmp_path / "a.png").write_bytes(b"")
    table.write_text("image,caption,split\na.png,a cat,train\na.png,a dog,test\n")
    assert_one_line_error(run_cli("run", *tiny, "-d", f"csv:{table}", "--task", "zeroshot"),
                          "has no class labels", "zero-shot")


@pytest.mark.slow
def test_real_pair_beats_chance_and_the_random_weight_control(run_cli, tmp_path):
    """EfficientNet-Lite0 + all-MiniLM-L6-v2 against the same network with random weights."""
    out = tmp_path / "r"
    result = run_cli("run", "--vision", "efficientnet/lite0-in1k", "--vision", "baseline/random-efficientnet-lite0",
                     "--text", "sentence-transformers/all-minilm-l6-v2.pypi", "--results", str(out),
                     env={"PROBE_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    by_vision = {r["vision"]["name"]: r for r in records(out).values()}
    real = by_vision["efficientnet/lite0-in1k"]["metrics"]
    control = by_vision["baseline/random-efficientnet-lite0"]
    assert control["vision"]["control"] is True
    control_metrics = control["metrics"]
    # chance: 14 shapes -> 0.07 top-1; R@10 over 150 test images / 750 captions -> about 0.07
    assert real["zeroshot/shape_top1"] > 0.5 and real["zeroshot/shape_top1"] > control_metrics["zeroshot/shape_top1"] + 0.2
    assert real["alignment/probing_score"] > 0.6
    assert real["alignment/probing_score"] > control_metrics["alignment/probing_score"] + 0.2
    real_lo = by_vision["efficientnet/lite0-in1k"]["intervals"]["alignment/probing_score"][0]
    assert real_lo > control["intervals"]["alignment/probing_score"][1]  # intervals do not overlap
