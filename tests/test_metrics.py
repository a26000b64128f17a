"""Ranking metrics against hand-computed answers (CPCD eval.py semantics)."""

from __future__ import annotations

import pytest

from talkplay.evaluate.metrics import (
    ScoredTarget,
    by_turn_average,
    collapse_to_clusters,
    first_hit_rank,
    hit_at_k,
    macro_average,
    micro_average,
    reciprocal_rank,
    summarize,
    target_metrics,
)
from talkplay.evaluate.run import clean_ranking


def test_reciprocal_rank_and_hit():
    preds = ["a", "b", "c", "d"]
    assert reciprocal_rank(predictions=preds, gold=["c"]) == pytest.approx(1 / 3)
    assert reciprocal_rank(predictions=preds, gold=["c"], k=2) == 0.0
    assert reciprocal_rank(predictions=preds, gold=["z"]) == 0.0
    # The first relevant item counts, whichever gold item it is.
    assert reciprocal_rank(predictions=preds, gold=["d", "b"]) == pytest.approx(1 / 2)
    assert hit_at_k(predictions=preds, gold=["c"], k=3) == 1.0
    assert hit_at_k(predictions=preds, gold=["c"], k=2) == 0.0
    assert reciprocal_rank(predictions=[], gold=["a"]) == 0.0


def test_clusters_count_once_in_predictions_and_gold():
    cluster_of = {"a1": "A", "a2": "A", "a3": "A"}
    preds = ["a1", "a2", "a3", "b", "c"]
    # Collapsed predictions are [A, b, c]: c is at rank 3, not 5.
    assert collapse_to_clusters(preds, cluster_of) == ["A", "b", "c"]
    assert first_hit_rank(predictions=preds, gold=["c"], cluster_of=cluster_of) == 3
    assert reciprocal_rank(predictions=preds, gold=["c"], cluster_of=cluster_of) == pytest.approx(1 / 3)
    assert hit_at_k(predictions=preds, gold=["c"], k=3, cluster_of=cluster_of) == 1.0
    assert hit_at_k(predictions=preds, gold=["c"], k=3) == 0.0
    # Another recording of a gold song is a hit.
    assert reciprocal_rank(predictions=["b", "a2"], gold=["a1"], cluster_of=cluster_of) == 0.5
    assert reciprocal_rank(predictions=["b", "a2"], gold=["a1"]) == 0.0


def test_target_metrics_hand_computed():
    m = target_metrics(predictions=[str(i) for i in range(100)], gold=["7", "50"], ks=(1, 5, 10, 100))
    assert m == {"mrr": pytest.approx(1 / 8), "hit@1": 0.0, "hit@5": 0.0, "hit@10": 1.0,
                 "hit@100": 1.0}
    # MRR is cut at max(ks): a hit at rank 11 with ks up to 10 is worth nothing.
    m = target_metrics(predictions=[str(i) for i in range(20)], gold=["10"], ks=(1, 10))
    assert m == {"mrr": 0.0, "hit@1": 0.0, "hit@10": 0.0}


def test_seed_removal_then_cluster_dedup():
    # Seeds are dropped from predictions, cluster-wise, before ranks are counted.
    cluster_of = {"s": "S", "s2": "S", "x1": "X", "x2": "X"}
    ranking = clean_ranking(["s2", "x1", "x2", "g", "s", "h"], exclude={"s"}, cluster_of=cluster_of, k=10)
    assert ranking == ["x1", "g", "h"]
    assert reciprocal_rank(predictions=ranking, gold=["g"], cluster_of=cluster_of) == 0.5
    assert clean_ranking(["a", "b", "c"], exclude=set(), cluster_of={}, k=2) == ["a", "b"]


def _targets():
    # Conversation x: RR 1, 0, 0 at turns 0, 1, 2; conversation y: RR 0.5 at turn 0 (cold).
    return [ScoredTarget("x", 0, {"mrr": 1.0, "hit@1": 1.0}),
            ScoredTarget("x", 1, {"mrr": 0.0, "hit@1": 0.0}),
            ScoredTarget("x", 2, {"mrr": 0.0, "hit@1": 0.0}),
            ScoredTarget("y", 0, {"mrr": 0.5, "hit@1": 0.0}, cold=True)]


def test_micro_macro_by_turn():
    t = _targets()
    assert micro_average(targets=t) == {"mrr": pytest.approx(1.5 / 4), "hit@1": pytest.approx(0.25)}
    assert macro_average(targets=t)["mrr"] == pytest.approx((1 / 3 + 0.5) / 2)
    assert macro_average(targets=t)["hit@1"] == pytest.approx((1 / 3 + 0) / 2)
    turns = by_turn_average(targets=t)
    assert list(turns) == [0, 1, 2]
    assert turns[0] == {"mrr": pytest.approx(0.75), "hit@1": pytest.approx(0.5), "count": 2.0}
    assert turns[2]["mrr"] == 0.0
    assert micro_average(targets=[]) == {}


def test_summarize_warm_cold():
    s = summarize(targets=_targets())
    assert s.warm["mrr"] == pytest.approx(1 / 3)
    assert s.cold["mrr"] == pytest.approx(0.5)
    assert s.counts == {"targets": 4, "conversations": 2, "warm_targets": 3, "cold_targets": 1}


def test_token_matching_hand_computed():
    from talkplay.data.schema import Track
    from talkplay.evaluate.report import token_matching

    tracks = {t.id: t for t in [Track("w1", "a"), Track("w2", "b"), Track("c1", "c", cold=True)]}
    infos = [{"codes": [[1, 2, 3, 4, 5]], "exact_match": [True], "matched_ids": ["w1"]},
             {"codes": [[0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], "exact_match": [False, True],
              "matched_ids": [None, "c1"]},
             {}]
    m = token_matching(infos, tracks)
    assert m["generated"] == 3 and m["exact"] == 2
    assert m["exact_share"] == pytest.approx(2 / 3)
    # One warm match over 2 warm items; one cold match over 1 cold item.
    assert m["warm_rate"] == pytest.approx(0.5) and m["cold_rate"] == pytest.approx(1.0)
    assert m["warm_items_matched"] == pytest.approx(0.5) and m["cold_items"] == 1
    assert token_matching([{}, {"other": 1}], tracks) is None
    assert "warm_rate" not in token_matching([{"codes": [[1] * 5], "exact_match": [True]}], tracks)


def test_paired_bootstrap_resamples_conversations():
    from talkplay.evaluate.metrics import ScoredTarget, paired_bootstrap

    def scored(values):
        return [ScoredTarget(f"c{i // 4}", i % 4, {"mrr": v}) for i, v in enumerate(values)]

    same = scored([0.5, 0.0, 1.0, 0.25] * 10)
    r = paired_bootstrap(same, same)
    assert r["diff"] == r["low"] == r["high"] == 0.0 and r["p_a_better"] == 0.0
    better = scored([1.0] * 40)
    r = paired_bootstrap(better, same)
    assert r["diff"] > 0 and 0 < r["low"] <= r["diff"] <= r["high"] and r["p_a_better"] == 1.0
    # one conversation carries the whole gain: the interval must reach down to (almost) zero
    lucky = scored([1.0] * 4 + [0.0] * 36)
    r = paired_bootstrap(lucky, scored([0.0] * 40))
    assert r["diff"] == pytest.approx(0.1) and r["low"] == 0.0 and r["p_a_better"] < 0.7
    with pytest.raises(ValueError, match="same targets"):
        paired_bootstrap(same, same[:-1])
