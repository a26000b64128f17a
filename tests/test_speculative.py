"""Prompt-lookup speculative decoding of replies (``generate_text(lookup=)``): greedy gives the
same tokens as plain decoding, sampling keeps plain decoding's distribution (checked exactly
on a six-token vocabulary), and drafts really are accepted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from test_engine import Cfg  # the sampling parameters of the engine tests
from transformers import LlamaConfig, LlamaForCausalLM

import talkplay.recommend.engine as engine
from talkplay.recommend.engine import _lookup_draft, _probs, copy_state, generate_text, prefill


def tiny(vocab: int, seed: int = 0, init: float = 0.02) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, initializer_range=init)
    return LlamaForCausalLM(config).eval()


def count_forwards(monkeypatch) -> list[int]:
    calls = [0]
    real = engine._forward_all

    def counted(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(engine, "_forward_all", counted)
    return calls


def test_the_draft_is_what_followed_the_latest_match():
    banned = torch.tensor([50], dtype=torch.int64)
    # "5 6" last occurred at positions 4-5, followed by 9 8 7
    ids = [5, 6, 1, 2, 5, 6, 9, 8, 7, 3, 5, 6]
    assert _lookup_draft(ids, 2, banned, set()) == [9, 8]
    assert _lookup_draft(ids, 10, banned, set())[:4] == [9, 8, 7, 3]
    assert _lookup_draft(ids, 4, banned, {8}) == [9, 8]  # a stop token ends the draft
    assert _lookup_draft([1, 2, 50, 3, 1, 2], 4, banned, set()) == []  # banned cuts it
    assert _lookup_draft([4, 1, 2, 3], 3, banned, set()) == []  # no earlier occurrence
    assert _lookup_draft([7], 3, banned, set()) == [] and _lookup_draft(ids, 0, banned, set()) == []


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_with_lookup_writes_the_same_tokens_in_fewer_forwards(monkeypatch, penalty):
    model = tiny(30)  # a small vocabulary: greedy text falls into loops that lookup predicts
    prompt = [3, 4, 5, 6, 7, 8] * 4 + [3, 4]
    cfg = Cfg(greedy=True, repetition_penalty=penalty)
    banned = np.array([5, 25, 26])

    def guard(ids):  # a guard that depends on the text so far, as the reply guard does
        return [ids[-1] + 1] if ids[-1] < 29 else []

    for stop in range(30):  # a stop token ends both at the same place, drafted or not
        plain = generate_text(model, prompt, cfg, [stop], 40, banned_ids=banned, guard=guard)
        fast = generate_text(model, prompt, cfg, [stop], 40, banned_ids=banned, guard=guard,
                             lookup=5)
        assert fast == plain
    plain = generate_text(model, prompt, cfg, [], 40, banned_ids=banned, guard=guard)
    calls = count_forwards(monkeypatch)
    state = prefill(model, prompt)
    fast = generate_text(model, state, cfg, [], 40, banned_ids=banned, guard=guard, lookup=5)
    assert fast == plain and len(plain) == 40
    assert calls[0] < len(fast)  # drafts were accepted: several tokens per forward
    # the state is left as plain decoding leaves it: every returned token fed, logits after it
    again = prefill(model, prompt + fast)
    assert state.ids == prompt + fast and state.cache.get_seq_length() == len(state.ids)
    assert torch.allclose(state.logits, again.logits, atol=1e-4)


@pytest.mark.parametrize("cfg", [Cfg(top_p=0.7, temperature=1.3), Cfg(top_p=1.0, top_k=2)],
                         ids=["top-p", "top-k"])
def test_sampling_with_lookup_keeps_the_distribution_of_plain_sampling(monkeypatch, cfg):
    """After a refused draft token the next one comes from the filtered distribution without
    it (not from a new top-k/top-p cut of what is left)."""
    model = tiny(6, seed=3)
    prompt = [0, 1, 2, 3, 4, 5, 1, 2, 0, 4, 3, 5, 2]
    new = 2
    # Plain sampling's exact law of the two tokens, from the model's full forward.
    exact = {}
    for seq in itertools.product(range(6), repeat=new):
        p, ids = 1.0, list(prompt)
        for t in seq:
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            p *= float(_probs(logits, cfg)[t])
            ids.append(t)
        exact[seq] = p
    calls = count_forwards(monkeypatch)
    start = prefill(model, prompt)
    n = 3000
    seen: dict[tuple[int, ...], int] = {}
    for i in range(n):
        gen = torch.Generator().manual_seed(i)
        out = generate_text(model, copy_state(start), cfg, [], new, generator=gen, lookup=3)
        seen[tuple(out)] = seen.get(tuple(out), 0) + 1
    assert calls[0] < n * new  # drafts were tried and some accepted
    cells = [s for s in exact if exact[s] > 0]
    assert set(seen) <= set(cells)  # nothing top-p removes is ever written
    observed = np.array([seen.get(s, 0) for s in cells], dtype=float)
    expected = np.array([exact[s] for s in cells]) * n / sum(exact[s] for s in cells)
    rare = expected < 5  # pooled, so the chi-square approximation holds
    if rare.any():
        observed = np.append(observed[~rare], observed[rare].sum())
        expected = np.append(expected[~rare], expected[rare].sum())
    assert chisquare(observed, expected).pvalue > 1e-3


def test_lookup_must_not_be_negative():
    with pytest.raises(ValueError, match="lookup"):
        generate_text(tiny(20), [1, 2, 3], Cfg(), [], 4, lookup=-1)


def test_a_batch_of_replies_equals_each_reply_written_alone():
    """generate_texts: left-padded caches of different lengths, rows leaving the batch when
    they stop, per-row guards and generators: each row gets what it gets alone."""
    from talkplay.recommend.engine import generate_texts

    model = tiny(60, seed=1, init=0.5)  # large weights: sharp, position-sensitive logits
    prompts = [[3, 4, 5], list(range(10, 30)), [7] * 9 + [8], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]

    def guard(ids):
        return [ids[-1] + 1] if ids[-1] < 59 else []

    for cfg in (Cfg(greedy=True), Cfg(greedy=True, repetition_penalty=1.4), Cfg(top_p=0.8)):
        for stop in ([], [0], [13, 21]):
            alone = [generate_text(model, p, cfg, stop, 12, banned_ids=[5, 6], guard=guard,
                                   generator=torch.Generator().manual_seed(i))
                     for i, p in enumerate(prompts)]
            states = [prefill(model, p) for p in prompts]
            before = [(list(s.ids), s.cache.get_seq_length()) for s in states]
            batch = generate_texts(model, states, cfg, stop, 12, banned_ids=[5, 6],
                                   guards=[guard] * len(prompts),
                                   generators=[torch.Generator().manual_seed(i)
                                               for i in range(len(prompts))])
            assert batch == alone, (cfg, stop)
            assert [(list(s.ids), s.cache.get_seq_length()) for s in states] == before
    assert any(len(a) < 12 for a in alone)  # some rows stopped early and left the batch
    assert generate_texts(model, [], Cfg(), [], 4) == []
