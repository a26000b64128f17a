"""Prefix reuse in TalkPlayRecommender: a conversation replayed turn by turn gives the same
rankings, codes and replies with the prompt-state cache as without it, and the cache is used."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from talkplay.config import GenerateConfig, profile
from talkplay.data.schema import Message
from talkplay.recommend.engine import continue_prompt, copy_state, extend, prefill


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a busy shared CPU two threads spin-wait on each
    other (measured here: a 17x slowdown)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from talkplay.train.loop import train
    from talkplay.train.toy import toy_dataset

    root = tmp_path_factory.mktemp("rec_cache")
    prof = profile("tiny")
    prof.train.max_steps, prof.train.eval_every, prof.train.save_every = 4, 4, 4
    train(toy_dataset(root / "data", seed=1, turns=4), root / "run", prof)
    return root / "run"


@pytest.fixture(scope="module")
def conversations(run) -> list[list[Message]]:
    from talkplay.data.dataset import read_dataset

    ds = read_dataset(run.parent / "data")
    return [c.messages for c in ds.conversations[:3]]


def turns(messages: list[Message]) -> list[list[Message]]:
    """The history before each assistant reply: what a chat sends turn by turn."""
    return [messages[:i + 1] for i, m in enumerate(messages) if m.role == "user"]


def make(run, mode: str, cache_size: int, with_reply: bool = True, **cfg):
    from talkplay.recommend.recommender import TalkPlayRecommender

    return TalkPlayRecommender.from_run(run, GenerateConfig(max_reply_tokens=6, **cfg), mode=mode,
                                        with_reply=with_reply, cache_size=cache_size)


def answers(rec, conversations, k=15):
    out = []
    for conv in conversations:
        for history in turns(conv):
            r = rec.recommend(history, k=k, exclude={"t7"})
            out.append(([t.track_id for t in r.tracks], [t.score for t in r.tracks],
                        r.info["codes"], r.reply))
    return out


def test_prompts_of_a_conversation_extend_each_other(run, conversations):
    rec = make(run, "paper", 0)
    for conv in conversations:
        prompts = [rec.prompt_ids(h) for h in turns(conv)]
        for a, b in zip(prompts, prompts[1:], strict=False):
            assert len(b) > len(a) and b[:len(a)] == a  # no truncation at this size


@pytest.mark.parametrize("mode,with_reply", [("paper", True), ("paper", False),
                                             ("beam", True), ("beam", False)])
def test_same_results_with_and_without_the_cache(run, conversations, mode, with_reply):
    plain = answers(make(run, mode, 0, with_reply), conversations)
    cached_rec = make(run, mode, 8, with_reply)
    cached = answers(cached_rec, conversations)
    for (ids_a, sc_a, codes_a, reply_a), (ids_b, sc_b, codes_b, reply_b) in zip(
            plain, cached, strict=True):
        assert ids_a == ids_b and codes_a == codes_b and reply_a == reply_b
        assert sc_b == pytest.approx(sc_a, rel=1e-5, abs=1e-5)  # beam log-probs: float rounding
    n_turns = sum(len(turns(c)) for c in conversations)
    # Every turn after the first of its conversation reuses the previous prompt; first turns
    # still share the system prompt with the conversation before them.
    assert cached_rec.cache_stats["hits"] == n_turns - 1
    assert cached_rec.cache_stats["reused_tokens"] > cached_rec.cache_stats["prompt_tokens"] / 2
    if with_reply:
        assert any(a[3] for a in plain)  # replies were generated and compared


def test_repeated_and_evicted_prompts_and_truncated_histories(run, conversations):
    """A repeated turn is a cache hit and answers the same (the cached state is not advanced);
    a one-entry cache and a context so short that old turns are dropped change nothing."""
    histories = [h for c in conversations for h in turns(c)]
    for mode in ("paper", "beam"):
        ref = make(run, mode, 0, seed=3)
        ref.context_length = 96  # prompts drop old exchanges: not prefix extensions any more
        small = make(run, mode, 1, seed=3)
        small.context_length = 96
        for h in histories + histories[::-1]:
            a, b = ref.recommend(h, k=10), small.recommend(h, k=10)
            assert [t.track_id for t in a.tracks] == [t.track_id for t in b.tracks]
            assert a.reply == b.reply and a.info["codes"] == b.info["codes"]
            # The cached state is still the prompt's own (sampling and the reply ran on copies).
            (key, state), = small._states.items()
            assert state.ids == list(key) == small.prompt_ids(h)
            torch.testing.assert_close(state.logits, prefill(small.model, list(key)).logits,
                                       rtol=1e-4, atol=1e-5)


def test_continue_prompt_matches_prefill_and_leaves_the_source(run):
    from talkplay.lm.checkpoint import load_run

    model, _, _, _ = load_run(run, device="cpu")
    model.eval()
    long = list(range(10, 70))
    src = prefill(model, long[:40])
    before = copy_state(src)
    for prompt in (long, long[:40], long[:25], long[:30] + [5, 6, 7]):  # extend, same, cut, fork
        got = continue_prompt(model, src, prompt)
        want = prefill(model, prompt)
        assert got.ids == prompt
        torch.testing.assert_close(got.logits, want.logits, rtol=1e-4, atol=1e-5)
        # The continued state keeps going like a fresh one.
        torch.testing.assert_close(extend(model, got, [3, 4]).logits,
                                   extend(model, want, [3, 4]).logits, rtol=1e-4, atol=1e-5)
    assert src.ids == before.ids and torch.equal(src.logits, before.logits)
    torch.testing.assert_close(extend(model, src, [1]).logits, extend(model, before, [1]).logits)
    with pytest.raises(ValueError):
        continue_prompt(model, src, [])
