"""Most popular tracks first, whatever the conversation says: the floor every system must beat.

Popularity = ``Track.popularity`` when the catalog has it for some track; otherwise the number
of times a track occurs in training playlists and training conversations (never test data).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Message
from talkplay.evaluate.baselines.common import BaselineOptions, top_k
from talkplay.recommend.protocol import Recommendation


class PopularityRecommender:
    name = "popularity"

    def __init__(self, ids: list[str], popularity: np.ndarray, source: str):
        self.ids = ids
        self.popularity = popularity
        self.source = source
        self.description = f"most popular first ({source}), ignores the conversation"

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        return top_k(self.popularity, self.ids, k, exclude)


def training_counts(ds: Dataset) -> Counter:
    """Occurrences of each track in train-split playlists and conversations."""
    counts: Counter = Counter()
    for p in ds.playlists:
        if p.split == "train":
            counts.update(p.track_ids)
    for c in ds.conversations:
        if c.split == "train":
            counts.update(c.music_ids())
    return counts


def build_popularity(ds: Dataset, options: BaselineOptions | None = None) -> PopularityRecommender:
    """Fit popularity on the catalog field or, lacking it, on training data only.

    Args:
        ds: the dataset.
        options: unused (every builder takes them).
    Returns:
        The recommender; ``source`` says which popularity was used.
    """
    ids = [t.id for t in ds.tracks]
    if any(t.popularity is not None for t in ds.tracks):
        pop = np.array([t.popularity if t.popularity is not None else -1.0 for t in ds.tracks])
        return PopularityRecommender(ids, pop, "catalog")
    counts = training_counts(ds)
    return PopularityRecommender(ids, np.array([float(counts[i]) for i in ids]), "train-counts")
