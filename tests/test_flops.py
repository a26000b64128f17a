"""MFU: FLOPs counted by hand, the device peak, and the training metrics' "mfu"."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from talkplay.train.flops import TrainFlops, flops_per_token, peak_flops


@pytest.mark.parametrize("tied", [True, False])
def test_flops_per_token_counts_every_matmul_and_attention(tied):
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg)
    d, kv = 32, 2 * 8  # hidden; key/value width (2 heads of 8)
    per_layer = d * d + 2 * d * kv + d * d + 3 * d * 64 + 2 * d  # q, k, v, o, mlp, two norms
    matmul = 2 * per_layer + d + 100 * d  # layers, final norm, output projection
    assert flops_per_token(model, seq_len=10) == 6 * matmul + 12 * 2 * 4 * 8 * 10


@pytest.mark.parametrize("tied", [True, False])
def test_a_step_counts_real_tokens_and_only_the_head_positions_computed(tied):
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg)
    d, kv = 32, 2 * 8
    body = 2 * (d * d + 2 * d * kv + d * d + 3 * d * 64 + 2 * d) + d  # layers, final norm
    head = 100 * d
    got = TrainFlops(model).step(torch.tensor([3, 5]), head_positions=4)
    # 8 real tokens through the body, 4 through the head, attention over 3 and 5 tokens
    assert got == 6 * body * 8 + 6 * head * 4 + 12 * 2 * 4 * 8 * (3 * 3 + 5 * 5)
    # with every position through the head it is the textbook per-token figure
    assert TrainFlops(model).step(torch.tensor([10]), 10) == 10 * flops_per_token(model, 10)


def test_peak_is_unknown_on_a_cpu_unless_given(monkeypatch):
    monkeypatch.delenv("TALKPLAY_PEAK_TFLOPS", raising=False)
    assert peak_flops("cpu") is None
    monkeypatch.setenv("TALKPLAY_PEAK_TFLOPS", "2.5")
    assert peak_flops("cpu") == 2.5e12


def test_training_reports_mfu_when_the_peak_is_known(tmp_path, monkeypatch):
    from talkplay.config import profile
    from talkplay.lm.base import load_base
    from talkplay.train.loop import train
    from talkplay.train.toy import toy_dataset

    monkeypatch.setenv("TALKPLAY_PEAK_TFLOPS", "0.001")
    prof = profile("tiny")
    prof.train.max_steps, prof.train.eval_every, prof.train.save_every = 2, 2, 2
    train(toy_dataset(tmp_path / "data", seed=0), tmp_path / "run", prof)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "tokens_per_s" in r]
    assert steps and all(r["mfu"] > 0 for r in steps)
    model = load_base(prof.model)[0]
    full = flops_per_token(model, prof.train.context_length)  # every position through the head
    body = TrainFlops(model).body * 6  # the least a token costs
    for r in steps:  # peak 1e9 FLOP/s: mfu = FLOPs per second / 1e9
        assert body * r["tokens_per_s"] / 1e9 < r["mfu"] < full * r["tokens_per_s"] / 1e9 * 1.05
