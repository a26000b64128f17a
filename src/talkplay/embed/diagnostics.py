"""How well an embedding separates genres: nearest-neighbour genre agreement against chance.

For each query track with a genre label, take its k nearest other tracks by cosine
similarity and count how many share its genre. Chance is the agreement a random neighbour
would give: sum over genres of n_g (n_g - 1) / (n (n - 1)). A lift near 1 means the
embedding knows nothing about genre; audio embeddings of a useful encoder sit well above it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from talkplay.data.schema import Track
from talkplay.embed.store import load_modality
from talkplay.linalg import import_faiss, normalise

GENRE_WORDS: frozenset[str] = frozenset({
    "ambient", "blues", "classical", "country", "disco", "electronic", "electronica", "folk",
    "funk", "hip-hop", "hip hop", "house", "indie", "jazz", "latin", "metal", "pop", "punk",
    "r&b", "rnb", "rap", "reggae", "rock", "soul", "techno", "world",
})
"""Tags taken as genre labels (lower-cased); a track's first such tag is its genre."""


def genre_labels(tracks: Iterable[Track], vocabulary: frozenset[str] = GENRE_WORDS) -> dict[str, str]:
    """Track id -> genre, from the first real tag found in ``vocabulary`` (pseudo tags ignored:
    they come from the audio model itself)."""
    out = {}
    for t in tracks:
        for tag in t.tags:
            if tag.lower() in vocabulary:
                out[t.id] = tag.lower()
                break
    return out


def neighbour_agreement(vectors: np.ndarray, labels: list[str], k: int = 10,
                        max_queries: int = 5000, seed: int = 0) -> dict:
    """Share of each item's k cosine-nearest neighbours (itself excluded) with its label.

    Args:
        vectors: float32 [n, d].
        labels: n labels.
        k: neighbours per query.
        max_queries: query at most this many items (seeded sample); all n are candidates.
        seed: sampling seed.
    Returns:
        {"n", "labels", "k", "at_1", "at_k", "chance", "lift_at_1", "lift_at_k"}.
    """
    faiss = import_faiss()
    n = len(labels)
    if n < 2 or vectors.shape[0] != n:
        raise ValueError(f"need >= 2 labelled vectors, got {vectors.shape[0]} and {n} labels")
    x = normalise(vectors)  # float32 [n, d], C-contiguous for faiss
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, size=min(n, max_queries), replace=False))
    kk = min(k, n - 1)
    _, nn = index.search(x[queries], kk + 1)  # [q, kk+1]; usually the query itself first
    lab = np.asarray(labels)
    hits1, hitsk = [], []
    for q, row in zip(queries, nn, strict=True):
        row = [j for j in row if j != q and j >= 0][:kk]
        same = lab[row] == lab[q]
        hits1.append(same[0])
        hitsk.append(same.mean())
    counts = np.array(list(Counter(labels).values()), dtype=np.float64)
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    at1, atk = float(np.mean(hits1)), float(np.mean(hitsk))
    return {"n": n, "labels": len(counts), "k": kk, "at_1": at1, "at_k": atk, "chance": chance,
            "lift_at_1": at1 / chance if chance else float("nan"),
            "lift_at_k": atk / chance if chance else float("nan")}


def genre_agreement(data_dir: str | Path, tracks: Iterable[Track], modality: str = "audio",
                    k: int = 10) -> dict | None:
    """Nearest-neighbour genre agreement of one stored modality.

    Args:
        data_dir: dataset directory with ``embeddings/``.
        tracks: the catalog (for genre tags).
        modality: which embedding to measure.
        k: neighbours per query.
    Returns:
        ``neighbour_agreement``'s dict, or None when the modality is absent or fewer than
        two of its tracks have a genre tag.
    """
    loaded = load_modality(data_dir, modality)
    if loaded is None:
        return None
    ids, matrix = loaded
    labels = genre_labels(tracks)
    rows = [i for i, tid in enumerate(ids) if tid in labels]
    if len(rows) < 2 or len({labels[ids[i]] for i in rows}) < 2:
        return None
    return neighbour_agreement(np.asarray(matrix[rows]), [labels[ids[i]] for i in rows], k=k)
