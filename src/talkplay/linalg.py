"""Small array helpers shared by the embedding, tokenizer and retrieval code."""

from __future__ import annotations

import numpy as np


def normalise(x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero.

    Args:
        x: [n, d] array (anything ``np.array`` accepts).
        dtype: dtype of the result (float32 for faiss and embeddings, float64 where scores are
            summed over many terms).
    Returns:
        A new C-contiguous [n, d] array of ``dtype``; the input is never modified.
    """
    x = np.array(x, dtype=dtype, copy=True, order="C")
    x /= np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return x
