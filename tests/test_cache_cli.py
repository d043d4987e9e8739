"""``probe cache list`` and ``probe cache prune``: which entries this probe reads, which it never will."""

from __future__ import annotations

import json
import os
import shutil

from conftest import assert_one_line_error

from probe.features.cache import ENTRY_MARKER


def _bytes(folder) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


def _cache(run_cli, tmp_path):
    """A cache with the tiny ViT's and BERT's entries of shapes/val, then one entry as an older probe
    left it (before the JPEG decoder was in the key), one under a key this probe no longer computes,
    and a stopped extraction."""
    cache = tmp_path / "cache"
    for model in ("test/tiny-vit", "test/tiny-bert"):
        made = run_cli("extract", "-m", model, "-d", "shapes", "--split", "val", "--cache-dir", str(cache),
                       "--workers", "0")
        assert made.returncode == 0, made.stderr
    (vision,) = [p.parent for p in cache.glob("test_tiny-vit/shapes/val.images.*/meta.json")]
    older = vision.with_name("val.images.0123456789abcdef0123")
    shutil.copytree(vision, older)
    meta = json.loads((older / "meta.json").read_text())
    del meta["preprocessing"]["jpeg_decoder"]
    (older / "meta.json").write_text(json.dumps({**meta, "key": "0123456789abcdef0123"}))
    other_key = vision.with_name("val.images.fedcba9876543210fedc")
    shutil.copytree(vision, other_key)
    partial = cache / "test_tiny-vit" / "shapes" / "train.images.00000000000000000000"
    (partial / "chunks").mkdir(parents=True)
    (partial / "chunks" / "00000.npz").write_bytes(b"0" * 1000)
    (partial / ENTRY_MARKER).touch()  # as an extraction stopped after one chunk leaves it
    return cache, vision, older, other_key, partial


def test_list_says_which_entries_are_read_and_why_the_others_are_not(run_cli, tmp_path):
    cache, vision, older, other_key, partial = _cache(run_cli, tmp_path)
    listed = run_cli("cache", "list", "--cache-dir", str(cache), "--json")
    assert listed.returncode == 0, listed.stderr
    entries = {e["path"]: e for e in json.loads(listed.stdout)}
    assert len(entries) == 5
    assert entries[str(vision)]["state"] == "ready" and entries[str(vision)]["rows"] == 75  # shapes/val: 75 images
    assert entries[str(vision)]["bytes"] == _bytes(vision)
    text = next(e for e in entries.values() if e["model"] == "test/tiny-bert")
    assert text["state"] == "ready" and text["rows"] == 375 and text["input_set"] == "captions"  # 5 captions each
    assert entries[str(older)]["state"] == "stale" and "JPEG decoder" in entries[str(older)]["detail"]
    assert entries[str(other_key)]["state"] == "stale" and "key" in entries[str(other_key)]["detail"]
    assert entries[str(partial)]["state"] == "partial" and entries[str(partial)]["detail"] == "1 finished chunk(s)"
    table = run_cli("cache", "list", "--cache-dir", str(cache))
    assert "5 entries" in table.stdout and "2 ready" in table.stdout and "2 stale" in table.stdout
    assert "1 partial" in table.stdout and "`probe cache prune` removes the stale entries" in table.stdout
    only = json.loads(run_cli("cache", "list", "test/*-vit", "--state", "partial", "--cache-dir", str(cache),
                              "--json").stdout)
    assert [e["path"] for e in only] == [str(partial)]  # a partial entry is known by its folder's name
    # a name the cache does not hold is a typo, said so; an empty answer to a --state filter is an answer
    assert_one_line_error(run_cli("cache", "list", "test/tiny-vitt", "--cache-dir", str(cache)),
                          "no entry of a model matching 'test/tiny-vitt'", "did you mean test/tiny-vit?",
                          "it holds test/tiny-bert, test/tiny-vit")
    assert_one_line_error(run_cli("cache", "prune", "-d", "shapez", "--cache-dir", str(cache)),
                          "no entry of dataset 'shapez'", "did you mean shapes?")
    none_stale = run_cli("cache", "list", "test/tiny-bert", "--state", "stale", "--cache-dir", str(cache))
    assert none_stale.returncode == 0 and "0 entries" in none_stale.stdout


def test_prune_removes_stale_entries_and_runs_still_read_the_rest(run_cli, tmp_path):
    cache, vision, older, other_key, partial = _cache(run_cli, tmp_path)
    freed = _bytes(older) + _bytes(other_key)
    dry = run_cli("cache", "prune", "--cache-dir", str(cache), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove 2 stale entries" in dry.stdout and older.is_dir() and other_key.is_dir()
    from probe.io import human_bytes

    pruned = run_cli("cache", "prune", "--cache-dir", str(cache))
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed 2 stale entries of {cache}, freeing {human_bytes(freed)}" in pruned.stdout
    assert not older.exists() and not other_key.exists() and vision.is_dir() and partial.is_dir()
    again = run_cli("extract", "-m", "test/tiny-vit", "-d", "shapes", "--split", "val", "--cache-dir", str(cache),
                    "--workers", "0")
    assert again.returncode == 0 and "from the cache" in again.stderr  # the ready entry still serves
    # an entry an extraction holds is left and counted
    from filelock import FileLock

    with FileLock(str(partial / ".lock")):
        busy = run_cli("cache", "prune", "--state", "partial", "--cache-dir", str(cache))
    assert busy.returncode == 0 and "removed 0 partial entries" in busy.stdout
    assert "left 1 entry that an extraction is writing" in busy.stderr and partial.is_dir()
    gone = run_cli("cache", "prune", "--state", "partial", "--cache-dir", str(cache))
    assert "removed 1 partial entry" in gone.stdout and not partial.exists()


def test_cache_commands_refuse_a_missing_folder_and_bad_states(run_cli, tmp_path):
    from probe.cli.cache import STATES
    from probe.features import inventory

    assert STATES == inventory.STATES  # the command line's copy (it imports no numpy) of the states
    assert_one_line_error(run_cli("cache", "list", "--cache-dir", str(tmp_path / "none")), "no feature cache at")
    assert_one_line_error(run_cli("cache", "prune", "--state", "old", "--cache-dir", str(tmp_path)), "'old'",
                          "ready", "stale", "partial")


def test_a_users_folders_that_look_like_entries_are_never_listed_or_removed(run_cli, tmp_path):
    """``--cache-dir ~/photos`` by mistake: three-deep folders named like ``split.set.key`` (no marker, no
    entry's meta.json), a stray meta.json, and a link out of the folder are left alone."""
    photos = tmp_path / "photos"
    trip = photos / "2024" / "summer" / "trip.to.rome"
    trip.mkdir(parents=True)
    (trip / "IMG_0001.jpg").write_bytes(b"jpeg")
    other = photos / "2023" / "winter" / "ski.in.alps"
    other.mkdir(parents=True)
    (other / "meta.json").write_text('{"camera": "x"}')
    outside = tmp_path / "elsewhere" / "a" / "b"
    outside.mkdir(parents=True)
    (outside / ENTRY_MARKER).touch()
    (photos / "links" / "x").mkdir(parents=True)
    (photos / "links" / "x" / "train.images.0123").symlink_to(outside, target_is_directory=True)
    listed = run_cli("cache", "list", "--cache-dir", str(photos), "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    for state in ("partial", "stale"):
        pruned = run_cli("cache", "prune", "--state", state, "--cache-dir", str(photos))
        assert pruned.returncode == 0, pruned.stderr
    assert (trip / "IMG_0001.jpg").is_file() and (other / "meta.json").is_file() and (outside / ENTRY_MARKER).is_file()
