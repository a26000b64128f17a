"""BM25 over each track's metadata text, queried with the weighted conversation history.

Document = ``common.track_text`` (title, artist, album, tags, year, tempo, key; no lyric words,
chosen on validation: ``LYRIC_COUNT``), English
stopwords removed. Score of a track = sum over query parts of ``weight * BM25(part, track)``,
where a track part is queried with that track's own text (see ``common`` for the weights).
"""

from __future__ import annotations

import bm25s
import numpy as np

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Message
from talkplay.evaluate.baselines.common import BaselineOptions, query_parts, top_k, track_text
from talkplay.recommend.protocol import Recommendation


def _tokens(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


LYRIC_COUNT = 0
"""Lyric words in BM25's documents. Chosen on the quickstart world's VALID split (125
conversations, 900 targets): MRR 0.0870 without lyric words, 0.0857 with 5, 0.0807 with 12;
tempo words and key kept (0.0782 without tempo). Lyric words mostly add matches for common
words of the requests."""


class BM25Recommender:
    """Lexical retrieval with bm25s (Okapi BM25, k1 = 1.5, b = 0.75)."""

    name = "bm25"

    def __init__(self, ids: list[str], texts: list[str], options: BaselineOptions):
        self.ids = ids
        self.options = options
        self.text_of = dict(zip(ids, texts, strict=True))
        self.retriever = bm25s.BM25(k1=1.5, b=0.75)
        self.retriever.index(_tokens(texts), show_progress=False)
        self.description = (f"BM25 (bm25s, k1=1.5, b=0.75) over title/artist/album/tags/year/"
                            f"tempo/key; query = user turns (decay {options.decay}/turn) + history tracks "
                            f"(x{options.track_weight})")

    def scores(self, history: list[Message]) -> np.ndarray:
        """Weighted BM25 scores of every catalog track, float [n_items]."""
        total = np.zeros(len(self.ids), dtype=np.float64)
        parts = query_parts(history, decay=self.options.decay,
                            track_weight=self.options.track_weight)
        texts = [p.text if p.text is not None else self.text_of.get(p.track_id or "", "")
                 for p in parts]
        for part, toks in zip(parts, _tokens(texts) if texts else [], strict=True):
            if toks:
                total += part.weight * self.retriever.get_scores(toks)
        return total

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        return top_k(self.scores(history), self.ids, k, exclude)


def build_bm25(ds: Dataset, options: BaselineOptions | None = None) -> BM25Recommender:
    """Index the whole catalog (BM25 learns nothing from training data beyond the catalog).

    Args:
        ds: the dataset.
        options: query weights.
    Returns:
        The recommender.
    """
    return BM25Recommender([t.id for t in ds.tracks],
                           [track_text(t, lyric_count=LYRIC_COUNT) for t in ds.tracks],
                           options or BaselineOptions())
