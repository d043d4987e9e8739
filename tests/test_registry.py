from __future__ import annotations

import pytest

from probe.errors import ProbeError
from probe.registry import Registry, natural_sorted, parse_registry_file

MINIMAL = """
modality = "text"
[[model]]
name = "mine/enc"
loader = "sentence-transformers"
weights = "me/enc"
pooling = "mean"
embed_dim = 8
params_m = 1
objective = "contrastive"
license = "MIT"
reference = "mine"
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


def test_builtin_catalogue_covers_the_literature(registry):
    real = lambda m: [s for s in registry.list(["all"], modality=m) if not s.is_control]  # noqa: E731
    assert len(real("vision")) >= 20
    assert len(real("text")) >= 15
    names = set(registry.names())
    for family in ("dinov2", "dino", "mae", "mocov3", "data2vec", "beit", "ijepa", "aimv2", "supervised",
                   "clip", "siglip", "gte", "bge", "e5", "nv-embed", "gte-qwen2", "bert", "roberta", "t5"):
        assert any(n.startswith(family + "/") for n in names), family
    dinov2 = [s.name for s in registry.list(["dinov2/*"])]
    assert {"dinov2/vit-s14", "dinov2/vit-b14", "dinov2/vit-l14", "dinov2/vit-g14"} <= set(dinov2)


def test_family_defaults_fill_entries(registry):
    spec = registry.get("dinov2/vit-s14")
    assert spec.loader == "timm" and spec.pooling == "cls+mean"
    assert spec.mean == (0.485, 0.456, 0.406) and spec.image_size == 224
    assert spec.embed_dim == 2 * 384  # CLS concatenated with mean patch token
    assert registry.get("bge/base-en-v1.5").pooling == "cls"
    assert registry.get("e5/base-v2").text_prefix == "query: "


def test_controls_and_tests_are_marked(registry):
    assert registry.get("baseline/pixels-16").is_control
    assert not registry.get("dinov2/vit-s14").is_control
    assert registry.get("test/tiny-vit").is_test
    assert all(not s.is_test for s in registry.list(["all"]))
    assert any(s.is_test for s in registry.list(["test/*"]))


def test_patterns_and_natural_sort(registry):
    names = [s.name for s in registry.list(["efficientnet/*"])]
    assert names == ["efficientnet/lite0-in1k", "efficientnet/lite1-in1k", "efficientnet/lite2-in1k"]
    assert natural_sorted(["a10", "a9", "a100"]) == ["a9", "a10", "a100"]
    assert {s.family for s in registry.list(["dino*"])} == {"dino", "dinov2"}
    assert all(s.modality == "text" for s in registry.list(["clip/*"], modality="text"))


def test_miss_suggests_close_names(registry):
    with pytest.raises(ProbeError, match=r"no model matches 'dinov2/vit-s16'; did you mean .*dinov2/vit-s14"):
        registry.list(["dinov2/vit-s16"], strict=True)
    with pytest.raises(ProbeError, match=r"did you mean .*dinov2/\*"):
        registry.get("dinov3")


def write(tmp_path, text, name="mine.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_file_loads_and_merges(tmp_path, monkeypatch):
    path = write(tmp_path, MINIMAL)
    spec = parse_registry_file(path)[0]
    assert spec.name == "mine/enc" and spec.revision == "main" and spec.embed_dim == 8
    registry = Registry.load([path])
    assert registry.get("mine/enc").source == str(path)
    monkeypatch.setenv("PROBE_REGISTRY", str(tmp_path))
    assert "mine/enc" in Registry.load().names()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('pooling = "mean"', 'pooling = "mean"\npoolng = "cls"'), "unknown field 'poolng' (did you mean 'pooling'?)"),
        (lambda t: t.replace('embed_dim = 8\n', ""), "missing field(s) embed_dim"),
        (lambda t: t.replace('pooling = "mean"', 'pooling = "max"'), "pooling 'max' is not one of"),
        (lambda t: t.replace("embed_dim = 8", 'embed_dim = "8"'), "must be an integer"),
        (lambda t: t.replace('loader = "sentence-transformers"', 'loader = "keras"'), "loader 'keras' is not one of"),
    ],
)
def test_bad_entry_names_file_and_entry(tmp_path, edit, message):
    path = write(tmp_path, edit(MINIMAL))
    with pytest.raises(ProbeError) as info:
        parse_registry_file(path)
    text = str(info.value)
    assert str(path) in text and "'mine/enc'" in text and message in text


def test_vision_entries_need_preprocessing(tmp_path):
    path = write(tmp_path, MINIMAL.replace('modality = "text"', 'modality = "vision"').replace("mean\"", "cls\""))
    with pytest.raises(ProbeError, match=r"missing field\(s\) image_size, mean, std"):
        parse_registry_file(path)


def test_malformed_toml_and_duplicates(tmp_path):
    with pytest.raises(ProbeError, match="malformed TOML"):
        parse_registry_file(write(tmp_path, "[[model]\nname = ", name="bad.toml"))
    a = write(tmp_path, MINIMAL, name="a.toml")
    b = write(tmp_path, MINIMAL, name="b.toml")
    with pytest.raises(ProbeError, match="defined twice"):
        Registry.load([a, b], include_builtin=False)
    with pytest.raises(ProbeError, match="does not exist"):
        Registry.load([tmp_path / "nope.toml"])


def _timm_pretrained_name(spec) -> str | None:
    """The timm pretrained-config name behind an entry: its hub tag, or its arch's in1k weights."""
    if spec.weights.startswith("timm/"):
        return spec.weights.removeprefix("timm/")
    if spec.loader == "packaged" and spec.arch:
        return spec.arch + ".in1k"
    return None


def test_timm_entries_agree_with_timm_pretrained_configs_or_say_why(registry):
    """timm's pretrained configs ship with timm (no network). An entry either takes the config's
    resolution, crop, interpolation and normalisation, or records whose protocol it follows instead;
    a recorded reason on an entry that in fact agrees is stale and fails too."""
    import timm

    checked = 0
    for spec in registry.list(["*/*"]):
        name = _timm_pretrained_name(spec)
        if name is None:
            continue
        cfg = timm.get_pretrained_cfg(name)
        assert cfg is not None, f"{spec.name}: timm has no pretrained config {name!r}"
        ours = (spec.image_size, spec.crop_pct, spec.interpolation, spec.mean, spec.std)
        theirs = (cfg.input_size[-1], cfg.crop_pct, cfg.interpolation, tuple(cfg.mean), tuple(cfg.std))
        agree = ours[:3] == theirs[:3] and all(
            max(abs(a - b) for a, b in zip(x, y, strict=True)) < 1e-6 for x, y in zip(ours[3:], theirs[3:], strict=True))
        if spec.preprocessing_note:
            assert not agree, f"{spec.name}: agrees with timm's config {name}; drop its preprocessing_note"
            # a note explains a resolution or crop protocol, never different normalisation statistics
            assert spec.mean is not None and spec.std is not None
            assert max(abs(a - b) for a, b in zip(spec.mean + spec.std, cfg.mean + cfg.std, strict=True)) < 1e-6, spec.name
        else:
            assert agree, f"{spec.name}: {ours} differs from timm's {name} config {theirs} with no preprocessing_note"
        checked += 1
    assert checked >= 24  # every timm-hub and packaged timm-arch entry


def test_a_user_file_replaces_a_builtin_entry_only_when_it_says_override(tmp_path):
    builtin = Registry.load().get("test/tiny-bert")
    again = MINIMAL.replace('name = "mine/enc"', 'name = "test/tiny-bert"')
    with pytest.raises(ProbeError, match=r"'test/tiny-bert' is defined twice: .* say.* override = true"):
        Registry.load([write(tmp_path, again)])
    replaced = Registry.load([write(tmp_path, again.replace('pooling = "mean"', 'pooling = "mean"\noverride = true'))])
    spec = replaced.get("test/tiny-bert")
    assert spec.source.endswith("mine.toml") and spec.loader == "sentence-transformers" != builtin.loader
    assert "override" not in spec.to_dict()  # a file's instruction, not part of the entry (nor its cache keys)
    with pytest.raises(ProbeError, match="'override' must be true or false"):
        Registry.load([write(tmp_path, again.replace('pooling = "mean"', 'pooling = "mean"\noverride = "yes"'))])
