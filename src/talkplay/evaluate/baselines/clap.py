"""Audio-text baselines: "tagclap" (the offline CLAP substitute) and a real CLAP when installed.

No CLAP weights install offline here, so the default is **tagclap**, which is *not* CLAP: it
routes text to audio through the 50 musicnn MSD tags. The text encoder embeds the query parts
and the prompts "{tag} music"; softmax(cos(query, tag prompts) / TAU) is the query's tag
distribution (float [50]). Tracks already in the conversation contribute their own normalised
audio tag vectors with their query weights. A track's score is the cosine between that
distribution and its audio tag probabilities (``DATA/embeddings/audio_tags.npy`` [n, 50] with
``audio_tags.ids.json`` and ``audio_tags.names.json``, written by ``talkplay embed``); tracks
without audio tags score -1 (lowest).

With ``clap_model`` set to a Hugging Face ClapModel name or path (e.g. laion/clap-htsat-unfused)
the real model embeds the track audio files and the query text: see ``clap_hf``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from talkplay.data.dataset import Dataset
from talkplay.data.errors import DataError
from talkplay.data.schema import Message
from talkplay.evaluate.baselines.common import BaselineOptions, query_parts, top_k
from talkplay.evaluate.baselines.encoders import TextEmbedder, load_text_encoder, unit_rows
from talkplay.io import read_json
from talkplay.recommend.protocol import Recommendation

log = logging.getLogger(__name__)
TAU = 0.05
"""Softmax temperature over tag cosines (MiniLM cosines between related texts span ~0.1-0.6)."""


def load_audio_tags(root: Path | None) -> tuple[np.ndarray, list[str], list[str]]:
    """(probabilities float32 [n, n_tags], track ids, tag names) from ``root/embeddings``.

    Returns empty arrays when the files are absent; raises DataError when they disagree.
    """
    d = (root or Path(".")) / "embeddings"
    npy, ids_p, names_p = d / "audio_tags.npy", d / "audio_tags.ids.json", d / "audio_tags.names.json"
    if root is None or not npy.exists():
        return np.zeros((0, 0), np.float32), [], []
    probs = np.load(npy).astype(np.float32)
    ids, names = read_json(ids_p), read_json(names_p)
    if probs.ndim != 2 or probs.shape[0] != len(ids) or probs.shape[1] != len(names):
        raise DataError(f"audio_tags.npy has shape {probs.shape} but {len(ids)} ids and "
                        f"{len(names)} tag names", file=str(npy))
    return probs, ids, names


class TagClapRecommender:
    """Text -> musicnn-tag distribution -> tracks by their audio tag probabilities."""

    name = "clap"

    def __init__(self, ids: list[str], item_tags: np.ndarray, has_audio: np.ndarray,
                 tag_vectors: np.ndarray, embed: TextEmbedder, options: BaselineOptions):
        self.ids = ids
        self.item_tags = unit_rows(item_tags)      # [n_items, n_tags], zero rows = no audio
        self.item_dist = item_tags / np.maximum(item_tags.sum(1, keepdims=True), 1e-12)
        self.has_audio = has_audio                 # bool [n_items]
        self.tag_vectors = tag_vectors             # [n_tags, d] unit rows
        self.row_of = {t: i for i, t in enumerate(ids)}
        self.embed = embed
        self.options = options
        self.description = (f"tagclap (CLAP substitute: text encoder {options.text_model} -> "
                            f"musicnn tags); {int(has_audio.sum())}/{len(ids)} tracks have audio tags")

    def prepare(self, histories: list[list[Message]]) -> None:
        """Encode every user text of the coming queries in batches (see ``evaluate.run``)."""
        self.embed([m.content for h in histories for m in h
                    if m.role == "user" and m.content.strip()])

    def query_distribution(self, history: list[Message]) -> np.ndarray:
        """The query's tag distribution float [n_tags] (sums to 1, or zeros when empty)."""
        parts = query_parts(history, decay=self.options.decay,
                            track_weight=self.options.track_weight)
        texts = [p.text for p in parts if p.text is not None]
        sims = self.embed(texts) @ self.tag_vectors.T if texts else None  # [n_texts, n_tags]
        dist = np.zeros(self.tag_vectors.shape[0])
        ti = 0
        for p in parts:
            if p.text is not None:
                z = sims[ti] / TAU
                e = np.exp(z - z.max())
                dist += p.weight * e / e.sum()
                ti += 1
            elif p.track_id in self.row_of and self.has_audio[self.row_of[p.track_id]]:
                dist += p.weight * self.item_dist[self.row_of[p.track_id]]
        total = dist.sum()
        return dist / total if total > 0 else dist

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        q = unit_rows(self.query_distribution(history)[None])[0]
        scores = np.where(self.has_audio, self.item_tags @ q, -1.0)
        return top_k(scores, self.ids, k, exclude)


def build_clap(ds: Dataset, options: BaselineOptions | None = None):
    """The audio-text baseline: tagclap by default, a Hugging Face ClapModel when named.

    Args:
        ds: the dataset (audio tags are read from ``ds.root/embeddings``).
        options: ``clap_model`` ("tagclap" or a ClapModel name/path), text model, batch size.
    Returns:
        A Recommender named "clap".
    """
    options = options or BaselineOptions()
    if options.clap_model != "tagclap":
        from talkplay.evaluate.baselines.clap_hf import build_hf_clap

        return build_hf_clap(ds, options)
    probs, tag_ids, names = load_audio_tags(ds.root)
    ids = [t.id for t in ds.tracks]
    n_tags = len(names) or 50
    item_tags = np.zeros((len(ids), n_tags), np.float32)
    has_audio = np.zeros(len(ids), bool)
    row_of = {t: i for i, t in enumerate(ids)}
    for r, tid in enumerate(tag_ids):
        if tid in row_of:
            item_tags[row_of[tid]] = probs[r]
            has_audio[row_of[tid]] = True
    if not has_audio.any():
        log.warning("clap: no audio tags under %s/embeddings (run `talkplay embed` on a dataset "
                    "with audio); every track scores the same", ds.root)
    embed = TextEmbedder(load_text_encoder(options.text_model, options.device), options.batch_size)
    tag_vectors = embed([f"{n} music" for n in names]) if names else np.zeros(
        (n_tags, embed.model.get_embedding_dimension()), np.float32)
    return TagClapRecommender(ids, item_tags, has_audio, tag_vectors, embed, options)
