"""Spherical K-means per modality (faiss), and the rule that caps K for small catalogs.

All modalities are clustered in cosine geometry: vectors are L2-normalised, centroids are
re-normalised after every iteration (faiss ``spherical=True``) and items go to the centroid
of highest inner product. For the text and audio encoders cosine is the similarity they
were trained for. For item2vec too: word2vec vectors are compared by cosine (Barkan &
Koenigstein 2016), while their norm mostly tracks how often a track occurs, which would
otherwise pull popular tracks into their own clusters. Centroids are therefore unit vectors,
which is also what the self-similarity loss compares (cos(c_i, c_j)).
"""

from __future__ import annotations

import logging

import numpy as np

from talkplay.linalg import import_faiss, normalise

log = logging.getLogger(__name__)


def cap_k(k: int, n: int, min_items_per_cluster: int) -> int:
    """Clusters for a modality that ``n`` items have.

    K_m = min(k, max(2, n // min_items_per_cluster)), never more than n, and 0 when n == 0
    (the modality has only its ``none`` token).
    """
    if n <= 0:
        return 0
    return min(k, max(2, n // max(1, min_items_per_cluster)), n)


def kmeans_pp(x: np.ndarray, k: int, *, seed: int, sample_per_centroid: int = 16) -> np.ndarray:
    """k-means++ seeding (D^2 sampling) on a seeded sample of at most ``sample_per_centroid * k``
    rows. faiss starts from k random points, which often puts two seeds in one dense region
    and leaves another region merged; D^2 seeding avoids that at O(sample * k * d) cost.

    Args:
        x: float32 [n, d].
        k: centroids, <= n.
        seed: sampling seed.
    Returns:
        float32 [k, d], rows of ``x``.
    """
    rng = np.random.default_rng(seed)
    m = min(len(x), sample_per_centroid * k)
    pool = x[np.sort(rng.choice(len(x), size=m, replace=False))] if m < len(x) else x
    sq = (pool * pool).sum(axis=1)  # [m]
    chosen = [int(rng.integers(m))]
    best = np.maximum(sq + sq[chosen[0]] - 2 * pool @ pool[chosen[0]], 0)  # [m] squared dist
    for _ in range(1, k):
        total = best.sum()
        i = int(rng.choice(m, p=best / total)) if total > 0 else int(rng.integers(m))
        chosen.append(i)
        best = np.minimum(best, np.maximum(sq + sq[i] - 2 * pool @ pool[i], 0))
    return np.ascontiguousarray(pool[chosen], dtype=np.float32)


def spherical_kmeans(x: np.ndarray, k: int, *, niter: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster unit vectors by cosine.

    Args:
        x: float32 [n, d], rows L2-normalised.
        k: clusters, 1 <= k <= n.
        niter: Lloyd iterations.
        seed: faiss seed (initial centroids, subsampling).
    Returns:
        (centroids float32 [k, d] with unit rows, assignment int32 [n] in [0, k)).
    """
    faiss = import_faiss()
    n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and n={n}")
    if k == 1:
        c = normalise(x.mean(axis=0, keepdims=True))
        return c, np.zeros(n, dtype=np.int32)
    # min_points_per_centroid=1: small catalogs are expected (capped K); faiss would only warn.
    # max_points_per_centroid stays at faiss's 256: above 256*k items it trains on a seeded
    # sample, then every item is assigned to its nearest centroid.
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1)
    x = np.ascontiguousarray(x, dtype=np.float32)
    km.train(x, init_centroids=kmeans_pp(x, k, seed=seed))
    centroids = normalise(km.centroids)  # [k, d]
    index = faiss.IndexFlatIP(d)
    index.add(centroids)
    _, assign = index.search(np.ascontiguousarray(x, dtype=np.float32), 1)  # [n, 1]
    log.debug("k-means: n=%d d=%d k=%d niter=%d", n, d, k, niter)
    return centroids, assign[:, 0].astype(np.int32)
