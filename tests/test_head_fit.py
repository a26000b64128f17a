"""Refitting the dense head on frozen hidden states: that the fit finds a mapping that exists,
that it reads only train and valid targets, keeps the better head, and marks hybrid weights
fit with the old head as stale."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from talkplay.evaluate import head_fit
from talkplay.evaluate.head_fit import HeadFitConfig, fit_head, head_mrr
from talkplay.evaluate.protocols import Target
from talkplay.lm.dense_head import DenseHead, HeadSpec, load_head


def _learnable(n_train=400, n_valid=80, n_items=300, hidden=16, dim=8, seed=0):
    """States whose gold track is the one a hidden linear map points at."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(dim, hidden))
    content = rng.normal(size=(n_items, dim)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    ids = [f"t{i}" for i in range(n_items)]

    def make(n, tag):
        states = rng.normal(size=(n, hidden)).astype(np.float32)
        best = np.argsort(-(states @ truth.T @ content.T), axis=1)
        # The first choice is excluded (a seed): the gold is the second, and ranking the
        # excluded track first must not count against the head.
        return states, [Target(f"{tag}{i}", 0, [], [ids[best[i, 1]]], {ids[best[i, 0]]})
                        for i in range(n)]

    st, tt = make(n_train, "a")
    sv, tv = make(n_valid, "b")
    return st, tt, sv, tv, content, ids, HeadSpec(hidden=hidden, modalities=["metadata"], dims=[dim])


@pytest.mark.parametrize("sampled", [False, True])
def test_the_fit_recovers_a_mapping_that_exists_and_keeps_its_best_validation_epoch(sampled, monkeypatch):
    if sampled:  # the large-catalog path: a random sample of negatives per batch
        monkeypatch.setattr(head_fit, "MAX_FULL_CATALOG", 100)
    st, tt, sv, tv, content, ids, spec = _learnable()
    torch.manual_seed(0)
    start = DenseHead(spec)
    before = head_mrr(start, sv, tv, content, ids, None)
    cfg = HeadFitConfig(max_epochs=60, eval_every=5, patience=4, lr=1e-2, negatives=64)
    fitted, rec = fit_head(start, st, tt, sv, tv, content, ids, None, cfg)
    after = head_mrr(fitted, sv, tv, content, ids, None)
    assert before < 0.1 and after > 0.5, (before, after)
    assert after == pytest.approx(rec["valid_mrr"], abs=1e-4)
    assert rec["valid_mrr"] == max(m for _, m in rec["history"])
    torch.manual_seed(0)
    assert torch.equal(start.proj.weight, DenseHead(spec).proj.weight)  # the start is not modified


def test_excluded_tracks_are_never_ranked_by_the_head():
    st, tt, sv, tv, content, ids, spec = _learnable(n_valid=20)
    head = DenseHead(spec)
    with torch.no_grad():
        q = head(torch.from_numpy(sv)).numpy()
    # Exclude each target's own top track and make that top track the gold: MRR must be 0.
    tops = [ids[int(np.argmax(content @ qi))] for qi in q]
    rigged = [Target(t.conversation_id, 0, [], [top], {top}) for t, top in zip(tv, tops, strict=True)]
    assert head_mrr(head, sv, rigged, content, ids, None) == 0.0
    gold_top = [Target(t.conversation_id, 0, [], [top], set()) for t, top in zip(tv, tops, strict=True)]
    assert head_mrr(head, sv, gold_top, content, ids, None) == 1.0


def test_a_run_refit_reads_train_and_valid_only_keeps_the_better_head_and_stales_hybrid_fits(tmp_path, monkeypatch):
    from test_dense_head import _train, with_content

    from talkplay.evaluate import protocols
    from talkplay.evaluate.hybrid import HybridConfig, StaleFit, load_config, save_config
    from talkplay.train.toy import toy_dataset

    data = with_content(toy_dataset(tmp_path / "data", seed=0))
    run = tmp_path / "run"
    _train(data, run, 2)
    save_config(run, "talkplay-hybrid", HybridConfig())
    assert load_config(run, "talkplay-hybrid") is not None
    splits = []
    real = protocols.build_targets

    def spy(ds, protocol, *, split="test", **kw):
        splits.append(split)
        return real(ds, protocol, split=split, **kw)

    monkeypatch.setattr(protocols, "build_targets", spy)
    joint = load_head(run / "model").proj.weight.clone()
    rec = head_fit.refit_run_head(run, HeadFitConfig(max_epochs=40, eval_every=5, lr=1e-2))
    assert sorted(splits) == ["train", "valid"]
    saved = json.loads((run / "head_fit.json").read_text())
    assert saved["kept"] == rec["kept"] and set(saved["valid_mrr"]) == {"joint", "refit-joint", "refit-fresh"}
    kept = rec["valid_mrr"][rec["kept"]]
    assert kept == max(rec["valid_mrr"].values())
    now = load_head(run / "model").proj.weight
    assert torch.equal(now, joint) == (rec["kept"] == "joint")
    assert rec["head_sha256"] == head_fit.head_checksum(run)
    if rec["kept"] != "joint":
        with pytest.raises(StaleFit, match="another dense head"):
            load_config(run, "talkplay-hybrid")
    save_config(run, "talkplay-hybrid", HybridConfig())  # refit: valid again
    assert load_config(run, "talkplay-hybrid") is not None


def test_train_fit_head_refits_after_training_and_fit_head_refuses_runs_without_a_head(tmp_path):
    from test_dense_head import _train, with_content
    from typer.testing import CliRunner

    from talkplay.cli import app
    from talkplay.train.toy import toy_dataset

    data = with_content(toy_dataset(tmp_path / "data", seed=0))
    run = tmp_path / "run"
    got = CliRunner().invoke(app, ["train", "--data", str(data), "--run", str(run), "--profile",
                                   "tiny", "--max-steps", "2", "--dense-head", "1", "--fit-head"])
    assert got.exit_code == 0, got.output
    assert "dense head: kept" in got.output and (run / "head_fit.json").exists()
    plain = tmp_path / "plain"
    _train(data, plain, 2, dense_head=0.0)
    got = CliRunner().invoke(app, ["fit-head", "--run", str(plain)])
    assert got.exit_code != 0 and "has no dense head" in got.output
    assert not (plain / "head_fit.json").exists()
    got = CliRunner().invoke(app, ["fit-head", "--run", str(tmp_path / "nowhere")])
    assert got.exit_code != 0 and "not a TalkPlay run" in got.output


def test_prompt_states_reuse_the_prompt_cache_and_equal_a_fresh_prefill(tmp_path):
    from test_dense_head import _train, with_content

    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.head_fit import prompt_states
    from talkplay.evaluate.protocols import build_targets
    from talkplay.recommend.engine import prefill
    from talkplay.recommend.recommender import load_talkplay
    from talkplay.train.toy import toy_dataset

    data = with_content(toy_dataset(tmp_path / "data", seed=0))
    run = tmp_path / "run"
    _train(data, run, 2)
    tp = load_talkplay(run, with_reply=False, cache_size=4)
    targets = build_targets(read_dataset(data), "paper", split="train")[:12]
    got = prompt_states(tp, targets)
    assert tp.cache_stats["reused_tokens"] > 0  # later turns extend earlier prompts
    want = np.stack([prefill(tp.model, tp.prompt(t.history)[0]).hidden.numpy() for t in targets])
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-4)
