"""Terminal tables never cut a value: at 80, 100 and 160 columns every name, path and number a
listing prints is whole on one line; prose wraps at spaces; what does not fit is left out, said so,
or printed one entry per line."""

from __future__ import annotations

import json

import pytest

from probe.cli.tables import print_table

WIDTHS = (80, 100, 160)


def _lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def _whole(values, lines) -> list[str]:
    """The values that no single line holds whole."""
    return [v for v in values if not any(v in line for line in lines)]


@pytest.mark.parametrize("width", WIDTHS)
def test_values_are_whole_prose_wraps_and_optional_columns_go_first(width, capsys):
    names = ["sentence-transformers/paraphrase-multilingual-mpnet-base-v2", "efficientnet/lite0-in1k"]
    rows = [[n, "1280", "3,021 x 1280", "a long description that may wrap at spaces " * 2] for n in names]
    print_table(["name", "dim", "rows x dim", "what"], rows, prose=("what",), optional=("what",), width=width)
    lines = _lines(capsys)
    assert not _whole([*names, "1280", "3,021 x 1280"], lines)
    assert all(len(line.rstrip()) <= width for line in lines)
    if width == 80:  # 60 + 4 + 12 + 11 (the prose's longest word) + 3 gaps of 2 = 93: the optional prose goes
        assert "left out at 80 columns: what" in lines[-1]
    else:  # and otherwise wraps at spaces, each word whole
        assert not _whole(["description", "spaces"], lines) and len([w for w in lines if "long" in w]) >= 2


def test_a_table_too_wide_for_any_column_set_is_printed_one_entry_per_line(capsys):
    path = "/very/long/path/" + "x" * 70 + "/features.npy"
    print_table(["model", "path", "size"], [["vision/encoder-with-a-long-name", path, "1.2 GB"]], title="cache",
                width=60)
    lines = _lines(capsys)
    assert lines[0] == "cache" and lines[1] == "vision/encoder-with-a-long-name"
    assert any(path in line for line in lines) and "  size: 1.2 GB" in lines


@pytest.mark.parametrize("width", WIDTHS)
def test_listings_keep_every_model_name_and_number_whole(run_cli, width, shared_cache):
    env = {"COLUMNS": str(width), "PROBE_CACHE_DIR": str(shared_cache)}
    models = run_cli("models", env=env)
    assert models.returncode == 0, models.stderr
    listed = json.loads(run_cli("models", "--json").stdout)
    names = [m["name"] for m in listed]
    lines = models.stdout.splitlines()
    assert not _whole(names, lines) and not _whole([str(m["embed_dim"]) for m in listed], lines)
    benchmarks = run_cli("benchmarks", env=env)
    rows = json.loads(run_cli("benchmarks", "--json").stdout)["benchmarks"]
    assert not _whole([r["name"] for r in rows] + [r["data"] for r in rows], benchmarks.stdout.splitlines())
    select = run_cli("select", "--vision", "test/tiny-vit", "--vision", "baseline/pixels-16", "--text", "test/tiny-bert",
                     "--show-controls", "--n-boot", "2", env={**env, "PROBE_RESULTS_DIR": str(shared_cache.parent / f"sel{width}")})
    assert select.returncode == 0, select.stderr
    assert not _whole(["test/tiny-vit", "baseline/pixels-16 (control)", "test/tiny-bert"], select.stdout.splitlines())
    cache = run_cli("cache", "list", env=env)
    entries = json.loads(run_cli("cache", "list", "--json", env={"PROBE_CACHE_DIR": str(shared_cache)}).stdout)
    assert entries and not _whole(sorted({e["model"] for e in entries}), cache.stdout.splitlines())


@pytest.mark.parametrize("width", WIDTHS)
def test_prose_columns_keep_every_word_whole(run_cli, width):
    """Several prose columns, one with long unbreakable words (file paths): rich left to itself narrowed
    such a column below its longest word and cropped the word (`probe presets` lost 'ned.yaml')."""
    import probe

    shown = run_cli("presets", env={"COLUMNS": str(width)})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    words = {w.strip(",;()") for p in probe.presets() for text in (p["source"], p["description"]) for w in text.split()}
    assert not _whole(sorted(w for w in words if len(w) > 3), lines)
    assert all(len(line.rstrip()) <= width for line in lines)


def test_log_lines_go_through_the_progress_bars_writer_and_bar_labels_stay_short(monkeypatch):
    """A line logged while a bar is drawn is written by tqdm.write (above the bar, not into it); a long
    label is cut in the middle to 32 characters so the bar's counts and ETA fit a 100-column line."""
    import logging

    from tqdm import tqdm

    from probe.cli import _log_to_stderr
    from probe.features.batches import bar_label

    written = []
    monkeypatch.setattr(tqdm, "write", classmethod(lambda cls, s, file=None, **kw: written.append(s)))
    _log_to_stderr()
    logging.getLogger("probe").warning("a line while a bar runs")
    assert written == ["a line while a bar runs"]
    label = bar_label("sentence-transformers/paraphrase-multilingual-mpnet-base-v2 shapes/train")
    assert len(label) == 32 and label.endswith("shapes/train") and label.startswith("sentence")
    assert bar_label("tiny shapes/val") == "tiny shapes/val"
