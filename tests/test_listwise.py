"""The hybrid's default weight fit: the listwise softmax fit (``evaluate.listwise``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from talkplay.evaluate.hybrid import FEATURES, SOURCES, HybridConfig, Pool, fit_weights
from talkplay.evaluate.listwise import fit_listwise


def _planted(seed: int, queries: int, w_true: np.ndarray, n: int = 15):
    """Pools of random features whose gold candidate is drawn from softmax(F @ w_true)."""
    rng = np.random.default_rng(seed)
    feats, gold = [], []
    for _ in range(queries):
        f = rng.normal(size=(n, len(w_true)))
        p = np.exp(f @ w_true - (f @ w_true).max())
        g = np.zeros(n, dtype=bool)
        g[rng.choice(n, p=p / p.sum())] = True
        feats.append(f)
        gold.append(g)
    return feats, gold


def _mrr(feats, gold, w) -> float:
    ranks = []
    for f, g in zip(feats, gold, strict=True):
        order = np.argsort(-(f @ w), kind="stable")
        ranks.append(1.0 / (np.flatnonzero(g[order])[0] + 1))
    return float(np.mean(ranks))


def test_listwise_fit_recovers_the_weights_that_generated_the_answers():
    w_true = np.array([2.0, -1.0, 0.5, 0.0])
    feats, gold = _planted(0, 2000, w_true)
    w = fit_listwise(feats, gold)
    assert np.allclose(w, w_true, atol=0.2), w
    held, held_gold = _planted(1, 500, w_true)  # and it ranks unseen queries as the truth does
    assert _mrr(held, held_gold, w) == pytest.approx(_mrr(held, held_gold, w_true), abs=0.01)
    assert _mrr(held, held_gold, w) > _mrr(held, held_gold, np.ones(4)) + 0.1


def test_listwise_fit_stays_finite_on_separable_pools_and_skips_pools_without_an_answer():
    feats = [np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 1.0], [0.0, 1.0]]),
             np.array([[5.0, 5.0]])]  # the last has no right answer: it says nothing
    gold = [np.array([True, False]), np.array([True, False]), np.array([False])]
    w = fit_listwise(feats, gold)
    assert np.isfinite(w).all() and w[0] > 1.0 and abs(w[1]) < 1e-3  # the l2 keeps it finite
    assert np.allclose(fit_listwise(feats[:2], gold[:2]), w)
    assert fit_listwise([np.zeros((3, 2))], [np.zeros(3, bool)]).tolist() == [0.0, 0.0]


def test_listwise_fit_names_what_is_wrong_with_its_input():
    with pytest.raises(ValueError, match="query 0: its features hold values that are not finite"):
        fit_listwise([np.array([[np.inf, 0.0]])], [np.array([True])])
    with pytest.raises(ValueError, match="query 1: 2 candidates but a gold mask of 1"):
        fit_listwise([np.zeros((1, 2)), np.zeros((2, 2))], [np.ones(1, bool), np.ones(1, bool)])
    with pytest.raises(ValueError, match="one width"):
        fit_listwise([np.zeros((1, 2)), np.zeros((1, 3))], [np.ones(1, bool)] * 2)
    with pytest.raises(ValueError, match="sample_weight must hold 1 finite weights"):
        fit_listwise([np.zeros((1, 2))], [np.ones(1, bool)], sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="1 feature matrices but 2 gold masks"):
        fit_listwise([np.zeros((1, 2))], [np.ones(1, bool)] * 2)


def _hybrid(pools, ids, active):
    from talkplay.evaluate.hybrid import HybridRecommender

    fake = SimpleNamespace(ids=ids, active=active, cfg=HybridConfig(),
                           pool=lambda history, exclude: pools[history])
    for name in ("effective", "rank", "order"):
        method = getattr(HybridRecommender, name)
        setattr(fake, name, lambda pool, w=None, lm_top="cfg", m=method: m(fake, pool, w, lm_top))
    return fake


def _tied_world(seed: int, relabel: np.ndarray | None = None):
    """Pools where ``named`` marks one candidate in a few queries and BM25 carries a weak
    signal, and the gold track is always the pool's lowest catalog row: a ranking left to ties
    (catalog order) finds it, a real signal mostly does not."""
    rng = np.random.default_rng(seed)
    ids = [f"t{i}" for i in range(200)]
    relabel = np.arange(200) if relabel is None else relabel
    pools, targets = {}, []
    for q in range(30):
        rows = np.sort(rng.choice(200, 10, replace=False))
        feats = np.zeros((10, len(FEATURES)))
        feats[:, FEATURES.index("bm25")] = rng.random(10)
        feats[0, FEATURES.index("bm25")] += 0.3  # weakly towards the gold
        if q % 5 == 0:
            feats[rng.integers(10), FEATURES.index("named")] = 1.0
        pools[q] = Pool(relabel[rows], feats, np.ones((10, len(SOURCES)), bool))
        targets.append(SimpleNamespace(history=q, exclude=(), gold=[ids[int(relabel[rows[0]])]]))
    return _hybrid(pools, ids, ["bm25", "named"]), targets


def test_softmax_fit_is_the_default_and_ignores_what_ties_would_leave_to_catalog_order():
    fake, targets = _tied_world(0)
    fitted = fit_weights(fake, targets, {}, lm_tops=())
    assert fitted["method"] == "softmax" and "starts" not in fitted
    assert fake.cfg.weights["bm25"] > 0 and set(fake.cfg.weights) == set(FEATURES)
    assert all(fake.cfg.weights[f] == 0.0 for f in FEATURES if f not in fake.active)
    soft = dict(fake.cfg.weights)
    # Coordinate ascent on MRR with ties by catalog row prefers leaving the ranking to ties
    # here (bm25 0: the gold is each pool's lowest row); the softmax fit cannot see that order:
    # relabelling the catalog rows changes nothing in its weights.
    ascent, _ = _tied_world(0)
    fit_weights(ascent, targets, {}, lm_tops=(), method="ascent")
    assert ascent.cfg.weights["bm25"] == 0.0
    shuffled, moved = _tied_world(0, relabel=np.random.default_rng(9).permutation(200))
    fit_weights(shuffled, moved, {}, lm_tops=())
    assert shuffled.cfg.weights == pytest.approx(soft)
    with pytest.raises(ValueError, match="unknown hybrid fit method 'grid'"):
        fit_weights(fake, targets, {}, method="grid")
