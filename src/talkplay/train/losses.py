"""The paper's training losses as plain functions.

L = L_conversation + L_playlist + lambda * L_self-sim. The two cross-entropies share one
function (a sequence is either a conversation or a playlist sample, so their sum over a batch
is the CE over all labelled tokens); they are told apart only for logging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy per position.

    Args:
        logits: [B, T, V] (any float dtype; computed in fp32).
        labels: int64 [B, T]; ``IGNORE`` where a position is not trained on. Position t's label
            is the token at t (the shift happens here: logits[:, t] predict labels[:, t + 1]).
    Returns:
        fp32 [B, T - 1], zero where the label is ``IGNORE``.
    """
    return selected_cross_entropy(logits[:, :-1], labels[:, 1:])


def selected_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of already-aligned logits and targets (no shift).

    Args:
        logits: [B, N, V], e.g. only the N positions whose next token is labelled.
        target: int64 [B, N]; ``IGNORE`` where not trained on.
    Returns:
        fp32 [B, N], zero where the target is ``IGNORE``.
    """
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                         ignore_index=IGNORE, reduction="none")
    return ce.view(target.shape)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions (0 if none). Shapes as above."""
    ce = token_cross_entropy(logits, labels)
    n = (labels[:, 1:] != IGNORE).sum()
    return ce.sum() / n.clamp_min(1)


def _cos_matrix(x: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarities of the rows of x [K, d] -> [K, K]."""
    x = F.normalize(x.float(), dim=-1, eps=1e-8)
    return x @ x.T


def self_similarity_loss(centroids: torch.Tensor, token_emb: torch.Tensor) -> torch.Tensor:
    """Paper's self-similarity loss for one modality: E_ij |cos(c_i, c_j) - cos(e_i, e_j)|.

    Keeps the geometry of the K-means centroids in the new token embeddings.

    Args:
        centroids: [K, d] centroids of one modality (constant).
        token_emb: [K, h] embeddings of that modality's K code tokens, row i = code i.
    Returns:
        Scalar fp32, the mean over all K*K pairs (the diagonal contributes 0).
    """
    if centroids.shape[0] != token_emb.shape[0]:
        raise ValueError(f"{centroids.shape[0]} centroids vs {token_emb.shape[0]} token rows")
    return (_cos_matrix(centroids).to(token_emb.device) - _cos_matrix(token_emb)).abs().mean()


def music_self_similarity(embedding: torch.Tensor, centroids: list[torch.Tensor],
                          token_ids: list[torch.Tensor]) -> torch.Tensor:
    """``self_similarity_loss`` averaged over modalities (those with at least 2 codes).

    Args:
        embedding: the input-embedding matrix [V, h].
        centroids: per modality, [K_m, d_m].
        token_ids: per modality, int64 [K_m] ids of codes 0..K_m-1.
    Returns:
        Scalar fp32.
    """
    losses = [self_similarity_loss(c, embedding[ids]) for c, ids in zip(centroids, token_ids,
                                                                        strict=True)
              if len(ids) >= 2]
    if not losses:
        return embedding.new_zeros((), dtype=torch.float32)
    return torch.stack(losses).mean()


def dense_contrastive_loss(query: torch.Tensor, keys: torch.Tensor, target: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """InfoNCE of the dense head: each query against every key, its own track the positive.

    Args:
        query: float [M, d] unit-norm projections of the hidden states at ``<start_of_music>``.
        keys: float [N, d] unit-norm content embeddings of the candidate tracks (the batch's own
            tracks and the negatives, each track once).
        target: int64 [M] index into ``keys`` of each query's track.
        temperature: softmax temperature.
    Returns:
        Scalar fp32, the mean over queries (0 when M = 0).
    """
    if query.shape[0] == 0:  # keep the graph (DDP expects a gradient for every parameter)
        return query.float().sum() * 0.0
    logits = query.float() @ keys.float().T / temperature
    return F.cross_entropy(logits, target)
