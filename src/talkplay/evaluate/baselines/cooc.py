"""Item-to-item co-occurrence (item-kNN over training playlists), backing off to BM25.

The classic that uses the same training signal as TalkPlay's playlist token: two tracks are
similar when the same training playlists hold them, by cosine over the playlist-incidence
vectors, ``sim(i, j) = c_ij / sqrt(n_i * n_j)`` (``c_ij`` playlists holding both, ``n_i``
playlists holding ``i``). A track's score is the weighted sum of its similarity to the tracks
the user accepted so far (``common.query_parts``: the most recent weigh most; rejected tracks
never count). Tracks the accepted ones never co-occur with, and every track on a first turn
(nothing accepted yet), are ordered by BM25 over the conversation's text: the ranking is
co-occurrence score first, BM25 second. Only training playlists are read.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Message
from talkplay.data.splits import training_playlists
from talkplay.evaluate.baselines.bm25 import build_bm25
from talkplay.evaluate.baselines.common import BaselineOptions, query_parts
from talkplay.recommend.protocol import Recommendation, ScoredTrack


def incidence(ids: list[str], playlists: list[list[str]]) -> sparse.csr_matrix:
    """Binary playlist x track matrix float64 [n_playlists, n_items] (unknown ids ignored; a
    track twice in one playlist counts once). Built from int32 arrays: a million MPD playlists
    have 63.6M entries, which as Python ints in lists would cost several GB."""
    row_of = {t: i for i, t in enumerate(ids)}
    lengths = np.fromiter(map(len, playlists), dtype=np.int64, count=len(playlists))
    cols = np.fromiter((row_of.get(t, -1) for tracks in playlists for t in tracks),
                       dtype=np.int32, count=int(lengths.sum()))
    rows = np.repeat(np.arange(len(playlists), dtype=np.int32), lengths)
    known = cols >= 0
    rows, cols = rows[known], cols[known]
    x = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(playlists), len(ids)))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


class CoocRecommender:
    """Item-kNN over training playlists; BM25 orders what co-occurrence cannot."""

    name = "cooc"

    def __init__(self, ids: list[str], playlists: list[list[str]], text, options: BaselineOptions):
        """Args:
            ids: catalog track ids (row order).
            playlists: training playlists (track-id lists).
            text: a recommender with ``scores(history) -> float [n_items]`` in ``ids`` order
                (BM25), the back-off.
            options: query weights (``decay``, ``track_weight``).
        """
        self.ids = ids
        self.row_of = {t: i for i, t in enumerate(ids)}
        self.x = incidence(ids, playlists)  # [P, N]
        self.xt = self.x.T.tocsr()  # [N, P]
        counts = np.asarray(self.x.sum(axis=0)).ravel()  # n_i, [N]
        self.inv_sqrt = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
        self.text = text
        self.options = options
        self.description = (f"item-kNN (cosine co-occurrence over {len(playlists)} training "
                            "playlists) from the accepted tracks, BM25 for the rest")

    def scores(self, history: list[Message]) -> np.ndarray:
        """float [n_items]: weighted cosine co-occurrence with the accepted tracks (without the
        BM25 back-off: what a hybrid fuses)."""
        parts = [p for p in query_parts(history, decay=self.options.decay,
                                        track_weight=self.options.track_weight)
                 if p.track_id is not None and p.track_id in self.row_of]
        if not parts:
            return np.zeros(len(self.ids))
        w = np.zeros(len(self.ids))
        for p in parts:
            r = self.row_of[p.track_id]
            w[r] += p.weight * self.inv_sqrt[r]
        # sum_h w_h c_hj / sqrt(n_h n_j) = [X^T (X w)]_j / sqrt(n_j)
        return (self.xt @ (self.x @ w)) * self.inv_sqrt

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        cooc = self.scores(history)
        text = self.text.scores(history)
        order = np.lexsort((np.arange(len(self.ids)), -text, -cooc))  # cooc, then BM25, then row
        out: list[ScoredTrack] = []
        for i in order:
            tid = self.ids[int(i)]
            if exclude and tid in exclude:
                continue
            out.append(ScoredTrack(tid, float(cooc[i])))
            if len(out) >= k:
                break
        return Recommendation(out, info={"cooc_nonzero": int((cooc > 0).sum())})


def build_cooc(ds: Dataset, options: BaselineOptions | None = None) -> CoocRecommender:
    """Count co-occurrences in the training playlists and index BM25 for the back-off.

    Args:
        ds: the dataset (only ``split == "train"`` playlists are read).
        options: query weights.
    Returns:
        The recommender.
    """
    options = options or BaselineOptions()
    return CoocRecommender([t.id for t in ds.tracks], training_playlists(ds),
                           build_bm25(ds, options), options)
