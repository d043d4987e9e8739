"""Small array helpers every metric shares."""

from __future__ import annotations

import numpy as np

#: Scores closer than this are ties. Embeddings that are equal in exact arithmetic (two captions with
#: the same words, under an order-blind text encoder) come out of float32 matrix products a few 1e-7
#: apart, by an amount that changes from run to run with memory alignment and threads; ordering them
#: by that noise made a compositional score differ between two runs of the same command. Ties count
#: against the query (retrieval, zero-shot) and as no success (Winoground's strict comparisons).
TIE = 1e-5


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
