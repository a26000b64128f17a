"""Retrieval baselines, one module each, all implementing ``talkplay.recommend.protocol.Recommender``.

``SYSTEMS`` maps a system name to a builder ``(Dataset, BaselineOptions | None) -> Recommender``.
Builders index the whole catalog and learn only from training data (popularity counts,
co-occurrence over training playlists).
"""

from __future__ import annotations

from talkplay.evaluate.baselines.bm25 import build_bm25
from talkplay.evaluate.baselines.clap import build_clap
from talkplay.evaluate.baselines.common import BaselineOptions
from talkplay.evaluate.baselines.cooc import build_cooc
from talkplay.evaluate.baselines.dense import build_dense
from talkplay.evaluate.baselines.popularity import build_popularity

SYSTEMS = {
    "bm25": build_bm25,
    "dense": build_dense,
    "cooc": build_cooc,
    "clap": build_clap,
    "popularity": build_popularity,
}

__all__ = ["SYSTEMS", "BaselineOptions"]
