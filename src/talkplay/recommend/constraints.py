"""Which music tokens may come next: the token-id table and a trie over the catalog's 5-tuples.

Token-id table (``music_id_table``): int64 ``[5, K_max + 1]``; ``table[m, c]`` is the token id of
``<|{modality m}-c|>`` for codes ``0 <= c < K_m``, and the last column holds ``<|{m}-none|>``, so
``table[m, MISSING]`` (Python's index -1) is the none token without a special case. Columns past
``K_m`` for a modality with fewer codes are -1 (no token).

Trie (``CatalogTrie``): the distinct catalog tuples, each packed into one int64 key of five
fixed-width fields (code + 1, so MISSING -> 0) and sorted. Sorted keys are a lexicographic order,
so the tuples under a prefix are one contiguous slice (two binary searches), and within that slice
the next field is already sorted, so its distinct values need no sort. Levels 0 and 1 are
precomputed because their slices are the largest (the whole catalog, one playlist cluster).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from talkplay.tokenize.grammar import MISSING, MODALITIES, token

_N = len(MODALITIES)


def music_id_table(k: int | Mapping[str, int], token_to_id: Callable[[str], int]) -> np.ndarray:
    """The (position, code) -> token id table for a tokenizer holding the music vocabulary.

    Args:
        k: codes per modality (one int for all, or modality -> K_m, e.g. ``Codebook.k``).
        token_to_id: token text -> id (e.g. ``tokenizer.convert_tokens_to_ids``).
    Returns:
        int64 [5, K_max + 1] as described in the module docstring.
    Raises:
        ValueError: a music token has no id of its own (negative, or shared with another token).
    """
    ks = [k] * _N if isinstance(k, int) else [int(k[m]) for m in MODALITIES]
    k_max = max(ks)
    table = np.full((_N, k_max + 1), -1, dtype=np.int64)
    for m, name in enumerate(MODALITIES):
        for code in [*range(ks[m]), MISSING]:
            tid = token_to_id(token(name, code))
            if tid is None or int(tid) < 0:
                raise ValueError(f"token {token(name, code)} has no id (was the vocabulary added?)")
            table[m, code] = int(tid)
    ids = table[table >= 0]
    if len(np.unique(ids)) != len(ids):
        raise ValueError("music tokens share token ids (unknown-token fallback?): "
                         "add grammar.vocabulary(k) to the tokenizer first")
    return table


def scored_positions(codes: np.ndarray) -> int:
    """How many leading music positions a catalog's tracks differ in: the positions after them
    hold one code for every track (a modality the whole catalog lacks, such as the tags, lyrics
    and audio of a CPCD import, is ``none`` everywhere). Those tail tokens are fixed by the
    catalog, so the beam and the block scorer complete them without running the model
    (``engine.beam_music_block``'s ``scored``).

    Args:
        codes: int [n_items, 5] (e.g. ``Codebook.codes``).
    Returns:
        1..5 (5 when the last position varies; at least 1, so the first token is always scored).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != _N:
        raise ValueError(f"codes must be [n_items, {_N}], got shape {codes.shape}")
    varies = (codes != codes[:1]).any(axis=0) if len(codes) else np.ones(_N, dtype=bool)
    where = np.flatnonzero(varies)
    return int(where[-1]) + 1 if len(where) else 1


class CatalogTrie:
    """Prefix tree over catalog 5-tuples for constrained decoding.

    Args:
        codes: int [n_items, 5], MISSING allowed (e.g. ``Codebook.codes``); duplicates collapse.
    """

    def __init__(self, codes: np.ndarray) -> None:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != _N:
            raise ValueError(f"codes must be [n_items, {_N}], got shape {codes.shape}")
        if codes.size and codes.min() < MISSING:
            raise ValueError(f"codes must be >= {MISSING} (MISSING)")
        top = int(codes.max()) + 1 if codes.size else 1  # largest field value (code + 1)
        self.bits = max(1, top.bit_length())
        if self.bits * _N > 62:
            raise ValueError(f"codes up to {top - 1} do not fit a 62-bit key")
        self._shift = [self.bits * (_N - 1 - m) for m in range(_N)]
        self._field = (1 << self.bits) - 1
        fields = codes + 1  # [n, 5], MISSING -> 0
        keys = np.zeros(len(codes), dtype=np.int64)
        for m in range(_N):
            keys |= fields[:, m] << self._shift[m]
        self.keys = np.unique(keys)  # sorted distinct tuples
        # Level 0: distinct first codes. Level 1: first code -> distinct second codes.
        self._level0 = self._distinct(self.keys >> self._shift[0]) - 1
        pairs = self._distinct(self.keys >> self._shift[1])  # sorted distinct (f0, f1) pairs
        firsts = pairs >> self.bits
        cuts = np.searchsorted(firsts, self._level0 + 1, side="right")
        starts = np.concatenate([[0], cuts[:-1]])
        self._level1 = {int(c): (pairs[a:b] & self._field) - 1
                        for c, a, b in zip(self._level0, starts, cuts, strict=True)}

    def __len__(self) -> int:
        """Number of distinct catalog tuples."""
        return len(self.keys)

    def __contains__(self, codes: Sequence[int]) -> bool:
        if len(codes) != _N:
            return False
        lo, hi = self._range(tuple(int(c) for c in codes))
        return hi > lo

    def allowed(self, prefix: Sequence[int]) -> np.ndarray:
        """Codes that may follow ``prefix`` (0..4 codes) and still lead to a catalog tuple.

        Args:
            prefix: the codes chosen so far, in MODALITIES order.
        Returns:
            int64 [j], ascending (MISSING first when allowed); empty for a complete tuple or a
            prefix that no catalog tuple has.
        """
        prefix = tuple(int(c) for c in prefix)
        if len(prefix) >= _N:
            if len(prefix) > _N:
                raise ValueError(f"a prefix has at most {_N} codes, got {len(prefix)}")
            return np.empty(0, dtype=np.int64)
        if len(prefix) == 0:
            return self._level0.copy()
        if len(prefix) == 1:
            got = self._level1.get(prefix[0])
            return np.empty(0, dtype=np.int64) if got is None else got.copy()
        lo, hi = self._range(prefix)
        nxt = (self.keys[lo:hi] >> self._shift[len(prefix)]) & self._field
        return self._distinct(nxt) - 1

    def allowed_token_ids(self, prefix: Sequence[int], music_ids: np.ndarray) -> np.ndarray:
        """Token ids that may follow ``prefix``: ``music_ids[len(prefix), allowed(prefix)]``.

        Args:
            prefix: the codes chosen so far.
            music_ids: int64 [5, K_max + 1] from ``music_id_table``.
        Returns:
            int64 [j] token ids, in the order of ``allowed(prefix)``.
        """
        codes = self.allowed(prefix)
        if len(codes) == 0:
            return codes
        ids = np.asarray(music_ids)[len(prefix), codes]
        if (ids < 0).any():
            raise ValueError(f"music_ids has no token for some codes at position {len(prefix)}")
        return ids

    def _range(self, prefix: tuple[int, ...]) -> tuple[int, int]:
        """[lo, hi) slice of ``keys`` whose first len(prefix) fields equal prefix."""
        if len(prefix) > _N:
            raise ValueError(f"a prefix has at most {_N} codes, got {len(prefix)}")
        if any(c < MISSING for c in prefix):
            raise ValueError(f"codes must be >= {MISSING}, got {prefix}")
        if any(c + 1 > self._field for c in prefix):
            return 0, 0
        if not prefix:
            return 0, len(self.keys)
        lo_key = 0
        for m, c in enumerate(prefix):
            lo_key |= (c + 1) << self._shift[m]
        hi_key = lo_key + (1 << self._shift[len(prefix) - 1])
        return (int(np.searchsorted(self.keys, lo_key, side="left")),
                int(np.searchsorted(self.keys, hi_key, side="left")))

    @staticmethod
    def _distinct(sorted_values: np.ndarray) -> np.ndarray:
        """Distinct values of an ascending array without sorting again."""
        if len(sorted_values) == 0:
            return sorted_values.astype(np.int64)
        keep = np.empty(len(sorted_values), dtype=bool)
        keep[0] = True
        np.not_equal(sorted_values[1:], sorted_values[:-1], out=keep[1:])
        return sorted_values[keep].astype(np.int64)


__all__ = ["CatalogTrie", "music_id_table", "scored_positions"]
