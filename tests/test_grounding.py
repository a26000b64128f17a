"""Grounded music-token initialisation: which words describe a cluster, and where its row starts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from talkplay.config import ModelConfig
from talkplay.data.dataset import Dataset
from talkplay.data.schema import Track
from talkplay.lm.base import load_base
from talkplay.lm.grounding import cluster_texts, grounded_rows
from talkplay.lm.vocab import expand_vocabulary
from talkplay.tokenize import grammar
from talkplay.tokenize.codebook import Codebook

M = grammar.MISSING


def _catalog() -> tuple[Dataset, Codebook]:
    rock = dict(tags=["rock", "distorted guitar", "drums"], lyrics="fire road night fire")
    jazz = dict(tags=["jazz", "saxophone", "swing"], lyrics="blue moon rain blue")
    folk = dict(tags=["folk", "acoustic guitar", "banjo"], lyrics="river home field river")
    tracks = [Track(id=f"r{i}", title=f"Thunder {i}", artists=["Iron Wolves"], **rock) for i in range(3)]
    tracks += [Track(id=f"j{i}", title=f"Velvet {i}", artists=["Miles Ahead"], **jazz) for i in range(3)]
    tracks += [Track(id=f"f{i}", title=f"Meadow {i}", artists=["Willow Creek"], **folk) for i in range(2)]
    tracks += [Track(id="x", title="No Words")]  # no tags, no lyrics
    # semantic: rock 0, jazz 1, folk 2; playlist: rock+jazz share cluster 0; "x" has no tags.
    codes = np.array([[0, 0, 0, 0, 0]] * 3 + [[0, 1, 1, 1, 1]] * 3 + [[1, 2, 2, 2, 2]] * 2
                     + [[M, M, 3, M, M]], dtype=np.int64)
    centroids = {m: np.eye(4, dtype=np.float32)[: int(codes[:, i].max()) + 1]
                 for i, m in enumerate(grammar.MODALITIES)}
    book = Codebook([t.id for t in tracks], codes, centroids)
    return Dataset(tracks=tracks), book


def test_cluster_texts_use_each_modality_s_own_words():
    ds, book = _catalog()
    texts = cluster_texts(ds, book)
    assert texts["<|semantic-0|>"] == ["rock, distorted guitar, drums"] * 3
    assert texts["<|metadata-1|>"][0] == "Velvet 0 by Miles Ahead"
    assert texts["<|lyrics-2|>"] == ["river home field river"] * 2
    # playlist and audio have no words: their members' artist and tags stand in
    assert set(texts["<|playlist-0|>"]) == {"Iron Wolves, rock, distorted guitar, drums",
                                            "Miles Ahead, jazz, saxophone, swing"}
    # a member without the modality's words adds nothing; a missing code adds no token
    assert "<|semantic-3|>" not in texts and texts["<|metadata-3|>"] == ["No Words"]
    assert not any(t.endswith("none|>") for t in texts)


@pytest.fixture(scope="module")
def base():
    return load_base(ModelConfig(base="tiny", tiny_hidden=32))


def test_rows_point_at_their_cluster_s_distinctive_words(base):
    model, tok = base
    ds, book = _catalog()
    emb = model.get_input_embeddings().weight.detach()
    rows = grounded_rows(emb, tok, cluster_texts(ds, book))
    assert set(rows) >= {"<|semantic-0|>", "<|semantic-1|>", "<|semantic-2|>"}

    def word(text: str) -> torch.Tensor:
        return emb[tok.encode(text, add_special_tokens=False)].mean(0)

    sem = torch.stack([rows[f"<|semantic-{k}|>"] for k in range(3)])
    for k, w in enumerate(["saxophone", "banjo"], start=1):
        cos = F.cosine_similarity(sem - emb.mean(0), (word(w) - emb.mean(0))[None], dim=-1)
        assert int(cos.argmax()) == k, (w, cos)
    # spread and centre follow the existing rows
    spread = (emb - emb.mean(0)).pow(2).sum(1).mean().sqrt()
    got = (sem - emb.mean(0)).pow(2).sum(1).mean().sqrt()
    assert torch.allclose(got, spread, rtol=1e-4)
    assert torch.allclose(sem.mean(0), emb.mean(0), atol=1e-5)


def test_expand_vocabulary_starts_grounded_tokens_at_their_rows(base):
    model, tok = load_base(ModelConfig(base="tiny", tiny_hidden=32))
    ds, book = _catalog()
    rows = grounded_rows(model.get_input_embeddings().weight, tok, cluster_texts(ds, book))
    vocab = expand_vocabulary(model, tok, grammar.vocabulary(book.k), seed=0, rows=rows)
    emb = model.get_input_embeddings().weight
    for t, row in rows.items():
        assert torch.equal(emb[tok.convert_tokens_to_ids(t)], row)
    # tokens without a grounded row (none, markers) were sampled, not left at zero
    assert emb[vocab.start].abs().sum() > 0 and emb[int(vocab.table[0, -1])].abs().sum() > 0
    assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()
