"""Losses and heads against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probe.align.heads import make_head
from probe.align.losses import infonce, make_loss, siglip
from probe.errors import ProbeError

IMAGE = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
TEXT = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
# <image_i, text_j>: [[0.6, 0.0], [0.8, 1.0]]


def nll(pos: list[float], all_: list[float]) -> float:
    return -math.log(sum(math.exp(x) for x in pos) / sum(math.exp(x) for x in all_))


def test_infonce_one_positive_per_row_is_clip_loss():
    # scale 2: logits [[1.2, 0], [1.6, 2]]
    rows = nll([1.2], [1.2, 0.0]) + nll([2.0], [1.6, 2.0])
    cols = nll([1.2], [1.2, 1.6]) + nll([2.0], [0.0, 2.0])
    expected = 0.5 * (rows / 2 + cols / 2)
    got = infonce(IMAGE, TEXT, torch.eye(2, dtype=torch.bool), torch.tensor(math.log(2.0)))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_infonce_several_positives_counts_their_total_probability():
    positives = torch.tensor([[True, True], [False, True]])
    rows = nll([1.2, 0.0], [1.2, 0.0]) + nll([2.0], [1.6, 2.0])  # the first is 0: every candidate is positive
    cols = nll([1.2], [1.2, 1.6]) + nll([0.0, 2.0], [0.0, 2.0])
    got = infonce(IMAGE, TEXT, positives, torch.tensor(math.log(2.0)))
    assert got.item() == pytest.approx(0.5 * (rows / 2 + cols / 2), rel=1e-6)


def test_infonce_gradients_equal_the_dense_masked_formula():
    torch.manual_seed(1)
    image = torch.nn.functional.normalize(torch.randn(9, 5, dtype=torch.float64), dim=1).requires_grad_()
    text = torch.nn.functional.normalize(torch.randn(7, 5, dtype=torch.float64), dim=1).requires_grad_()
    log_scale = torch.tensor(math.log(20.0), dtype=torch.float64, requires_grad=True)
    mask = torch.rand(9, 7) < 0.3
    mask[0], mask[:, 0] = False, False  # a row and a column without positives take no part
    mask[1, 1] = mask[2, 2] = True
    infonce(image, text, mask, log_scale).backward()
    leaves = [t.detach().clone().requires_grad_() for t in (image, text, log_scale)]
    logits = leaves[2].exp() * leaves[0] @ leaves[1].T
    masked = logits.masked_fill(~mask, float("-inf"))
    rows, cols = mask.any(1), mask.any(0)
    i2t = (torch.logsumexp(logits, 1) - torch.logsumexp(masked, 1))[rows].mean()
    t2i = (torch.logsumexp(logits, 0) - torch.logsumexp(masked, 0))[cols].mean()
    (0.5 * (i2t + t2i)).backward()
    for ours, ref in zip((image, text, log_scale), leaves, strict=True):
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-10, atol=1e-12)


def test_infonce_logit_scale_is_clamped_at_100():
    big = infonce(IMAGE, TEXT, torch.eye(2, dtype=torch.bool), torch.tensor(math.log(1000.0)))
    at_cap = infonce(IMAGE, TEXT, torch.eye(2, dtype=torch.bool), torch.tensor(math.log(100.0)))
    assert big.item() == pytest.approx(at_cap.item())


def test_siglip_matches_the_paper_formula():
    t, b = math.log(10.0), -10.0
    sims = [[0.6, 0.0], [0.8, 1.0]]
    labels = [[1, -1], [-1, 1]]
    total = sum(-math.log(1 / (1 + math.exp(-labels[i][j] * (10 * sims[i][j] + b)))) for i in range(2) for j in range(2))
    got = siglip(IMAGE, TEXT, torch.eye(2, dtype=torch.bool), torch.tensor(t), torch.tensor(b))
    assert got.item() == pytest.approx(total / 2, rel=1e-6)
    # several positives: the off-diagonal (0, 1) becomes a positive pair
    labels[0][1] = 1
    total = sum(-math.log(1 / (1 + math.exp(-labels[i][j] * (10 * sims[i][j] + b)))) for i in range(2) for j in range(2))
    positives = torch.tensor([[True, True], [False, True]])
    assert siglip(IMAGE, TEXT, positives, torch.tensor(t), torch.tensor(b)).item() == pytest.approx(total / 2, rel=1e-6)


def test_loss_modules_start_from_the_published_values():
    clip = make_loss("infonce")
    assert clip.log_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-5)
    sig = make_loss("siglip")
    assert sig.log_scale.item() == pytest.approx(math.log(10))
    assert sig.bias.item() == pytest.approx(-10.0)
    with pytest.raises(ProbeError, match="unknown loss 'clip'; valid: infonce, siglip"):
        make_loss("clip")


def test_heads_compute_their_formulas():
    torch.manual_seed(0)
    x = torch.randn(5, 6)
    ln = ((x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)).numpy()

    linear = make_head("linear", 6, 3)
    w, b = linear[1].weight.detach().numpy(), linear[1].bias.detach().numpy()
    np.testing.assert_allclose(linear(x).detach().numpy(), ln @ w.T + b, atol=1e-5)

    star = make_head("star", 6, 3, star_width=2)
    layer = star[1]
    f1 = ln @ layer.f1.weight.detach().numpy().T + layer.f1.bias.detach().numpy()
    f2 = ln @ layer.f2.weight.detach().numpy().T + layer.f2.bias.detach().numpy()
    gated = np.clip(f1, 0, 6) * f2
    expected = gated @ layer.g.weight.detach().numpy().T + layer.g.bias.detach().numpy()
    assert layer.f1.out_features == 12  # hidden width = star_width x in_dim
    np.testing.assert_allclose(star(x).detach().numpy(), expected, atol=1e-5)

    mlp = make_head("mlp", 6, 3, norm=False)
    assert [type(m).__name__ for m in mlp] == ["Linear", "GELU", "Linear"] and mlp[0].out_features == 12
    with pytest.raises(ProbeError, match="unknown head 'deep'; valid: linear, mlp, star"):
        make_head("deep", 6, 3)


def test_pairwise_softplus_sum_matches_torch_value_and_gradients():
    from probe.align.losses import pairwise_softplus_sum

    a = (torch.randn(200, 9, dtype=torch.float64) * 4).requires_grad_()
    b = (torch.randn(70, 9, dtype=torch.float64) * 4).requires_grad_()
    bias = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    ours = pairwise_softplus_sum(a, b, bias)
    (2.5 * ours).backward()  # an upstream factor other than 1 must scale every gradient
    refs = [t.detach().clone().requires_grad_() for t in (a, b, bias)]
    ref = torch.nn.functional.softplus(refs[0] @ refs[1].T + refs[2], threshold=1000).sum()
    (2.5 * ref).backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    for mine, theirs in zip((a, b, bias), refs, strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-10, atol=1e-12)
    with torch.no_grad():  # no gradient wanted: same value, nothing kept for backward
        assert pairwise_softplus_sum(a, b, bias).item() == pytest.approx(ref.item(), rel=1e-12)


@pytest.mark.parametrize("scale", [1.0, 100.0])  # 100: logits far apart, where a naive exp overflows
def test_pairwise_logsumexp_sum_matches_torch_value_and_gradients(scale):
    from probe.align.losses import pairwise_logsumexp_sum

    torch.manual_seed(0)
    a = (torch.nn.functional.normalize(torch.randn(300, 16, dtype=torch.float64), dim=1) * scale).requires_grad_()
    b = torch.nn.functional.normalize(torch.randn(200, 16, dtype=torch.float64), dim=1).requires_grad_()
    row_weights, col_weights = torch.rand(300, dtype=torch.float64), torch.rand(200, dtype=torch.float64)
    row_weights[::7] = 0  # rows without a positive
    ours = pairwise_logsumexp_sum(a, b, row_weights, col_weights)
    (3.0 * ours).backward()
    ref_a, ref_b = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    logits = ref_a @ ref_b.T
    ref = row_weights @ torch.logsumexp(logits, 1) + col_weights @ torch.logsumexp(logits, 0)
    (3.0 * ref).backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(a.grad, ref_a.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b.grad, ref_b.grad, rtol=1e-10, atol=1e-11)


def test_reused_logits_buffer_never_reaches_a_graph_that_is_still_alive():
    from probe.align.losses import pairwise_softplus_sum

    torch.manual_seed(0)
    a, b = torch.randn(50, 4, requires_grad=True), torch.randn(40, 4, requires_grad=True)
    first = pairwise_softplus_sum(a, b)
    first.backward(retain_graph=True)
    once = a.grad.clone()
    for _ in range(3):  # steps with other inputs of the same shape: candidates for the buffer
        pairwise_softplus_sum(torch.randn(50, 4) * 5, torch.randn(40, 4) * 5).item()
        loss = pairwise_softplus_sum(torch.randn(50, 4, requires_grad=True), b.detach())
        loss.backward()
    a.grad = None
    first.backward()  # the first graph's saved sigmoid must be untouched
    torch.testing.assert_close(a.grad, once)


def test_batch_positive_pairs_equal_the_mask_and_give_the_same_losses():
    from probe.align.losses import batch_positive_pairs

    ids = torch.tensor([3, 1, 3, 7, 1, 3, 9])
    rows, cols = batch_positive_pairs(ids)
    mask = ids[:, None] == ids[None, :]
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == sorted(map(tuple, mask.nonzero().tolist()))
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(7, 5), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(7, 5), dim=-1)
    scale, bias = torch.tensor(2.0), torch.tensor(-1.0)
    assert siglip(a, b, (rows, cols), scale, bias).item() == pytest.approx(siglip(a, b, mask, scale, bias).item())
    assert infonce(a, b, (rows, cols), scale).item() == pytest.approx(infonce(a, b, mask, scale).item())
    unique = torch.arange(4)
    assert [t.tolist() for t in batch_positive_pairs(unique)] == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_batch_positive_pairs_match_the_mask_on_random_batches():
    """Sorted-neighbour pairing against the [B, B] comparison, over batch sizes and caption counts."""
    from probe.align.losses import batch_positive_pairs

    for trial in range(100):
        generator = torch.Generator().manual_seed(trial)
        ids = torch.randint(0, 1 + trial % 20, (1 + trial % 37,), generator=generator)
        rows, cols = batch_positive_pairs(ids)
        expected = (ids[:, None] == ids[None, :]).nonzero().tolist()
        assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == sorted(map(tuple, expected))
        assert rows[:len(ids)].tolist() == cols[:len(ids)].tolist() == list(range(len(ids)))  # diagonal first


def test_siglip_pairs_reduction_is_sails_mean_over_the_logits():
    """SAIL's SigLIP (model/loss.py:396-420): labels 2I - 1, -mean(logsigmoid(labels * (scale * a b^T + bias)))
    over the B x B logits; the SigLIP paper's divides the same sum by B."""
    import torch

    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    scale, bias = 20.0, -10.0
    labels = 2 * torch.eye(5) - 1
    logits = scale * a @ b.T + bias
    sail = -torch.mean(torch.nn.functional.logsigmoid(labels * logits))
    positives = torch.eye(5, dtype=torch.bool)
    pairs = make_loss("siglip", scale, bias, reduction="pairs")(a, b, positives)
    batch = make_loss("siglip", scale, bias)(a, b, positives)
    assert pairs.item() == pytest.approx(sail.item(), rel=1e-5)
    assert batch.item() == pytest.approx(5 * sail.item(), rel=1e-5)


def test_sails_head_variants():
    import torch

    mlp = make_head("mlp", 6, 3, norm=False, mlp_hidden="in_dim")  # SAIL's SiglipMLP: 4 x the input width
    assert mlp[0].weight.shape == (24, 6) and mlp[2].weight.shape == (3, 24)
    assert make_head("mlp", 6, 3, norm=False)[0].weight.shape == (12, 6)  # probe's default: 4 x out_dim
    star = make_head("star", 2, 2, norm=False, star_width=1, star_clamp=1.0)[0]
    with torch.no_grad():
        for layer in (star.f1, star.f2, star.g):
            layer.weight.copy_(torch.eye(2))
            layer.bias.zero_()
    # f1 = f2 = x = (5, -3) clamped to (1, -1): g(relu6(1, -1) * (1, -1)) = (1, 0); unclamped (5 * 5, 0)
    assert star(torch.tensor([[5.0, -3.0]])).tolist() == [[1.0, 0.0]]
    star.clamp = None
    assert star(torch.tensor([[5.0, -3.0]])).tolist() == [[25.0, 0.0]]
