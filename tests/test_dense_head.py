"""The dense head (LIGER-style): which positions it reads, that training teaches it to pick the
right track, that it is saved, resumed and loaded with the run, and that the hybrid scores every
catalog track with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talkplay.config import profile
from talkplay.data.dataset import read_dataset
from talkplay.embed.store import embeddings_dir, write_matrix
from talkplay.lm.dense_head import content_matrix, content_modalities, load_dense_head, load_head
from talkplay.tokenize.codebook import Codebook
from talkplay.train.data import Renderer, collate
from talkplay.train.toy import toy_dataset


def with_content(path, dim: int = 12, seed: int = 1):
    """Give the toy dataset content embeddings (random; 3 tracks lack metadata)."""
    rng = np.random.default_rng(seed)
    ds = read_dataset(path)
    ids = [t.id for t in ds.tracks]
    emb = embeddings_dir(path)
    emb.mkdir(parents=True, exist_ok=True)
    for m in ("semantic", "metadata", "lyrics", "audio"):
        write_matrix(emb, m, ids[:-3] if m == "metadata" else ids,  # 3 tracks lack metadata
                     rng.normal(size=(len(ids) - (3 if m == "metadata" else 0), dim)).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return with_content(toy_dataset(tmp_path_factory.mktemp("dense") / "data", seed=0))


def test_content_matrix_joins_modalities_and_keeps_missing_tracks_at_zero(data, tmp_path):
    cb = Codebook.load(data / "tokenizer")
    mods = content_modalities(cb.k)
    assert mods == ["semantic", "metadata", "lyrics", "audio"]
    bare = toy_dataset(tmp_path / "bare", seed=0)
    with pytest.raises(FileNotFoundError, match="no semantic embeddings"):
        content_matrix(bare, cb.item_ids, mods)
    matrix, dims = content_matrix(data, cb.item_ids, ["semantic", "metadata"])
    assert dims == [12, 12] and matrix.shape == (len(cb.item_ids), 24)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert (matrix[-3:, 12:] == 0).all() and (matrix[:-3, 12:] != 0).any(axis=1).all()
    with pytest.raises(ValueError, match="dimension 12, the dense head was trained on 7"):
        content_matrix(data, cb.item_ids, ["semantic"], dims=[7])


def test_music_positions_point_at_each_trained_block_of_its_track(data):
    from talkplay.lm.base import load_base
    from talkplay.lm.vocab import expand_vocabulary
    from talkplay.tokenize import grammar

    prof = profile("tiny")
    model, tok = load_base(prof.model)
    cb = Codebook.load(data / "tokenizer")
    vocab = expand_vocabulary(model, tok, grammar.vocabulary(cb.k), seed=0)
    ds = read_dataset(data)
    for context in (1024, 96):  # whole conversations, then split into windows
        r = Renderer(tok, cb, vocab, context)
        for conv in ds.conversations[:9]:
            rejected = set(conv.meta.get("rejected", []))
            want = [cb.row[m.content] for i, m in enumerate(conv.messages)
                    if m.role == "music" and i not in rejected]
            samples = r.conversation(conv, playlist_dropout=0.5, seed=0)
            got = [row for s in samples for _, row in s.music]
            if context == 1024:
                assert got == want  # every trained block, in order; rejected ones are not trained
            else:
                assert len(got) <= len(want)
            for s in samples:
                for p, row in s.music:
                    assert s.ids[p] == vocab.start and s.mask[p + 1] == 1
                    shown = s.ids[p + 1:p + 6]
                    codes = cb.codes_of(cb.item_ids[row])
                    assert list(shown[1:]) == vocab.ids(codes)[2:6]  # playlist may be hidden
        pl = ds.playlists[0].track_ids
        sample = r.playlist(pl, 1)
        assert [row for _, row in sample.music] == [cb.row[t] for t in pl[1:1 + len(sample.music)]]
        assert sample.music
    batch = collate(r.conversation(ds.conversations[0]) + [sample], tok.pad_token_id)
    assert batch["music_at"].shape == (len(batch["music_row"]), 2)
    assert (batch["input_ids"][batch["music_at"][:, 0], batch["music_at"][:, 1]] == vocab.start).all()


def _train(data, run, steps, **train):
    from talkplay.train.loop import train as run_train

    prof = profile("tiny")
    prof.train.max_steps, prof.train.eval_every, prof.train.save_every = steps, steps, steps
    prof.train.dense_head = 1.0
    for k, v in train.items():
        setattr(prof.train, k, v)
    return run_train(data, run, prof)


def test_training_teaches_the_head_to_pick_its_track_and_saves_it_with_the_run(data, tmp_path):
    run = tmp_path / "run"
    # 150 steps: after 60 the loss had only fallen from far above chance (an untrained head
    # is confidently wrong at temperature 0.05) to about chance on a CPU without AVX-512,
    # which is not picking the right track. Averages over many steps: single steps are noisy.
    _train(data, run, 150, lr=1e-2, warmup_steps=2, self_sim_lambda=0.0)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    first, last = np.mean([r["dense"] for r in rows[:5]]), np.mean([r["dense"] for r in rows[-20:]])
    chance = np.log(len(Codebook.load(data / "tokenizer").item_ids))  # every track a key
    assert last < 0.5 * first and last < chance - 0.25, (first, last, chance)
    assert "val_dense" in rows[-1]
    head = load_head(run / "model")
    assert head is not None and head.spec.modalities == ["semantic", "metadata", "lyrics", "audio"]
    state = torch.load(run / "checkpoints/last/state.pt", weights_only=False)
    assert set(state["dense_head"]) == {"proj.weight"}
    cb = Codebook.load(run / "tokenizer")
    loaded, content = load_dense_head(run, cb.item_ids)
    assert content.shape == (len(cb.item_ids), 48)
    # A run without the head's checkpoint state cannot silently resume with a new head.
    plain = tmp_path / "plain"
    _train(data, plain, 2, dense_head=0.0)
    with pytest.raises(ValueError, match="no dense head"):
        _train(data, plain, 4)


def test_a_catalog_with_only_playlist_codes_cannot_train_a_head(tmp_path):
    data = toy_dataset(tmp_path / "data", seed=0)
    cb = Codebook.load(data / "tokenizer")
    codes = np.array(cb.codes)
    codes[:, 1:] = -1
    Codebook(cb.item_ids, codes, {m: cb.centroids[m][:0] if m != "playlist" else cb.centroids[m]
                                  for m in cb.centroids}).save(data / "tokenizer")
    with pytest.raises(ValueError, match="needs a content modality"):
        _train(data, tmp_path / "run", 1)


def test_the_hybrid_scores_every_track_with_the_head_and_proposes_cold_ones(data, tmp_path):
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.hybrid import FEATURES, SOURCES, HybridConfig, HybridRecommender
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.engine import prefill
    from talkplay.recommend.recommender import load_talkplay

    run = tmp_path / "run"
    _train(data, run, 2)
    tp = load_talkplay(run, mode="beam", with_reply=False)
    ds = read_dataset(data)
    retrievers = {k: SYSTEMS[k](ds, BaselineOptions()) for k in ("bm25", "dense", "cooc")}
    hybrid = HybridRecommender(tp, retrievers, HybridConfig(pool=5))
    assert "head" in hybrid.active and "head" in hybrid.description
    target = build_targets(ds, "paper", split="valid", limit=1)[-1]
    pool = hybrid.pool(target.history, set(target.exclude))
    head, content = hybrid.head
    prompt, _ = tp.prompt(target.history)
    state = prefill(tp.model, prompt)
    with torch.no_grad():  # the hidden state the engine kept is the model's last-layer state
        ref = tp.model.model(input_ids=torch.tensor([prompt])).last_hidden_state[0, -1]
    assert torch.allclose(state.hidden, ref.float(), atol=1e-4)
    with torch.inference_mode():
        want = content @ head(state.hidden[None])[0].numpy()
    got = pool.features[:, FEATURES.index("head")]
    assert got == pytest.approx(want[pool.rows], abs=1e-4)
    by_head = pool.rows[pool.sources[:, SOURCES.index("head")]]
    banned = {tp.codebook.row[t] for t in target.exclude} | {
        tp.codebook.row[m.content] for m in target.history if m.role == "music"}
    assert set(by_head) == set([r for r in np.argsort(-want) if r not in banned][:5])
    rec = hybrid.recommend(target.history, k=10, exclude=set(target.exclude))
    assert all("head" in why for why in rec.info["why"].values())
    no_head = HybridRecommender(tp, retrievers, HybridConfig(pool=5, without=["head"]))
    assert "head" not in no_head.active
