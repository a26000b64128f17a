"""Codebook health: cluster sizes, empty clusters, coverage and token-tuple collisions.

Semantic-ID collisions and codebook collapse are the problems most reported by generative
retrieval reimplementations; these numbers go to ``tokenizer/stats.json`` and the CLI.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from talkplay.tokenize.grammar import MISSING, MODALITIES

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def cluster_sizes(assign: np.ndarray, k: int) -> dict:
    """Size distribution of ``k`` clusters given item assignments.

    Args:
        assign: int [n] cluster ids in [0, k) of the items that have the modality.
        k: number of clusters.
    Returns:
        {"k", "items", "empty", "min", "max", "mean", "q10".."q90", "histogram"}; the
        histogram counts clusters by size bucket "0", "1", "2-3", "4-7", ... (powers of two).
    """
    if k == 0:
        return {"k": 0, "items": 0, "empty": 0, "histogram": {}}
    sizes = np.bincount(np.asarray(assign, dtype=np.int64), minlength=k)  # [k]
    out = {"k": int(k), "items": int(sizes.sum()), "empty": int((sizes == 0).sum()),
           "min": int(sizes.min()), "max": int(sizes.max()), "mean": float(sizes.mean())}
    for q in QUANTILES:
        out[f"q{int(q * 100)}"] = float(np.quantile(sizes, q))
    hist: Counter = Counter()
    for s in sizes:
        if s <= 1:
            hist[str(int(s))] += 1
        else:
            lo = 1 << (int(s).bit_length() - 1)
            hist[f"{lo}-{2 * lo - 1}"] += 1
    out["histogram"] = dict(sorted(hist.items(), key=lambda kv: int(kv[0].split("-")[0])))
    return out


def tuple_stats(codes: np.ndarray, group: np.ndarray) -> dict:
    """Items per full 5-token tuple, for the items in ``group``.

    A tuple's count is taken over the whole catalog (that is what reverse lookup sees), so a
    cold item sharing its tokens with a warm one counts as a collision.

    Args:
        codes: int32 [n_items, 5].
        group: bool [n_items], the items to report on.
    Returns:
        {"items", "distinct_tuples", "collision_rate" (share of the group's items whose tuple
        another catalog item shares), "max_items_per_tuple", "items_per_tuple"}.
    """
    keys = [tuple(r) for r in codes.tolist()]
    count = Counter(keys)
    mine = [keys[i] for i in np.flatnonzero(group)]
    if not mine:
        return {"items": 0, "distinct_tuples": 0, "collision_rate": 0.0,
                "max_items_per_tuple": 0, "items_per_tuple": 0.0}
    distinct = set(mine)
    return {"items": len(mine), "distinct_tuples": len(distinct),
            "collision_rate": sum(count[t] > 1 for t in mine) / len(mine),
            "max_items_per_tuple": max(count[t] for t in distinct),
            "items_per_tuple": len(mine) / len(distinct)}


def codebook_stats(codes: np.ndarray, k: dict[str, int], cold: np.ndarray) -> dict:
    """All statistics of a codebook.

    Args:
        codes: int32 [n_items, 5], MISSING where a modality is absent.
        k: clusters per modality.
        cold: bool [n_items], True for cold items.
    Returns:
        {"items", "warm", "cold", "modalities": {m: cluster_sizes + "coverage" {all, warm,
        cold}}, "tuples": {all, warm, cold}}.
    """
    cold = np.asarray(cold, dtype=bool)
    groups = {"all": np.ones(len(codes), dtype=bool), "warm": ~cold, "cold": cold}
    mods = {}
    for j, m in enumerate(MODALITIES):
        present = codes[:, j] != MISSING
        entry = cluster_sizes(codes[present, j], k[m])
        entry["coverage"] = {g: float(present[mask].mean()) if mask.any() else 0.0
                             for g, mask in groups.items()}
        mods[m] = entry
    return {"items": int(len(codes)), "warm": int((~cold).sum()), "cold": int(cold.sum()),
            "modalities": mods,
            "tuples": {g: tuple_stats(codes, mask) for g, mask in groups.items()}}
