"""One file-name rule for records, saved models, tune runs and the feature cache."""

from __future__ import annotations

import json
import random

import pytest

from probe.filenames import MAX_LENGTH, safe_name


def _older_record_rule(text: str) -> str:
    """How versions up to 0.3.0 named record files: letters of any alphabet kept."""
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text)


@pytest.mark.parametrize("given", ["..", ".", "../../etc/passwd", "/etc/passwd", ".hidden", "", "a/../../b", "~/x"])
def test_no_name_leaves_its_folder_or_hides(given, tmp_path):
    name = safe_name(given)
    assert "/" not in name and not name.startswith(".") and name
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_names_keep_what_is_safe_and_map_the_rest():
    assert safe_name("facebook/dinov2-small") == "facebook_dinov2-small"
    assert safe_name("v", "t", "linear-siglip-seed1") == "v__t__linear-siglip-seed1"
    assert safe_name("my data: café 1.0+x") == "my_data__caf__1.0+x"


def test_long_names_fit_and_stay_apart():
    first, second = "a" * 300 + "x", "a" * 300 + "y"
    assert len(safe_name(first)) == len(safe_name(second)) == MAX_LENGTH
    assert safe_name(first) != safe_name(second)
    assert safe_name("b" * MAX_LENGTH) == "b" * MAX_LENGTH  # at the limit: kept whole


def test_mapping_an_older_name_gives_the_name_the_original_gets_now():
    """What `probe migrate` relies on, over names with every kind of character."""
    alphabet = "ab/ .:_-+é日\\x"
    generator = random.Random(0)
    names = ["".join(generator.choice(alphabet) for _ in range(generator.randint(0, 200))) for _ in range(500)]
    for name in names + ["..", ".x", "é" * 170]:
        assert safe_name(_older_record_rule(name)) == safe_name(name), name


def test_records_and_the_cache_name_a_dataset_alike(tmp_path):
    from probe.features.cache import CacheEntry
    from probe.records.store import record_path
    from probe.registry import Registry

    spec = next(iter(Registry.load()))
    entry = CacheEntry(tmp_path, spec, "my data/é", "train", "images", "k")
    record = record_path(tmp_path, "alignment", "my data/é", spec.name, "t", "linear")
    assert entry.dir.parent.name == record.parent.name == "my_data__"
    assert entry.dir.parent.parent.name == record.stem.split("__")[0] == safe_name(spec.name)


def test_migrate_renames_records_an_older_probe_named_with_other_letters(tmp_path):
    from probe.records.renames import rename_older_names
    from probe.records.store import record_path

    old = tmp_path / "records" / "alignment" / "café" / "v__t__linear-siglip.json"
    old.parent.mkdir(parents=True)
    model = tmp_path / "models" / "café" / "v__t__linear-siglip"
    model.mkdir(parents=True)
    old.write_text('{"saved_model": "models/café/v__t__linear-siglip"}')
    assert rename_older_names(tmp_path, dry_run=True) == (2, 0) and old.exists()
    assert rename_older_names(tmp_path) == (2, 0)
    new = record_path(tmp_path, "alignment", "café", "v", "t", "linear-siglip")
    assert new.is_file() and not old.exists() and not old.parent.exists()
    assert json.loads(new.read_text()) == {"saved_model": "models/caf_/v__t__linear-siglip"}
    assert (tmp_path / "models" / "caf_" / "v__t__linear-siglip").is_dir()
    assert rename_older_names(tmp_path) == (0, 0)
