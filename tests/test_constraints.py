"""CatalogTrie and the music token-id table against brute force over the catalog's tuples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkplay.recommend.constraints import CatalogTrie, music_id_table
from talkplay.tokenize.grammar import MISSING, vocabulary


def brute_allowed(tuples: set[tuple[int, ...]], prefix: tuple[int, ...]) -> list[int]:
    if len(prefix) == 5:
        return []
    return sorted({t[len(prefix)] for t in tuples if t[:len(prefix)] == prefix})


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), k=st.sampled_from([1, 2, 3, 7, 1024]), seed=st.integers(0, 10**6),
       missing=st.floats(0, 0.5))
def test_allowed_equals_brute_force(n, k, seed, missing):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, size=(n, 5))
    codes[rng.random(codes.shape) < missing] = MISSING
    trie = CatalogTrie(codes)
    tuples = {tuple(int(c) for c in row) for row in codes}
    assert len(trie) == len(tuples)
    prefixes = [()]
    for row in codes[:10]:  # every prefix of some catalog tuples ...
        prefixes += [tuple(int(c) for c in row[:j]) for j in range(1, 6)]
    for _ in range(10):  # ... and random ones, mostly absent
        prefixes.append(tuple(int(c) for c in rng.integers(-1, k, size=rng.integers(1, 6))))
    for prefix in prefixes:
        assert trie.allowed(prefix).tolist() == brute_allowed(tuples, prefix), prefix
        if len(prefix) == 5:
            assert (prefix in trie) == (prefix in tuples)


def test_token_ids_follow_the_table_and_missing_maps_to_none():
    k = {"playlist": 3, "semantic": 2, "metadata": 2, "lyrics": 1, "audio": 2}
    vocab = {tok: 100 + i for i, tok in enumerate(vocabulary(k))}
    table = music_id_table(k, vocab.__getitem__)
    assert table.shape == (5, 4)
    assert table[0, MISSING] == vocab["<|playlist-none|>"]
    assert table[1, 1] == vocab["<|semantic-1|>"]
    assert table[3, 1] == -1  # lyrics has only code 0
    trie = CatalogTrie(np.array([[0, 1, 0, MISSING, 1], [2, 0, 1, 0, MISSING], [0, 1, 1, 0, 0]]))
    assert trie.allowed_token_ids((), table).tolist() == [vocab["<|playlist-0|>"],
                                                         vocab["<|playlist-2|>"]]
    assert trie.allowed_token_ids((0, 1, 0), table).tolist() == [vocab["<|lyrics-none|>"]]
    assert trie.allowed_token_ids((0, 1, 0, MISSING, 1), table).tolist() == []
    assert trie.allowed_token_ids((1,), table).tolist() == []


def test_music_id_table_rejects_missing_or_shared_ids():
    with pytest.raises(ValueError, match="has no id"):
        music_id_table(2, lambda t: -1)
    with pytest.raises(ValueError, match="share token ids"):
        music_id_table(2, lambda t: 0)


def test_paper_scale_keys_fit_and_stay_exact():
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 1024, size=(5000, 5))
    trie = CatalogTrie(codes)
    assert trie.bits == 11
    for row in codes[:50]:
        t = tuple(int(c) for c in row)
        assert t in trie
        assert int(row[4]) in trie.allowed(t[:4]).tolist()
