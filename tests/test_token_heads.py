"""freeze-align's token-level projectors: their parameter count from the published architecture,
written out by hand, and their forward composed by hand from torch's functional ops."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def test_parameter_count_is_freeze_aligns_for_dinov2_large_and_all_roberta_large():
    """clip_adjustable_combined_vis_cls.py with dinov2-arl-wds-combined.yaml (DINOv2-L and
    all-roberta-large-v1, both 1,024 wide, embed_dim 1,024): three 'patch' projections (LayerNorm,
    then Linear + Linear-GELU-Linear), one 'mlp' ProjectionHead (Linear, Linear, LayerNorm) and the
    temperature."""
    from probe.align.token_heads import freeze_align_projector

    width = out = 1024
    patch = 2 * width + _linear(width, out) + _linear(width, out) + _linear(out, out)  # LayerNorm + Patch_Projection
    head = _linear(width, out) + _linear(out, out) + 2 * out  # ProjectionHead
    expected = 3 * patch + head + 1
    assert expected == 11_553_793
    model = freeze_align_projector(1024, 1024, 1024)
    assert sum(p.numel() for p in model.parameters()) == expected
    # other widths: the ProjectionHead takes the projected tokens, out_dim wide (their :150 builds it
    # for the text encoder's width, which only fits when the two are equal, as in their configuration)
    assert sum(p.numel() for p in freeze_align_projector(384, 768, 512).parameters()) == (
        2 * (2 * 384 + _linear(384, 512) * 2 + _linear(512, 512)) + (2 * 768 + _linear(768, 512) * 2
                                                                     + _linear(512, 512))
        + _linear(512, 512) + _linear(512, 512) + 2 * 512 + 1)


def test_forward_is_the_published_composition():
    """Images: every token projected (LayerNorm, Linear + Linear-GELU-Linear), the tokens after the
    CLS token averaged, plus the raw CLS token projected by its own weights, L2-normalised. Texts:
    every token projected, averaged under the mask, then Linear p, LayerNorm(p + Linear(GELU(p)))."""
    import torch.nn.functional as F  # noqa: N812

    from probe.align.token_heads import freeze_align_projector

    torch.manual_seed(0)
    model = freeze_align_projector(6, 5, 4).eval()  # eval: dropout off
    for p in model.parameters():  # away from LayerNorm's identity start, so the check can fail
        p.data.normal_()
    vision, text = torch.randn(3, 7, 6), torch.randn(3, 4, 5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])

    def patch(x, seq):
        norm, _, proj = seq
        x = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias)
        lin, (a, _, b) = proj.linear_projection[0], proj.non_linear_projection
        return F.linear(x, lin.weight, lin.bias) + F.linear(F.gelu(F.linear(x, a.weight, a.bias)), b.weight, b.bias)

    image = patch(vision, model.local_vision_proj)[:, 1:].mean(1) + patch(vision[:, 0], model.cls_vision_proj)
    tokens = patch(text, model.local_text_proj)
    pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    head = model.text_proj
    p = F.linear(pooled, head.projection.weight, head.projection.bias)
    caption = F.layer_norm(F.linear(F.gelu(p), head.fc.weight, head.fc.bias) + p, p.shape[-1:],
                           head.layer_norm.weight, head.layer_norm.bias)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_images(vision), F.normalize(image, dim=-1))
        torch.testing.assert_close(model.embed_texts(text, mask), F.normalize(caption, dim=-1))
        padded = text.clone()
        padded[0, 3] = 100.0  # a padding token's value never reaches the caption
        torch.testing.assert_close(model.embed_texts(padded, mask)[0], model.embed_texts(text, mask)[0])


def test_temperature_starts_at_0_07_and_is_clamped_before_each_loss():
    from probe.align.token_heads import freeze_align_projector

    model = freeze_align_projector(4, 4, 4)
    assert model.temp.item() == pytest.approx(0.07)
    images, texts = torch.eye(3, 4), torch.eye(3, 4)
    with torch.no_grad():
        model.temp.fill_(5.0)
    loss = model.loss(images, texts)
    assert model.temp.item() == pytest.approx(0.5)
    logits = images @ texts.T / 0.5
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    assert loss.item() == pytest.approx(expected.item())
