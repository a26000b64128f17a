"""Grounded initialisation of music-token embeddings: start each code token near the words of
the tracks in its cluster.

The paper initialises new tokens from the mean and covariance of the existing embeddings
(Hewitt 2021): every code token starts as noise, and training must discover what each one
means. On small compute budgets (a laptop CPU) that takes more steps than there are. Grounding
gives each ``<|m-k|>`` a starting vector in the LLM's own embedding space instead: a TF-IDF
weighted mean of the input embeddings of the words that describe the tracks of cluster ``k``
(their tags for ``semantic``, "Title by Artist ..." for ``metadata``, lyric words for
``lyrics``, artist and tags for ``playlist`` and ``audio``, whose embeddings are not text).
Words shared by every cluster get no weight, so the vector points at what sets the cluster
apart. The result is re-centred and scaled to the statistics of the existing rows, so the
network sees ordinary-looking inputs either way. Tokens without members (``none``, the two
markers) keep Hewitt's sampling.

With tied input/output embeddings the same vector is the token's output row, so a request that
mentions a cluster's words already raises that cluster's logit before any training.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Track
from talkplay.embed.inputs import metadata_text, semantic_text
from talkplay.tokenize import grammar
from talkplay.tokenize.codebook import Codebook

INITS: tuple[str, ...] = ("hewitt", "grounded")
"""``TrainConfig.token_init`` choices."""
LYRIC_WORDS = 40
"""Words of each track's lyrics that describe it (the opening lines)."""


def _describe(t: Track, modality: str) -> str:
    tags = semantic_text(t)[0] or ""  # what the semantic encoder embedded (pseudo tags if no tags)
    if modality == "semantic":
        return tags
    if modality == "metadata":
        return metadata_text(t)
    if modality == "lyrics":
        return " ".join((t.lyrics or "").split()[:LYRIC_WORDS])
    # playlist co-occurrence and audio have no words of their own: the members' artist and tags
    return f"{t.artist}, {tags}" if t.artists else tags


def cluster_texts(ds: Dataset, codebook: Codebook) -> dict[str, list[str]]:
    """Music token -> the texts of its cluster's member tracks (clusters with members only).

    Args:
        ds: the dataset the codebook was built on (tracks are looked up by id).
        codebook: codes per item.
    Returns:
        ``{"<|semantic-3|>": ["rock, guitar", ...], ...}``.
    """
    tracks = ds.track_index()
    out: dict[str, list[str]] = {}
    for row, item in enumerate(codebook.item_ids):
        t = tracks.get(item)
        if t is None:
            continue
        for m, name in enumerate(grammar.MODALITIES):
            code = int(codebook.codes[row, m])
            if code == grammar.MISSING:
                continue
            text = _describe(t, name)
            if text:
                out.setdefault(grammar.token(name, code), []).append(text)
    return out


def grounded_rows(embedding: torch.Tensor, tokenizer: PreTrainedTokenizerBase,
                  texts: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Starting rows for music tokens from their clusters' texts.

    Per modality, each token's texts form one document; a word piece's weight in it is
    ``tf * log(n_docs / df)`` (TF-IDF over that modality's documents). The token's raw vector
    is the weighted mean of those pieces' rows in ``embedding``. The raw vectors of a modality
    are then centred, scaled by one factor so that their RMS distance from their mean equals the
    existing rows' (directions are kept), and added to the existing rows' mean.

    Args:
        embedding: the input-embedding matrix before expansion [V, h] (only read).
        tokenizer: the base tokenizer (texts are tokenised without special tokens).
        texts: from ``cluster_texts``.
    Returns:
        Token -> float32 row [h], for the tokens of modalities with at least 2 documents.
    """
    base = embedding.detach().to(torch.float64).cpu()
    mu = base.mean(0)
    spread = (base - mu).pow(2).sum(1).mean().sqrt()  # RMS distance of a row from the mean
    by_modality: dict[str, list[str]] = {}
    for tok in texts:
        parsed = grammar.parse_token(tok)
        if parsed is not None:
            by_modality.setdefault(grammar.MODALITIES[parsed[0]], []).append(tok)
    out: dict[str, torch.Tensor] = {}
    for toks in by_modality.values():
        if len(toks) < 2:
            continue
        docs = [Counter(piece for text in texts[t]
                        for piece in tokenizer.encode(text, add_special_tokens=False)
                        if piece < base.shape[0]) for t in toks]
        df = Counter(piece for d in docs for piece in d)
        raw = []
        for d in docs:
            pieces = np.fromiter(d.keys(), dtype=np.int64, count=len(d))
            w = torch.tensor([d[p] * math.log(len(docs) / df[p]) for p in pieces.tolist()],
                             dtype=torch.float64)
            if float(w.sum()) <= 0:  # only words every cluster shares: no direction of its own
                w = torch.ones_like(w)
            raw.append((w[:, None] * base[torch.from_numpy(pieces)]).sum(0) / w.sum())
        x = torch.stack(raw)  # [n, h]
        x = x - x.mean(0)
        x = x * (spread / x.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)) + mu
        for t, row in zip(toks, x, strict=True):
            out[t] = row.to(torch.float32)
    return out
