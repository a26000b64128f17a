"""CodeIndex against a brute-force reference: pure-Python scoring and a full sort."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkplay.tokenize.grammar import LOOKUP_WEIGHTS, MISSING, MODALITIES
from talkplay.tokenize.lookup import CodeIndex

TOL = 1e-9


def reference_keys(codes, centroids, popularity, query):
    """Per item: (match score, tie-break similarity, popularity, row), computed one by one."""
    keys = []
    for row, item in enumerate(codes.tolist()):
        score, sim = 0, 0.0
        for m, name in enumerate(MODALITIES):
            if item[m] == query[m]:
                score += LOOKUP_WEIGHTS[m]
            elif centroids is not None and item[m] != MISSING and query[m] != MISSING:
                a = [float(x) for x in centroids[name][item[m]]]
                b = [float(x) for x in centroids[name][query[m]]]
                na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
                if na > 0 and nb > 0:
                    sim += LOOKUP_WEIGHTS[m] * sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)
        keys.append((score, sim, float(popularity[row]) if popularity is not None else 0.0, row))
    return keys


def reference_rank(keys, k, exclude=()):
    ranked = sorted((key for key in keys if key[3] not in set(exclude)),
                    key=lambda t: (-t[0], -t[1], -t[2], t[3]))
    return ranked[:k]


def assert_valid_ranking(rows, scores, keys, k, exclude=()):
    """rows is a correct top-k under the documented key, with similarity compared to TOL
    (BLAS and the scalar reference may round differently)."""
    expect = reference_rank(keys, k, exclude)
    assert len(rows) == len(expect)
    assert len(set(rows.tolist())) == len(rows)
    assert not set(rows.tolist()) & set(exclude)
    assert scores.tolist() == [float(t[0]) for t in expect]

    def better(a, b):  # a strictly before b, beyond float noise
        if a[0] != b[0]:
            return a[0] > b[0]
        if abs(a[1] - b[1]) > TOL:
            return a[1] > b[1]
        if a[1] != b[1]:  # equal up to float noise: either order is right
            return False
        if a[2] != b[2]:
            return a[2] > b[2]
        return a[3] < b[3]

    got = [keys[r] for r in rows.tolist()]
    for a, b in zip(got, got[1:], strict=False):
        assert not better(b, a), (a, b)
    if got:
        chosen = set(rows.tolist())
        for key in keys:
            if key[3] not in chosen and key[3] not in set(exclude):
                assert not better(key, got[-1]), (key, got[-1])


@st.composite
def catalogs(draw, with_centroids=True):
    n = draw(st.integers(1, 40))
    k_m = draw(st.integers(1, 4))  # few codes -> many collisions
    missing = draw(st.floats(0, 0.5))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k_m, size=(n, 5)).astype(np.int32)
    codes[rng.random((n, 5)) < missing] = MISSING
    centroids = None
    if with_centroids:
        # small integers: duplicated and zero centroids happen, and exact ties with them
        centroids = {m: rng.integers(-2, 3, size=(k_m, 3)).astype(np.float32) for m in MODALITIES}
    popularity = rng.integers(0, 3, size=n).astype(np.float64) if draw(st.booleans()) else None
    if draw(st.booleans()):
        query = tuple(int(c) for c in codes[rng.integers(n)])  # an item's own tuple
    else:
        query = tuple(int(c) for c in rng.integers(-1, k_m, size=5))
    k = draw(st.integers(0, n + 5))
    exclude = sorted(set(rng.integers(0, n, size=draw(st.integers(0, 3))).tolist()))
    return codes, centroids, popularity, query, k, exclude


@settings(max_examples=200, deadline=None)
@given(catalogs(with_centroids=True))
def test_rank_matches_reference_with_centroids(case):
    codes, centroids, popularity, query, k, exclude = case
    index = CodeIndex(codes, centroids, popularity)
    keys = reference_keys(codes, centroids, popularity, query)
    rows, scores = index.rank(query, k, exclude_rows=exclude)
    assert rows.dtype == np.int64
    assert_valid_ranking(rows, scores, keys, k, exclude)


@settings(max_examples=200, deadline=None)
@given(catalogs(with_centroids=False))
def test_rank_equals_reference_exactly_without_centroids(case):
    codes, _, popularity, query, k, exclude = case
    index = CodeIndex(codes, None, popularity)
    expect = reference_rank(reference_keys(codes, None, popularity, query), k, exclude)
    rows, scores = index.rank(query, k, exclude_rows=exclude)
    assert rows.tolist() == [t[3] for t in expect]
    assert scores.tolist() == [float(t[0]) for t in expect]


@settings(max_examples=100, deadline=None)
@given(catalogs())
def test_exact_matches_come_first(case):
    codes, centroids, popularity, query, _, _ = case
    index = CodeIndex(codes, centroids, popularity)
    exact = [r for r, item in enumerate(codes.tolist()) if tuple(item) == query]
    assert index.exact(query).tolist() == exact
    rows, scores = index.rank(query, len(codes))
    assert sorted(rows[:len(exact)].tolist()) == exact
    assert all(s == sum(LOOKUP_WEIGHTS) for s in scores[:len(exact)])
    assert all(s < sum(LOOKUP_WEIGHTS) for s in scores[len(exact):])


def test_missing_matches_missing():
    codes = np.array([[MISSING, 1, 1, 1, 1], [0, 1, 1, 1, 1], [MISSING, 0, 0, 0, 0]])
    rows, scores = CodeIndex(codes).rank((MISSING, 1, 1, 1, 1), 3)
    assert rows.tolist() == [0, 1, 2]
    assert scores.tolist() == [55.0, 30.0, 25.0]


def test_exclusion_and_k_larger_than_catalog():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(30, 5))
    index = CodeIndex(codes, popularity=rng.random(30))
    rows, _ = index.rank(tuple(codes[4]), 100, exclude_rows={4, 7})
    assert len(rows) == 28
    assert 4 not in rows and 7 not in rows
    assert sorted(rows.tolist()) == [r for r in range(30) if r not in (4, 7)]
    assert len(index.rank(tuple(codes[4]), 0)[0]) == 0
    same = index.rank(tuple(codes[4]), 100, exclude_rows=np.array([7, 4, 7]))[0]
    assert same.tolist() == rows.tolist()


def test_fill_with_zero_score_items_uses_similarity_then_popularity():
    # query matches nothing; items differ only in how close their audio centroid is
    codes = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 2], [1, 1, 1, 1, 2]])
    cents = {m: np.eye(3, dtype=np.float32) for m in MODALITIES}
    cents["audio"] = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)
    index = CodeIndex(codes, cents, popularity=np.array([5.0, 0.0, 1.0]))
    rows, scores = index.rank((0, 0, 0, 0, 0), 3)
    assert rows.tolist() == [2, 1, 0]  # audio code 2 is closer to code 0; then popularity
    assert scores.tolist() == [0.0, 0.0, 0.0]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="codes must be"):
        CodeIndex(np.zeros((3, 4), dtype=np.int32))
    with pytest.raises(ValueError, match=">= -1"):
        CodeIndex(np.full((2, 5), -2))
    index = CodeIndex(np.zeros((3, 5), dtype=np.int32))
    with pytest.raises(ValueError, match="5 codes"):
        index.rank((0, 0), 1)
    with pytest.raises(ValueError, match="exclude_rows"):
        index.rank((0,) * 5, 1, exclude_rows=[3])
    with pytest.raises(ValueError, match="centroids"):
        CodeIndex(np.full((2, 5), 4), {m: np.zeros((2, 3)) for m in MODALITIES})


def test_rank_batch_equals_rank():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 8, size=(500, 5))
    cents = {m: rng.normal(size=(8, 4)) for m in MODALITIES}
    index = CodeIndex(codes, cents, rng.random(500))
    queries = codes[:10]
    for q, (rows, scores) in zip(queries, index.rank_batch(queries, 20), strict=True):
        r2, s2 = index.rank(tuple(q), 20)
        assert rows.tolist() == r2.tolist() and scores.tolist() == s2.tolist()
