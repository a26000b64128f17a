"""Dense retrieval: a sentence encoder over the track text, faiss inner-product search.

The paper's dense baseline embeds the conversation with NV-Embed-v2; offline we default to the
packaged all-MiniLM-L6-v2 (any sentence-transformers model is accepted). Catalog vectors are
cached under ``DATA/cache/`` keyed by a fingerprint of the model (its name, and for a local
folder its weights: ``talkplay fit-retriever`` writes one) and the texts. The query
vector is the weighted mean of the unit embeddings of the user turns and of the catalog
vectors of tracks already in the conversation (weights in ``common``), renormalised.
"""

from __future__ import annotations

import logging
import re

import faiss
import numpy as np

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Message
from talkplay.evaluate.baselines.common import BaselineOptions, query_parts, track_text
from talkplay.evaluate.baselines.encoders import (
    TextEmbedder,
    cached_matrix,
    load_text_encoder,
    unit_rows,
    weights_fingerprint,
)
from talkplay.recommend.protocol import Recommendation, ScoredTrack

log = logging.getLogger(__name__)


def weighted_query(parts, embed_texts, item_vectors: np.ndarray, row_of: dict[str, int]) -> np.ndarray:
    """The unit query vector float32 [d] from weighted parts; zeros when nothing is usable.

    Args:
        parts: ``common.QueryPart`` list.
        embed_texts: texts -> unit float32 [n, d].
        item_vectors: catalog unit vectors float32 [n_items, d].
        row_of: track id -> row of ``item_vectors``.
    """
    texts = [p.text for p in parts if p.text is not None]
    text_vecs = embed_texts(texts) if texts else None
    q = np.zeros(item_vectors.shape[1], dtype=np.float32)
    ti = 0
    for p in parts:
        if p.text is not None:
            q += p.weight * text_vecs[ti]
            ti += 1
        elif p.track_id in row_of:
            q += p.weight * item_vectors[row_of[p.track_id]]
    return unit_rows(q[None])[0]


class DenseRecommender:
    name = "dense"

    def __init__(self, ids: list[str], vectors: np.ndarray, embed: TextEmbedder,
                 options: BaselineOptions):
        self.ids = ids
        self.vectors = unit_rows(vectors)  # [n_items, d]
        self.row_of = {t: i for i, t in enumerate(ids)}
        self.embed = embed
        self.options = options
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(self.vectors)
        self.description = (f"dense retrieval, text encoder {options.text_model}, faiss inner "
                            f"product; query = weighted user turns + history track vectors")

    def prepare(self, histories: list[list[Message]]) -> None:
        """Encode every user text of the coming queries in batches (see ``evaluate.run``)."""
        self.embed([m.content for h in histories for m in h
                    if m.role == "user" and m.content.strip()])

    def scores(self, history: list[Message]) -> np.ndarray:
        """Cosine of every catalog track to the query, float [n_items] (catalog order)."""
        parts = query_parts(history, decay=self.options.decay,
                            track_weight=self.options.track_weight)
        q = weighted_query(parts, self.embed, self.vectors, self.row_of)
        return (self.vectors @ q).astype(np.float64)

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        parts = query_parts(history, decay=self.options.decay,
                            track_weight=self.options.track_weight)
        q = weighted_query(parts, self.embed, self.vectors, self.row_of)
        want = min(len(self.ids), k + len(exclude or ()))
        scores, rows = self.index.search(q[None], want)  # [1, want] each
        out = []
        for s, r in zip(scores[0], rows[0], strict=True):
            if r < 0 or (exclude and self.ids[r] in exclude):
                continue
            out.append(ScoredTrack(self.ids[r], float(s)))
            if len(out) >= k:
                break
        return Recommendation(out)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[-40:] or "model"


def build_dense(ds: Dataset, options: BaselineOptions | None = None) -> DenseRecommender:
    """Embed the whole catalog (cached) and build the faiss index; nothing is trained.

    Args:
        ds: the dataset (its root gives the default cache directory).
        options: text model, batch size, device, cache directory, query weights.
    Returns:
        The recommender.
    """
    options = options or BaselineOptions()
    embed = TextEmbedder(load_text_encoder(options.text_model, options.device), options.batch_size)
    ids = [t.id for t in ds.tracks]
    texts = [track_text(t) for t in ds.tracks]
    cache = options.cache_dir or (ds.root / "cache" if ds.root else None)
    vectors = cached_matrix(cache, f"dense-{_slug(options.text_model)}",
                            [weights_fingerprint(options.text_model), *texts], ids, lambda: embed.model.encode(
                                texts, batch_size=options.batch_size, show_progress_bar=False,
                                convert_to_numpy=True))
    return DenseRecommender(ids, vectors, embed, options)
