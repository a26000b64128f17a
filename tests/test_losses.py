"""Losses against hand-computed answers."""

from __future__ import annotations

import math

import pytest
import torch

from talkplay.train.losses import (
    IGNORE,
    masked_cross_entropy,
    music_self_similarity,
    self_similarity_loss,
    token_cross_entropy,
)


def test_self_similarity_hand_computed():
    # Centroids: e1, e2, e1+e2 -> cos matrix [[1,0,r],[0,1,r],[r,r,1]] with r = 1/sqrt(2).
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Token embeddings: three copies of one direction -> all cosines 1.
    e = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    r = 1 / math.sqrt(2)
    # |1-1| on the diagonal; off-diagonal pairs (both orders): 2*|0-1| + 4*|r-1|.
    want = (2 * 1.0 + 4 * (1 - r)) / 9
    assert self_similarity_loss(c, e).item() == pytest.approx(want, abs=1e-6)
    # Same geometry (a rotation/scale of the centroids) -> zero loss.
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    assert self_similarity_loss(c, 3 * c @ rot).item() == pytest.approx(0.0, abs=1e-6)


def test_self_similarity_gradient_reaches_embeddings_only():
    c = torch.randn(5, 4)
    emb = torch.randn(20, 8, requires_grad=True)
    ids = [torch.tensor([1, 2, 3]), torch.tensor([10, 11, 12, 13, 14]), torch.tensor([7])]
    loss = music_self_similarity(emb, [c[:3], c, c[:1]], ids)
    one = self_similarity_loss(c[:3], emb[ids[0]])
    two = self_similarity_loss(c, emb[ids[1]])
    assert loss.item() == pytest.approx(((one + two) / 2).item())  # K=1 modality skipped
    loss.backward()
    touched = emb.grad.abs().sum(1) > 0
    assert touched.nonzero().flatten().tolist() == [1, 2, 3, 10, 11, 12, 13, 14]
    with pytest.raises(ValueError):
        self_similarity_loss(c, emb[:3])


def test_masked_cross_entropy_hand_computed():
    # Vocabulary 3; uniform logits -> CE = log 3 at every labelled position.
    logits = torch.zeros(1, 4, 3)
    logits[0, 1] = torch.tensor([0.0, 0.0, math.log(2.0)])  # predicts labels[0, 2]
    labels = torch.tensor([[IGNORE, 0, 2, IGNORE]])
    ce = token_cross_entropy(logits, labels)
    assert ce.shape == (1, 3)
    # Position 0 predicts label 0 (uniform: log 3); position 1 predicts 2 with p = 2/4.
    assert ce[0].tolist() == pytest.approx([math.log(3), math.log(2), 0.0])
    assert masked_cross_entropy(logits, labels).item() == pytest.approx((math.log(3) + math.log(2)) / 2)
    assert masked_cross_entropy(logits, torch.full((1, 4), IGNORE)).item() == 0.0
