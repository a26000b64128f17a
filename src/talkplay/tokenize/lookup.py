"""Reverse lookup: five generated codes -> ranked catalog rows (the paper's exact / partial match).

Ranking, best first (the whole key is documented because ties are common):

1. match score, higher first: the sum of ``LOOKUP_WEIGHTS`` (25, 16, 9, 4, 1) over the positions
   where the item's code equals the query's. ``MISSING`` matches ``MISSING`` (``<|m-none|>`` is a
   real token). An exact match scores 55 and no partial match can, so exact matches come first;
   partial matches follow "by cumulative weight" as in the paper. Different patterns can tie
   (playlist alone = semantic + metadata = 25).
2. centroid similarity, higher first: sum over the *unmatched* positions of
   ``weight * cos(centroid[item code], centroid[query code])``; a MISSING code on either side, or a
   zero centroid, contributes 0; the sum is rounded to 9 decimals so float noise decides nothing.
   Without centroids this is 0 for every item.
3. popularity, higher first (0 for all items when none is given).
4. row, lower first.

Items that match nothing (score 0) still fill the list, ranked by the same key, so ``rank`` returns
``min(k, n_items - excluded)`` rows.

Speed: per-modality posting lists (CSR: the sorted rows of each code) give the candidates, which
are scored with a small scratch bitmask, so a query costs O(sum of its five posting-list lengths)
(about 5 n / K for a balanced codebook), not O(n). Only when fewer than ``k`` items match anything
does the zero-score fill need every item's similarity (a full pass; without centroids a
precomputed popularity order is used instead).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from talkplay.linalg import normalise
from talkplay.tokenize.grammar import LOOKUP_WEIGHTS, MISSING, MODALITIES

_N = len(MODALITIES)
_EXCLUDED = np.uint8(1 << _N)
"""Scratch bit marking excluded rows (bits 0..4 mark matched modalities)."""


class CodeIndex:
    """Posting lists over a catalog's codes, for exact and weighted partial lookup.

    Args:
        codes: int [n_items, 5] in MODALITIES order, ``MISSING`` (-1) where absent
            (e.g. ``Codebook.codes``).
        centroids: modality -> float [K_m, d_m] (e.g. ``Codebook.centroids``); optional, used only
            for the similarity tie-break.
        popularity: float [n_items], higher = more popular; optional, used only for ties.
        weights: per-position match weights (default: the paper's 25, 16, 9, 4, 1).
    """

    def __init__(self, codes: np.ndarray, centroids: Mapping[str, np.ndarray] | None = None,
                 popularity: np.ndarray | None = None,
                 weights: Sequence[float] = LOOKUP_WEIGHTS) -> None:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != _N:
            raise ValueError(f"codes must be [n_items, {_N}], got shape {codes.shape}")
        if codes.size and codes.min() < MISSING:
            raise ValueError(f"codes must be >= {MISSING} (MISSING); found {int(codes.min())}")
        self.codes = codes.astype(np.int32, copy=False)
        self.n = int(codes.shape[0])
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.shape != (_N,):
            raise ValueError(f"weights must have {_N} entries, got {len(self.weights)}")
        maxcode = self.codes.max(axis=0) if self.n else np.full(_N, MISSING)
        self.popularity = (np.zeros(self.n) if popularity is None
                           else np.asarray(popularity, dtype=np.float64))
        if self.popularity.shape != (self.n,):
            raise ValueError(f"popularity must be [{self.n}], got {self.popularity.shape}")
        # Unit centroids with a zero row prepended at index 0 for MISSING: table[code + 1].
        self._unit: list[np.ndarray] | None = None
        if centroids is not None:
            self._unit = []
            for m, name in enumerate(MODALITIES):
                c = np.asarray(centroids[name], dtype=np.float64)
                if c.shape[0] <= maxcode[m]:
                    raise ValueError(f"centroids[{name!r}] has {c.shape[0]} rows but codes use "
                                     f"code {int(maxcode[m])}")
                unit = normalise(c, np.float64)
                self._unit.append(np.vstack([np.zeros((1, c.shape[1])), unit]))
        # Posting lists, CSR per modality: rows of code c are order[m][start[m][c+1]:start[m][c+2]],
        # ascending (stable sort). Shapes: order [n] int32, start [K_m + 2] int64.
        self._order, self._start = [], []
        for m in range(_N):
            col = self.codes[:, m] + 1
            self._order.append(np.argsort(col, kind="stable").astype(np.int32))
            counts = np.bincount(col, minlength=int(maxcode[m]) + 2)
            self._start.append(np.concatenate([[0], np.cumsum(counts)]))
        # Zero-score fill without centroids: popularity desc, row asc.
        self._pop_order = np.lexsort((np.arange(self.n), -self.popularity))
        # score of each match bitmask (bit m = position m matched)
        bits = (np.arange(1 << _N)[:, None] >> np.arange(_N)) & 1
        self._mask_score = bits @ self.weights
        self._pattern_order = np.argsort(-self._mask_score, kind="stable")
        self._scratch = np.zeros(self.n, dtype=np.uint8)
        self._lock = threading.Lock()  # the scratch array is shared between calls

    def posting(self, m: int, code: int) -> np.ndarray:
        """Rows (ascending, int32) whose code at position ``m`` equals ``code`` (MISSING allowed)."""
        start = self._start[m]
        c = int(code) + 1
        if c < 0 or c + 1 >= len(start):
            return np.empty(0, dtype=np.int32)
        return self._order[m][start[c]:start[c + 1]]

    def exact(self, query: Sequence[int]) -> np.ndarray:
        """Rows (ascending, int64) whose five codes all equal ``query``."""
        q = _check_query(query)
        lists = [self.posting(m, q[m]) for m in range(_N)]
        rows = min(lists, key=len)
        keep = np.all(self.codes[rows] == np.asarray(q, dtype=np.int32), axis=1)
        return rows[keep].astype(np.int64)

    def similarity(self, query: Sequence[int], rows: np.ndarray,
                   matched: np.ndarray | None = None) -> np.ndarray:
        """Tie-break similarity of ``rows`` to ``query``: sum over unmatched positions of
        weight * centroid cosine (0 without centroids).

        Args:
            query: five codes.
            rows: int [r] catalog rows.
            matched: bool [r, 5] match flags (computed when omitted).
        Returns:
            float64 [r].
        """
        rows = np.asarray(rows, dtype=np.int64)
        sim = np.zeros(len(rows))
        if self._unit is None:
            return sim
        q = _check_query(query)
        codes = self.codes[rows]  # [r, 5]
        if matched is None:
            matched = codes == np.asarray(q, dtype=np.int32)
        for m in range(_N):
            if q[m] == MISSING:
                continue
            unit = self._unit[m]
            cos = unit @ unit[q[m] + 1]  # [K_m + 1]; index 0 (MISSING) -> 0
            sim += np.where(matched[:, m], 0.0, self.weights[m] * cos[codes[:, m] + 1])
        # Rounded so that float noise (orthogonal centroids giving 1e-17) does not decide ties.
        return np.round(sim, 9)

    def rank(self, query: Sequence[int], k: int,
             exclude_rows: Iterable[int] | np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows for five generated codes, by the ranking in the module docstring.

        Args:
            query: five codes (MISSING allowed).
            k: how many rows to return.
            exclude_rows: rows never to return (e.g. tracks already played).
        Returns:
            ``(rows, scores)``: int64 [min(k, n - excluded)] best first, and float64 match scores
            (55 = exact match with the paper's weights).
        """
        q = _check_query(query)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        excl = np.unique(np.fromiter(exclude_rows if exclude_rows is not None else (),
                                     dtype=np.int64))
        if excl.size and (excl[0] < 0 or excl[-1] >= self.n):
            raise ValueError(f"exclude_rows must lie in [0, {self.n}); got {excl[0]}..{excl[-1]}")
        lists = [self.posting(m, q[m]) for m in range(_N)]
        with self._lock:
            scratch = self._scratch  # uint8 [n], all zero between calls
            try:
                scratch[excl] = _EXCLUDED
                for m, rows in enumerate(lists):
                    scratch[rows] |= np.uint8(1 << m)
                # Keep each row once: in the first list it appears in, and only if not excluded.
                parts = []
                for m, rows in enumerate(lists):
                    lower = np.uint8(((1 << m) - 1) | int(_EXCLUDED))
                    parts.append(rows[(scratch[rows] & lower) == 0])
                cand = np.concatenate(parts).astype(np.int64)  # [C] distinct candidate rows
                masks = scratch[cand]  # [C] which positions matched
                scratch[cand] = 0
                scratch[excl] = 0
            except BaseException:  # never leave marks behind for the next query
                scratch.fill(0)
                raise
        scores = self._mask_score[masks]
        top = self._top_candidates(q, cand, masks, scores, k)
        rows, sc = cand[top], scores[top]
        if len(rows) < k:  # fewer than k candidates: fill with score-0 items
            fill = self._fill(q, k - len(rows), np.concatenate([cand, excl]))
            rows = np.concatenate([rows, fill])
            sc = np.concatenate([sc, np.zeros(len(fill))])
        return rows, sc

    def rank_batch(self, queries: np.ndarray | Sequence[Sequence[int]], k: int,
                   exclude_rows: Sequence[Iterable[int] | None] | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``rank`` for many queries (int [q, 5]); ``exclude_rows`` is one entry per query."""
        queries = np.asarray(queries)
        excls = exclude_rows if exclude_rows is not None else [None] * len(queries)
        if len(excls) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(excls)} exclude_rows entries")
        return [self.rank(tuple(q), k, e) for q, e in zip(queries, excls, strict=True)]

    def _top_candidates(self, q: tuple[int, ...], cand: np.ndarray, masks: np.ndarray,
                        scores: np.ndarray, k: int) -> np.ndarray:
        """Indices into ``cand`` of the best ``min(k, len(cand))``, in ranking order."""
        if k == 0 or len(cand) == 0:
            return np.empty(0, dtype=np.int64)
        if len(cand) <= k:
            sel = np.arange(len(cand))
            sim = self._sim_of_masks(q, cand, masks)
        else:
            # The k-th best score from a 32-bin histogram of match patterns (cheaper than a
            # partition); everything above it is in, and only the boundary score group needs
            # the tie-break to decide which of its members fill the remaining places.
            counts = np.bincount(masks, minlength=len(self._mask_score))[self._pattern_order]
            kth = self._mask_score[self._pattern_order[np.searchsorted(np.cumsum(counts), k)]]
            above = np.flatnonzero(scores > kth)
            bnd = np.flatnonzero(scores == kth)
            sim_b = self._sim_of_masks(q, cand[bnd], masks[bnd])
            need = k - len(above)
            if len(bnd) > need:  # keep the boundary members at or above the need-th similarity
                cut = np.partition(-sim_b, need - 1)[need - 1]
                keep = -sim_b <= cut
                bnd, sim_b = bnd[keep], sim_b[keep]
            sel = np.concatenate([above, bnd])
            sim = np.concatenate([self._sim_of_masks(q, cand[above], masks[above]), sim_b])
        order = np.lexsort((cand[sel], -self.popularity[cand[sel]], -sim, -scores[sel]))
        return sel[order[:k]]

    def _sim_of_masks(self, q: tuple[int, ...], rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        if self._unit is None:
            return np.zeros(len(rows))
        matched = ((masks[:, None] >> np.arange(_N, dtype=np.uint8)) & 1).astype(bool)
        return self.similarity(q, rows, matched)

    def _fill(self, q: tuple[int, ...], need: int, taken: np.ndarray) -> np.ndarray:
        """``need`` best score-0 rows not in ``taken``, by similarity, popularity, row."""
        if self._unit is None:
            # Popularity order; skipping `taken` needs at most need + len(taken) entries.
            head = self._pop_order[:need + len(taken)]
            return head[~np.isin(head, taken)][:need].astype(np.int64)
        free = np.ones(self.n, dtype=bool)
        free[taken] = False
        rows = np.flatnonzero(free)
        sim = self.similarity(q, rows, np.zeros((len(rows), _N), dtype=bool))
        if len(rows) > need:
            kth = np.partition(-sim, need - 1)[need - 1]
            keep = -sim <= kth
            rows, sim = rows[keep], sim[keep]
        order = np.lexsort((rows, -self.popularity[rows], -sim))
        return rows[order[:need]]


def _check_query(query: Sequence[int]) -> tuple[int, ...]:
    q = tuple(int(c) for c in query)
    if len(q) != _N:
        raise ValueError(f"a query has {_N} codes (one per modality), got {len(q)}")
    if min(q) < MISSING:
        raise ValueError(f"query codes must be >= {MISSING} (MISSING), got {q}")
    return q


__all__ = ["CodeIndex"]
