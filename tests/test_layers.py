"""Hidden layers: an entry read at layer k equals a forward pass run by hand to that layer, pooled
the entry's way; a layer out of range or an encoder without readable layers is one line; an entry's
own output keeps its cache key."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _spec(name: str):
    from probe.registry import Registry

    return Registry.load().get(name)


def _pixels(spec, n: int = 3):
    torch.manual_seed(0)
    return torch.rand(n, 3, spec.image_size or 32, spec.image_size or 32)


def test_a_vit_layer_is_its_blocks_run_by_hand_and_pooled_the_entrys_way():
    from probe.encoders import load_encoder
    from probe.encoders.layers import encoder_layers

    spec = _spec("test/tiny-vit")  # cls+mean pooling, 2 blocks, 32 wide
    base = load_encoder(spec, device="cpu")
    assert encoder_layers(base) == [(1, 64), (2, 64)]
    pixels = _pixels(spec)
    model = base.model
    with torch.no_grad():
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(pixels))))
        for layer, block in enumerate(model.blocks, start=1):
            x = block(x)
            by_hand = torch.cat([x[:, 0], x[:, 1:].mean(dim=1)], dim=-1).numpy()
            encoder = load_encoder(spec.at_layer(layer, 64), device="cpu")
            np.testing.assert_allclose(encoder.encode(pixels), by_hand, rtol=1e-5, atol=1e-6)


def test_a_bert_layer_is_its_hidden_state_mean_pooled_under_the_mask():
    from probe.encoders import load_encoder
    from probe.encoders.layers import encoder_layers

    spec = _spec("test/tiny-bert")  # mean pooling, 2 layers, 32 wide
    base = load_encoder(spec, device="cpu")
    assert encoder_layers(base) == [(1, 32), (2, 32)]
    texts = ["a red circle", "two small blue squares on a green field"]
    tokens = base.tokenizer(texts, padding=True, truncation=True, max_length=spec.max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = base.model(**tokens, output_hidden_states=True).hidden_states
    mask = tokens["attention_mask"].numpy()[..., None]
    for layer in (1, 2):
        by_hand = (hidden[layer].numpy() * mask).sum(1) / mask.sum(1)
        got = load_encoder(spec.at_layer(layer, 32), device="cpu").encode(texts)
        np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(load_encoder(spec.at_layer(2, 32), device="cpu").encode(texts), base.encode(texts),
                               rtol=1e-5, atol=1e-6)  # the last layer is the output: BERT adds no final norm


def test_a_cnn_layer_is_its_stage_output_averaged_over_positions():
    from probe.encoders import load_encoder
    from probe.encoders.layers import encoder_layers

    spec = _spec("baseline/random-efficientnet-lite0")
    base = load_encoder(spec, device="cpu")
    layers = encoder_layers(base)
    assert [w for _, w in layers] == [info["num_chs"] for info in base.model.feature_info]
    layer, width = layers[2]
    captured = {}
    module = base.model.get_submodule(base.model.feature_info[layer - 1]["module"])
    module.register_forward_hook(lambda _m, _i, out: captured.setdefault("map", out))
    pixels = _pixels(spec, 2)
    with torch.no_grad():
        base.model.forward_features(pixels.contiguous(memory_format=torch.channels_last))
    by_hand = captured["map"].mean(dim=(2, 3)).numpy()
    got = load_encoder(spec.at_layer(layer, width), device="cpu").encode(pixels)
    np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-5)


def test_layers_are_checked_and_an_entrys_own_output_keeps_its_cache_key():
    from probe.encoders import load_encoder
    from probe.encoders.layers import chosen_layers
    from probe.errors import ProbeError
    from probe.features.cache import spec_fingerprint

    spec = _spec("test/tiny-bert")
    with pytest.raises(ProbeError, match="layer 5 of test/tiny-bert@5 is out of range: it has layers 1 to 2"):
        load_encoder(spec.at_layer(5, 32), device="cpu")
    with pytest.raises(ProbeError, match="gives no hidden layers to read"):
        load_encoder(_spec("baseline/pixels-16").at_layer(1, 768), device="cpu")
    available = [(1, 32), (2, 32), (3, 32)]
    assert chosen_layers(spec, available, "all") == available
    assert chosen_layers(spec, available, "last:2") == [(2, 32), (3, 32)]
    assert chosen_layers(spec, available, "3,1,3") == [(3, 32), (1, 32)]
    for bad, fragment in (("last:4", "has 3 layers"), ("0", "out of range"), ("two", "not all, last:K")):
        with pytest.raises(ProbeError, match=fragment):
            chosen_layers(spec, available, bad)
    assert "layer" not in spec.to_dict()  # cache keys of entries read at their output are unchanged
    assert spec_fingerprint(spec.at_layer(1, 32)) != spec_fingerprint(spec.at_layer(2, 32)) != spec_fingerprint(spec)


def test_select_searches_every_layer_pair_and_refuses_a_layer_an_encoder_lacks(run_cli, tmp_path, shared_cache):
    import json

    from conftest import assert_one_line_error

    env = {"PROBE_CACHE_DIR": str(shared_cache), "PROBE_RESULTS_DIR": str(tmp_path / "r")}
    pair = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--n-boot", "9")
    ran = run_cli("select", *pair, "--layers", "all", env=env)
    assert ran.returncode == 0, ran.stderr
    (path,) = (tmp_path / "r" / "records" / "similarity").rglob("*layers-all*.json")
    record = json.loads(path.read_text())
    found = record["layers"]
    assert found["vision"] == [1, 2] and found["text"] == [1, 2] and found["metric"] == "mutual_knn"
    values = np.array(found["values"])
    i, j = found["vision"].index(found["best"][0]), found["text"].index(found["best"][1])
    assert values.shape == (2, 2) and values[i, j] == values.max() == record["metrics"]["similarity/mutual_knn"]
    assert 0 < found["search_p"] <= 1 and record["null"]["similarity/mutual_knn"]["p_value"] == found["search_p"]
    assert record["timing"]["similarity_s"] > 0
    assert record["config"]["layers"] == {"which": "all", "metric": "mutual_knn"}
    from probe.records.store import read_record

    assert not read_record(path).config.is_default  # kept out of the leaderboard, correlations and forecasts
    assert_one_line_error(run_cli("select", *pair, "--layers", "3", env=env),
                          "layer 3 of test/tiny-vit is out of range: it has layers 1 to 2")
    assert_one_line_error(run_cli("select", "--vision", "baseline/pixels-16", "--text", "test/tiny-bert",
                                  "--layers", "all", env=env), "baseline/pixels-16 gives no hidden layers to read")


@pytest.mark.parametrize("name", ["test/tiny-vit", "test/tiny-bert"])
def test_every_layer_comes_from_one_forward_pass_and_equals_its_own_extraction(name, tmp_path, monkeypatch):
    """extract_layers reads the layers a cache lacks in one pass (a hook counts the model's forward calls:
    one per batch, not one per batch and layer) and writes each layer's own entry, equal to what that
    layer's own extraction writes into another cache; a layer already cached is not computed again."""
    import probe.encoders
    from probe.data import get_dataset
    from probe.encoders.layers import encoder_layers
    from probe.features import ExtractOptions, split_features
    from probe.features.layers import extract_layers
    from probe.features.options import extraction_batch_size
    from probe.registry import Registry

    spec = Registry.load().get(name)
    data = get_dataset("shapes").load("val")
    layers = [spec.at_layer(k, w) for k, w in encoder_layers(probe.encoders.load_encoder(spec, device="cpu"))]
    assert len(layers) == 2
    calls = []
    real = probe.encoders.load_encoder

    def counted(*args, **kwargs):
        encoder = real(*args, **kwargs)
        model = encoder.model  # the network's first module runs once per forward pass, however it is driven
        first = getattr(model, "patch_embed", None) or getattr(model, "embeddings", None)
        first.register_forward_hook(lambda *_: calls.append(1))
        return encoder

    monkeypatch.setattr(probe.encoders, "load_encoder", counted)
    options = ExtractOptions(cache_dir=tmp_path / "together", progress=False, workers=0)
    assert extract_layers(layers, data, options) == layers
    n = data.n_images if spec.modality == "vision" else len(data.captions)
    assert len(calls) == -(-n // extraction_batch_size(spec, options))  # one call per batch, both layers in it
    assert extract_layers(layers, data, options) == [] and len(calls) == -(-n // extraction_batch_size(spec, options))
    apart = ExtractOptions(cache_dir=tmp_path / "apart", progress=False, workers=0)
    for layer in layers:
        together = split_features(layer, data, options)
        assert together.meta["extraction"]["pass"] == f"{spec.name}@1+2" and together.meta["model"] == layer.name
        alone = split_features(layer, data, apart)
        np.testing.assert_allclose(np.asarray(together.features), np.asarray(alone.features), atol=1e-6)
        assert together.path.name == alone.path.name  # the same key: the layer's own
    assert not list((tmp_path / "together").rglob("*1+2*"))  # the wide entry is gone, folders and all


def test_probe_extract_reads_hidden_layers_and_says_what_it_cannot(run_cli, tmp_path):
    from conftest import assert_one_line_error

    cache = str(tmp_path / "cache")
    ran = run_cli("extract", "-m", "test/tiny-vit", "-m", "test/tiny-bert", "-d", "shapes", "--split", "val",
                  "--layers", "all", "--cache-dir", cache)
    assert ran.returncode == 0, ran.stderr
    listed = [line.split()[0] for line in ran.stdout.splitlines() if line.strip()]
    assert sorted(listed) == ["test/tiny-bert@1", "test/tiny-bert@2", "test/tiny-vit@1", "test/tiny-vit@2"]
    assert_one_line_error(run_cli("extract", "-m", "test/tiny-vit", "-d", "shapes", "--layers", "5", "--cache-dir", cache),
                          "layer 5 of test/tiny-vit is out of range: it has layers 1 to 2")
    assert_one_line_error(run_cli("extract", "-m", "baseline/pixels-16", "-d", "shapes", "--layers", "all",
                                  "--cache-dir", cache), "baseline/pixels-16 gives no hidden layers to read")


def test_heads_align_a_chosen_layer_or_the_pair_a_layer_search_found(run_cli, tmp_path, shared_cache):
    import json

    from conftest import assert_one_line_error

    tiny = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--results", str(tmp_path))
    env = {"PROBE_CACHE_DIR": str(shared_cache)}
    assert_one_line_error(run_cli("run", *tiny, "--layer", "best", env=env),
                          "--layer best needs a layer search of test/tiny-vit x test/tiny-bert on shapes")
    assert_one_line_error(run_cli("run", *tiny, "--layer", "7", env=env), "layer 7 of test/tiny-vit is out of range")
    assert_one_line_error(run_cli("run", *tiny, "--layer", "first", "--dry-run", env=env),
                          "--vision-layer 'first' is not a block number (1 or more), last or best")
    searched = run_cli("select", *tiny, "--layers", "all", "--n-boot", "20", env=env)
    assert searched.returncode == 0, searched.stderr
    (search,) = (tmp_path / "records" / "similarity").rglob("*.json")
    best = json.loads(search.read_text())["layers"]["best"]
    ran = run_cli("run", *tiny, "--layer", "best", "--epochs", "1", env=env)
    assert ran.returncode == 0, ran.stderr
    ran = run_cli("run", *tiny, "--vision-layer", "last", "--epochs", "1", env=env)
    assert ran.returncode == 0, ran.stderr
    records = {(r["vision"]["name"], r["text"]["name"]): r for r in
               (json.loads(p.read_text()) for p in (tmp_path / "records" / "alignment").rglob("*.json"))}
    assert set(records) == {(f"test/tiny-vit@{best[0]}", f"test/tiny-bert@{best[1]}"), ("test/tiny-vit@2", "test/tiny-bert")}
    layered = records[("test/tiny-vit@2", "test/tiny-bert")]
    assert layered["vision"]["layer"] == 2 and layered["text"].get("layer") is None
    # the report draws the search: one heatmap per pair, the best pair and its p-value in the caption
    built = run_cli("report", "--results", str(tmp_path), "--out", str(tmp_path / "o"), env=env)
    assert built.returncode == 0, built.stderr
    (shown,) = json.loads((tmp_path / "o" / "leaderboard.json").read_text())["layer_searches"]
    assert shown["best"] == best and shown["vision"] == "test/tiny-vit" and 0 < shown["p_value"] <= 1
    html = (tmp_path / "o" / "leaderboard.html").read_text()
    assert f"at vision layer {best[0]}, text layer {best[1]}; search null" in html
    assert 'alt="layer search of test/tiny-vit x test/tiny-bert on shapes/train"' in html


@pytest.mark.parametrize(("name", "depth", "width"), [
    ("sentence-transformers/all-minilm-l6-v2.pypi", 6, 384),
    ("sentence-transformers/all-mpnet-base-v2.pypi", 12, 768),
])
def test_a_sentence_transformers_layer_is_its_transformers_hidden_state_pooled_the_pipelines_way(name, depth, width):
    """all-MiniLM-L6-v2 and all-mpnet-base-v2 (shipped on PyPI): each layer is the pipeline's
    transformer run by hand with hidden states, mean-pooled under the mask; the last layer, normalised
    as the pipeline's Normalize module does, is the pipeline's output."""
    from probe.encoders import load_encoder
    from probe.encoders.layers import encoder_layers

    spec = _spec(name)
    try:
        base = load_encoder(spec, device="cpu")
    except Exception as exc:  # the packages are installed by the test session (`probe install-offline`)
        pytest.skip(f"{name} is not installed here: {exc}")
    assert encoder_layers(base) == [(k, width) for k in range(1, depth + 1)]
    texts = ["a red circle", "two small blue squares on a green field"]
    from transformers import AutoModel, AutoTokenizer

    from probe.encoders.packaged import packaged_path

    folder = str(packaged_path(spec))  # the transformer loaded by transformers itself, not through the pipeline
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**tokens, output_hidden_states=True).hidden_states
    mask = tokens["attention_mask"].numpy()[..., None]
    for layer in (1, depth // 2, depth):
        by_hand = (hidden[layer].numpy() * mask).sum(1) / mask.sum(1)
        got = load_encoder(spec.at_layer(layer, width), device="cpu").encode(texts)
        np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-5)
    last = load_encoder(spec.at_layer(depth, width), device="cpu").encode(texts)
    np.testing.assert_allclose(last / np.linalg.norm(last, axis=1, keepdims=True), base.encode(texts), atol=1e-5)
