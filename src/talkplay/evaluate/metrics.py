"""Ranking metrics as pure functions with explicit argument names.

One *target* is one ranked prediction list scored against a gold set. When a cluster map
is given (track id -> cluster id, e.g. CPCD's recordings of one song), both lists are
collapsed to clusters first: predictions keep the first track of each cluster, gold becomes
the set of its clusters, and rank positions are counted on the collapsed prediction list.
This is the CPCD eval.py rule ("tracks in the same cluster count once").

Aggregation follows CPCD eval.py: *micro* = mean over targets (turns), *macro* = mean over
conversations of each conversation's mean, *by turn* = mean over targets of one turn index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

KS: tuple[int, ...] = (1, 5, 10, 20, 100)


def collapse_to_clusters(track_ids: Iterable[str], cluster_of: Mapping[str, str] | None) -> list[str]:
    """Map track ids to cluster ids, keeping the first occurrence of each cluster in order.

    Args:
        track_ids: ranked or unordered track ids.
        cluster_of: track id -> cluster id; ids missing from it are their own cluster.
            None keeps the ids as they are (duplicates still removed).
    Returns:
        Cluster ids (or track ids), unique, in first-seen order.
    """
    seen: set[str] = set()
    out: list[str] = []
    for tid in track_ids:
        cid = cluster_of.get(tid, tid) if cluster_of else tid
        if cid not in seen:
            seen.add(cid)
            out.append(cid)
    return out


def first_hit_rank(*, predictions: Sequence[str], gold: Iterable[str],
                   cluster_of: Mapping[str, str] | None = None) -> int | None:
    """1-based rank of the first (collapsed) prediction that is in ``gold``; None when none is.

    Args:
        predictions: ranked track ids, best first.
        gold: relevant track ids.
        cluster_of: optional track -> cluster map; see the module docstring.
    Returns:
        The rank, or None.
    """
    gold_set = set(collapse_to_clusters(gold, cluster_of))
    for rank, p in enumerate(collapse_to_clusters(predictions, cluster_of), start=1):
        if p in gold_set:
            return rank
    return None


def reciprocal_rank(*, predictions: Sequence[str], gold: Iterable[str], k: int | None = None,
                    cluster_of: Mapping[str, str] | None = None) -> float:
    """1 / (rank of the first prediction in ``gold``), 0 when none is within the first ``k``.

    Args:
        predictions: ranked track ids, best first.
        gold: relevant track ids.
        k: only the first ``k`` (collapsed) predictions count; None = all of them.
        cluster_of: optional track -> cluster map; see the module docstring.
    Returns:
        The reciprocal rank in [0, 1].
    """
    rank = first_hit_rank(predictions=predictions, gold=gold, cluster_of=cluster_of)
    return 0.0 if rank is None or (k is not None and rank > k) else 1.0 / rank


def hit_at_k(*, predictions: Sequence[str], gold: Iterable[str], k: int,
             cluster_of: Mapping[str, str] | None = None) -> float:
    """1.0 when any of the first ``k`` (collapsed) predictions is in ``gold``, else 0.0.

    Args:
        predictions: ranked track ids, best first.
        gold: relevant track ids.
        k: cut-off.
        cluster_of: optional track -> cluster map; see the module docstring.
    Returns:
        0.0 or 1.0.
    """
    rank = first_hit_rank(predictions=predictions, gold=gold, cluster_of=cluster_of)
    return 1.0 if rank is not None and rank <= k else 0.0


def target_metrics(*, predictions: Sequence[str], gold: Iterable[str], ks: Sequence[int] = KS,
                   cluster_of: Mapping[str, str] | None = None) -> dict[str, float]:
    """All metrics of one target: ``mrr`` (over the first max(ks) predictions) and ``hit@k``.

    Args:
        predictions: ranked track ids, best first.
        gold: relevant track ids.
        ks: cut-offs for Hit@K; MRR is cut at ``max(ks)`` (MRR@100 with the default ks).
        cluster_of: optional track -> cluster map.
    Returns:
        {"mrr": float, "hit@1": float, ...}.
    """
    rank = first_hit_rank(predictions=predictions, gold=gold, cluster_of=cluster_of)
    found = rank is not None and rank <= max(ks)
    out = {"mrr": 1.0 / rank if found else 0.0}
    for k in ks:
        out[f"hit@{k}"] = 1.0 if rank is not None and rank <= k else 0.0
    return out


@dataclass
class ScoredTarget:
    """Metrics of one target and what it is grouped by."""

    conversation_id: str
    turn_index: int
    values: dict[str, float]
    cold: bool = False


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def micro_average(*, targets: Sequence[ScoredTarget]) -> dict[str, float]:
    """Mean of each metric over targets (turns). Empty input gives {}."""
    return _mean([t.values for t in targets])


def macro_average(*, targets: Sequence[ScoredTarget]) -> dict[str, float]:
    """Mean over conversations of each conversation's mean over its targets."""
    by_conv: dict[str, list[dict[str, float]]] = defaultdict(list)
    for t in targets:
        by_conv[t.conversation_id].append(t.values)
    return _mean([_mean(rows) for rows in by_conv.values()])


def by_turn_average(*, targets: Sequence[ScoredTarget]) -> dict[int, dict[str, float]]:
    """Mean of each metric per turn index, plus ``count``; keys sorted ascending."""
    by_turn: dict[int, list[dict[str, float]]] = defaultdict(list)
    for t in targets:
        by_turn[t.turn_index].append(t.values)
    return {i: {**_mean(rows), "count": float(len(rows))} for i, rows in sorted(by_turn.items())}


@dataclass
class Summary:
    """Aggregates of one system under one protocol."""

    micro: dict[str, float]
    macro: dict[str, float]
    by_turn: dict[int, dict[str, float]]
    warm: dict[str, float]
    cold: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)


def summarize(*, targets: Sequence[ScoredTarget]) -> Summary:
    """Micro, macro, by-turn and warm/cold (micro) aggregates of scored targets.

    Args:
        targets: one ScoredTarget per evaluated turn.
    Returns:
        A Summary; ``counts`` holds targets, conversations, warm and cold target counts.
    """
    warm = [t for t in targets if not t.cold]
    cold = [t for t in targets if t.cold]
    return Summary(
        micro=micro_average(targets=targets), macro=macro_average(targets=targets),
        by_turn=by_turn_average(targets=targets),
        warm=micro_average(targets=warm), cold=micro_average(targets=cold),
        counts={"targets": len(targets),
                "conversations": len({t.conversation_id for t in targets}),
                "warm_targets": len(warm), "cold_targets": len(cold)},
    )


def paired_bootstrap(a: Sequence[ScoredTarget], b: Sequence[ScoredTarget], *, metric: str = "mrr",
                     samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Difference of micro-averaged ``metric`` (a - b) with a 95% interval, resampling whole
    conversations (turns of one conversation are not independent).

    Args:
        a, b: scored targets of two systems on the same targets, in the same order.
        metric: which value to compare.
        samples: bootstrap resamples.
        seed: resampling seed.
    Returns:
        ``{"diff", "low", "high", "p_a_better"}``: the observed difference, the 2.5% and 97.5%
        percentiles of the resampled differences, and the share of resamples where a > b.
    Raises:
        ValueError: the two lists do not cover the same targets.
    """
    if [(t.conversation_id, t.turn_index) for t in a] != [(t.conversation_id, t.turn_index)
                                                          for t in b]:
        raise ValueError("paired_bootstrap needs both systems' scores on the same targets")
    convs: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(a):
        convs[t.conversation_id].append(i)
    groups = list(convs.values())
    va = np.array([t.values[metric] for t in a])
    vb = np.array([t.values[metric] for t in b])
    # per conversation: sum of differences and number of targets
    sums = np.array([float((va[g] - vb[g]).sum()) for g in groups])
    sizes = np.array([len(g) for g in groups], dtype=np.float64)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(groups), size=(samples, len(groups)))
    diffs = sums[pick].sum(1) / sizes[pick].sum(1)
    return {"diff": float((va - vb).mean()) if len(va) else 0.0,
            "low": float(np.percentile(diffs, 2.5)), "high": float(np.percentile(diffs, 97.5)),
            "p_a_better": float((diffs > 0).mean())}
