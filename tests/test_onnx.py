"""The onnx loader family on the real graphs that ship on PyPI (installed by `probe install-offline`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from probe.encoders import load_encoder
from probe.errors import ProbeError
from probe.registry import Registry

SSCD = ("sscd/resnet50-disc-mixup.onnx-int8", "sscd/mobilenetv4-conv-s-distilled.onnx-int8")
MINILM_L3 = "sentence-transformers/paraphrase-minilm-l3-v2.onnx"


@pytest.fixture(scope="module")
def registry():
    return Registry.load()


@pytest.mark.parametrize("name", SSCD)
def test_sscd_finds_each_photo_by_its_flipped_and_cropped_copy(registry, name):
    from skimage import data

    photos = [Image.fromarray(getattr(data, n)()).convert("RGB")
              for n in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")]
    encoder = load_encoder(registry.get(name), device="cpu")
    transform = encoder.transform()
    copies = [ImageOps.mirror(p.crop((p.width // 10, p.height // 10, p.width, p.height))) for p in photos]
    a = encoder.encode(torch.stack([transform(p) for p in photos]))
    b = encoder.encode(torch.stack([transform(p) for p in copies]))
    assert a.shape == (6, 512) and a.dtype == np.float32 and np.isfinite(a).all()
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    similarity = a @ b.T
    assert (similarity.argmax(axis=1) == np.arange(6)).all()  # every photo's nearest copy is its own
    assert np.diag(similarity).min() > similarity[~np.eye(6, dtype=bool)].max() + 0.3


def test_paraphrase_minilm_pools_as_the_graph_does_and_ranks_paraphrases_first(registry):
    import onnx

    spec = registry.get(MINILM_L3)
    encoder = load_encoder(spec, device="cpu")
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today.",
             "Share prices dropped a lot this morning.", "a red circle on a grey background"]
    ours = encoder.encode(texts)
    tokens = encoder.tokenizer(texts, padding=True, return_tensors="np")
    (graph_pooled,) = encoder.session.run(["461"], {k: tokens[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    np.testing.assert_allclose(ours, graph_pooled, atol=1e-5)  # probe's mean pooling = the model's own
    unit = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    s = unit @ unit.T
    assert s[0, 1] > max(s[0, 2], s[0, 3], s[0, 4]) + 0.2 and s[2, 3] > max(s[2, 0], s[2, 1], s[2, 4]) + 0.2
    # the borrowed tokenizer's vocabulary is the graph's: its word-embedding table has as many rows
    from probe.encoders.onnx_encoder import graph_path

    tables = [t for t in onnx.load(str(graph_path(spec))).graph.initializer if len(t.dims) == 2 and t.dims[1] == 384]
    assert max(t.dims[0] for t in tables) == len(encoder.tokenizer) == 30522


def test_wrong_names_and_missing_files_are_one_line(registry, tmp_path):
    import dataclasses

    spec = registry.get(SSCD[1])
    wrong_output = dataclasses.replace(spec, model_kwargs={**spec.model_kwargs, "output": "features"})
    with pytest.raises(ProbeError, match=r"the graph has no output 'features'; its outputs: embedding$"):
        load_encoder(wrong_output, device="cpu")
    wrong_input = dataclasses.replace(spec, model_kwargs={**spec.model_kwargs, "input": "pixel_values"})
    with pytest.raises(ProbeError, match=r"the graph has no input 'pixel_values'; its inputs: image$"):
        load_encoder(wrong_input, device="cpu")
    missing = dataclasses.replace(spec, weights=str(tmp_path / "gone.onnx"))
    from probe.encoders.loadable import check

    assert not check(missing).ok and "gone.onnx not found" in check(missing).reason
    truncated = tmp_path / "cut.onnx"
    from probe.encoders.onnx_encoder import graph_path

    truncated.write_bytes(graph_path(spec).read_bytes()[:5000])
    with pytest.raises(ProbeError, match="cannot load its ONNX graph"):
        load_encoder(dataclasses.replace(spec, weights=str(truncated)), device="cpu")
