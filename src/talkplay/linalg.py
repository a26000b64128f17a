"""Small array helpers shared by the embedding, tokenizer and retrieval code.

The lowest layer of the package: it imports nothing from talkplay, so every stage may use it.
"""

from __future__ import annotations

import logging

import numpy as np


def import_faiss():
    """faiss, with its loader's INFO chatter (which CPU build it picked) kept out of the logs."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    return faiss


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
