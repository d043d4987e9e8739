"""Training-free similarity between two representations of the same items (rows aligned).

Definitions (see DESIGN.md): rows are L2-normalised first unless ``normalize=False``; neighbours
exclude the item itself.

- ``mutual_knn``: mean over i of |kNN_A(i) ∩ kNN_B(i)| / k (the platonic-representation metric).
- ``cka``: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)); linear kernels are computed in feature space
  (O(N d²)) instead of N×N Gram matrices; ``unbiased`` uses Song et al.'s HSIC estimator.
- ``cknna``: unbiased CKA restricted to pairs that are k-nearest neighbours in both spaces
  (Huh et al. 2024); only the ≤ k entries per row that survive the mask are ever formed.
- ``unbiased_cka``: linear CKA with the unbiased HSIC estimator.
- ``svcca``: mean canonical correlation after reducing each side to its top ``dim`` SVD directions.

Nearest neighbours come from one chunked matmul + top-k pass per side, shared by mutual kNN and
CKNNA, so no N×N matrix is held in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from probe.errors import ProbeError
from probe.metrics.vectors import l2_normalize

CHUNK_ROWS = 2048


def check_pair(a: Any, b: Any, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate paired features; one-line errors for the mistakes users make."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2:
        raise ProbeError(f"features must be 2-D [N, D]; got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ProbeError(f"paired features need the same number of rows; got {a.shape[0]} and {b.shape[0]}")
    for name, x in (("first", a), ("second", b)):
        if not np.isfinite(x).all():
            raise ProbeError(f"the {name} features contain NaN or infinite values")
    if k is not None and not 1 <= k < a.shape[0]:
        raise ProbeError(f"k must be between 1 and N-1 = {a.shape[0] - 1}; got k = {k}")
    return a, b


def knn(x: np.ndarray, k: int, chunk: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner-product neighbours of every row, self excluded: (indices [N, k], values [N, k]).

    The Gram matrix is symmetric, so only blocks on and above the diagonal are multiplied; each
    off-diagonal block updates the running top-k of both its row block and (transposed) its
    column block. That halves the matmul work; no N×N matrix is ever held.
    """
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x))
    n = t.shape[0]
    if n <= chunk:  # one block: the whole Gram matrix at once, no running top-k to merge into
        with torch.inference_mode():
            gram = t @ t.T
            gram.fill_diagonal_(-torch.inf)
            top = torch.topk(gram, k, dim=1)
        return top.indices.numpy(), top.values.numpy()
    best_val = torch.full((n, k), -torch.inf)
    best_idx = torch.zeros((n, k), dtype=torch.int64)

    def merge(start: int, stop: int, sims: torch.Tensor, offset: int) -> None:
        top = torch.topk(sims, min(k, sims.shape[1]), dim=1)
        values = torch.cat([best_val[start:stop], top.values], dim=1)
        indices = torch.cat([best_idx[start:stop], top.indices + offset], dim=1)
        keep = torch.topk(values, k, dim=1)
        best_val[start:stop] = keep.values
        best_idx[start:stop] = torch.gather(indices, 1, keep.indices)

    bounds = [(s, min(n, s + chunk)) for s in range(0, n, chunk)]
    with torch.inference_mode():
        for i, (r0, r1) in enumerate(bounds):
            for c0, c1 in bounds[i:]:
                sims = t[r0:r1] @ t[c0:c1].T
                if r0 == c0:
                    sims.fill_diagonal_(-torch.inf)
                merge(r0, r1, sims, c0)
                if r0 != c0:
                    merge(c0, c1, sims.T.contiguous(), r0)
    return best_idx.numpy(), best_val.numpy()


def mutual_knn(a: Any, b: Any, k: int = 10, normalize: bool = True) -> float:
    a, b = check_pair(a, b, k)
    if normalize:
        a, b = l2_normalize(a), l2_normalize(b)
    idx_a, _ = knn(a, k)
    idx_b, _ = knn(b, k)
    return neighbour_overlap(idx_a, idx_b)


def neighbour_overlap(idx_a: np.ndarray, idx_b: np.ndarray) -> float:
    k = idx_a.shape[1]
    hits = (idx_a[:, :, None] == idx_b[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / k)


# --- CKA ------------------------------------------------------------------------------------------

def linear_hsic_terms(x: np.ndarray, y: np.ndarray, unbiased: bool) -> tuple[float, float, float]:
    """(HSIC(K,L), HSIC(K,K), HSIC(L,L)) for K = x xᵀ, L = y yᵀ, each up to the same constant factor,
    from :func:`biased_linear_hsic` or :func:`unbiased_linear_hsic`."""
    hsic = unbiased_linear_hsic if unbiased else biased_linear_hsic
    return hsic(x, y), hsic(x, x), hsic(y, y)


def unbiased_linear_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al.'s unbiased HSIC(K, L) for linear kernels K = x xᵀ, L = y yᵀ.

    Only the d×d product xᵀy is formed (float32 matmul, float64 from there on), with the corrections
    taken from the Gram diagonals and zero-diagonal row sums, so no N×N matrix and no centred copy of
    the data is made; with fewer rows than features the N×N Grams are cheaper and are used instead.
    """
    import torch

    n = x.shape[0]
    if n < 4:
        raise ProbeError(f"unbiased CKA needs at least 4 rows; got {n}")
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    with torch.inference_mode():
        if n * (x.shape[1] + y.shape[1]) < x.shape[1] * y.shape[1]:
            return hsic_gram((xt @ xt.T).double().numpy(), (yt @ yt.T).double().numpy(), True)
        frob = float(((xt.T @ yt).double() ** 2).sum())
        dx, dy = (xt * xt).sum(1).double(), (yt * yt).sum(1).double()  # Gram diagonals
        rx = (xt @ xt.double().sum(0).float()).double() - dx  # zero-diagonal row sums
        ry = (yt @ yt.double().sum(0).float()).double() - dy
        trace = frob - float((dx * dy).sum())
        return (trace + float(rx.sum()) * float(ry.sum()) / ((n - 1) * (n - 2))
                - 2 * float(rx @ ry) / (n - 2)) / (n * (n - 3))


def biased_linear_hsic(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC(K, L) (biased, up to a constant) for linear kernels on rows ``x`` and ``y``: from the
    d x d cross-covariance ``xcᵀ yc`` (float32 product and sums, float64 centring), or from N x N Gram
    matrices when there are fewer rows than features."""
    import torch

    n = x.shape[0]
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    with torch.inference_mode():
        if n * (x.shape[1] + y.shape[1]) < x.shape[1] * y.shape[1]:
            k, l = (xt @ xt.T).double().numpy(), (yt @ yt.T).double().numpy()  # noqa: E741
            return hsic_gram(k, l, unbiased=False)
        # column sums in float32 (cascade-summed: as accurate as the float32 product they correct,
        # and a tenth of the time of a float64 sum over N x d)
        xy = (xt.T @ yt).double() - torch.outer(xt.sum(0).double(), yt.sum(0).double()) / n
        return float((xy * xy).sum())


def hsic_gram(k: np.ndarray, l: np.ndarray, unbiased: bool) -> float:  # noqa: E741
    """HSIC from explicit Gram matrices (biased: centred Frobenius product; unbiased: Song et al.)."""
    n = k.shape[0]
    if not unbiased:  # tr(H K H L) with the centring done by row / column means, O(N^2)
        kc = k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()
        return float(np.sum(kc * l))
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    # 1' Kt Lt 1 = (Kt' 1) . (Lt 1): no N^3 product
    return float((np.sum(kt * lt.T) + kt.sum() * lt.sum() / ((n - 1) * (n - 2))
                  - 2 * (kt.sum(0) @ lt.sum(1)) / (n - 2)) / (n * (n - 3)))


def unbiased_cka(a: Any, b: Any, normalize: bool = True) -> float:
    """Linear CKA with Song et al.'s unbiased HSIC estimator (platonic-rep's ``unbiased_cka``)."""
    return cka(a, b, unbiased=True, normalize=normalize)


def cka(a: Any, b: Any, kernel: str = "linear", unbiased: bool = False, normalize: bool = True,
        sigma_frac: float = 1.0) -> float:
    """Centred kernel alignment; ``kernel="rbf"`` uses bandwidth = sigma_frac × median distance."""
    a, b = check_pair(a, b)
    if normalize:
        a, b = l2_normalize(a), l2_normalize(b)
    if kernel == "linear":
        kl, kk, ll = linear_hsic_terms(a, b, unbiased)
    elif kernel == "rbf":
        k, l = _rbf(a, sigma_frac), _rbf(b, sigma_frac)  # noqa: E741
        kl, kk, ll = hsic_gram(k, l, unbiased), hsic_gram(k, k, unbiased), hsic_gram(l, l, unbiased)
    else:
        raise ProbeError(f"kernel {kernel!r} is not one of linear, rbf")
    denom = np.sqrt(max(kk, 0.0) * max(ll, 0.0))
    return float(kl / denom) if denom > 0 else 0.0


def _rbf(x: np.ndarray, sigma_frac: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    sq = (x64 * x64).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x64 @ x64.T, 0)
    median = np.median(np.sqrt(d2[np.triu_indices_from(d2, k=1)]))
    sigma = sigma_frac * median if median > 0 else 1.0
    return np.exp(-d2 / (2 * sigma**2))


# --- CKNNA ----------------------------------------------------------------------------------------

def _sparse_unbiased_hsic(rows, cols, kv, lv, n: int) -> float:
    """Song et al.'s unbiased HSIC for matrices that are zero outside the listed entries (no diagonal)."""
    keys = rows * n + cols
    order = np.argsort(keys)
    sorted_keys = keys[order]
    reverse = cols * n + rows
    pos = np.searchsorted(sorted_keys, reverse)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    found = sorted_keys[pos] == reverse
    l_transposed = np.where(found, lv[order][pos], 0.0)
    trace = float((kv * l_transposed).sum())
    col_sum_k = np.bincount(cols, weights=kv, minlength=n)
    row_sum_l = np.bincount(rows, weights=lv, minlength=n)
    cross = float(col_sum_k @ row_sum_l)
    return (trace + kv.sum() * lv.sum() / ((n - 1) * (n - 2)) - 2 * cross / (n - 2)) / (n * (n - 3))


def cknna(a: Any, b: Any, k: int = 10, normalize: bool = True) -> float:
    a, b = check_pair(a, b, k)
    if a.shape[0] < 4:
        raise ProbeError(f"CKNNA needs at least 4 rows; got {a.shape[0]}")
    if normalize:
        a, b = l2_normalize(a), l2_normalize(b)
    idx_a, val_a = knn(a, k)
    idx_b, val_b = knn(b, k)
    return cknna_from_knn(idx_a, val_a, idx_b, val_b)


def cknna_from_knn(idx_a, val_a, idx_b, val_b) -> float:
    n, k = idx_a.shape
    val_a, val_b = val_a.astype(np.float64), val_b.astype(np.float64)
    match = idx_a[:, :, None] == idx_b[:, None, :]  # [n, k, k]
    i, p, q = np.nonzero(match)
    rows, cols = i, idx_a[i, p]
    kl = _sparse_unbiased_hsic(rows, cols, val_a[i, p], val_b[i, q], n)
    all_rows = np.repeat(np.arange(n), k)
    kk = _sparse_unbiased_hsic(all_rows, idx_a.ravel(), val_a.ravel(), val_a.ravel(), n)
    ll = _sparse_unbiased_hsic(all_rows, idx_b.ravel(), val_b.ravel(), val_b.ravel(), n)
    denom = np.sqrt(max(kk, 0.0) * max(ll, 0.0))
    return float(kl / denom) if denom > 0 else 0.0


# --- SVCCA ----------------------------------------------------------------------------------------

def svcca(a: Any, b: Any, dim: int = 10, normalize: bool = True, standardize: bool = False) -> float:
    """Mean canonical correlation of the two top-``dim`` principal subspaces; ``standardize`` first
    scales each feature to unit variance, as platonic-rep's ``svcca`` does (metrics.py:132-135)."""
    a, b = check_pair(a, b)
    if not 1 <= dim <= min(a.shape[1], b.shape[1], a.shape[0] - 1):
        raise ProbeError(f"svcca dim must be between 1 and {min(a.shape[1], b.shape[1], a.shape[0] - 1)}; got {dim}")
    if normalize:
        a, b = l2_normalize(a), l2_normalize(b)
    if standardize:
        a, b = standardized(a), standardized(b)
    return mean_canonical_correlation(principal_basis(a, dim), principal_basis(b, dim))


def standardized(x: np.ndarray) -> np.ndarray:
    """Each feature centred and divided by its sample standard deviation (``+ 1e-8``, as
    platonic-rep: ``act / (torch.std(act, axis=0) + 1e-8)``, Bessel-corrected)."""
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(0)
    return (centred / (centred.std(0, ddof=1) + 1e-8)).astype(np.float32)


def principal_basis(x: np.ndarray, dim: int) -> np.ndarray:
    """Orthonormal basis of the top-``dim`` principal components (U S of the centred data), from the
    smaller of its two Gram matrices: an N x N or d x d symmetric eigenproblem, not a full SVD.

    All in torch: interleaving numpy's BLAS threads with torch's OpenMP threads (the neighbour
    searches next to it) made each basis several times slower on a 2-core machine.
    """
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x)).double()
    xc = xt - xt.mean(0)
    few_rows = xc.shape[0] <= xc.shape[1]
    with torch.inference_mode():
        values, vectors = torch.linalg.eigh(xc @ xc.T if few_rows else xc.T @ xc)  # ascending
        values, vectors = values[-dim:], vectors[:, -dim:]
        components = vectors * values.clamp(min=0).sqrt() if few_rows else xc @ vectors
        return torch.linalg.qr(components)[0].numpy()


def mean_canonical_correlation(qa: np.ndarray, qb: np.ndarray) -> float:
    """Mean canonical correlation of two orthonormal bases of the same rows."""
    correlations = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return float(np.clip(correlations, 0, 1).mean())


# --- uncertainty ----------------------------------------------------------------------------------


#: name -> metric function ``(a, b, **kw) -> float``; every name has a key in probe.records.keys
METRICS: dict[str, Callable[..., float]] = {"mutual_knn": mutual_knn, "cka": cka, "unbiased_cka": unbiased_cka,
                                            "cknna": cknna, "svcca": svcca}
