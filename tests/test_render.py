"""Rendering: label masks, music-before-text, rejected turns, windows, prompts, playlists."""

from __future__ import annotations

import numpy as np
import pytest

from talkplay.config import ModelConfig
from talkplay.data.schema import Conversation, Message
from talkplay.lm.base import load_tokenizer, tiny_model
from talkplay.lm.render import (
    PLAYLIST_PROMPT,
    SYSTEM_PROMPT,
    encode_text,
    render_conversation,
    render_playlist,
    render_prompt,
)
from talkplay.lm.vocab import expand_vocabulary
from talkplay.tokenize import grammar
from talkplay.tokenize.codebook import Codebook


@pytest.fixture(scope="module")
def setup():
    tok = load_tokenizer(ModelConfig(base="tiny"))
    model = tiny_model(ModelConfig(base="tiny", tiny_hidden=32), len(tok))
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(12)]
    codes = rng.integers(0, 4, (12, 5))
    codes[3, 3] = grammar.MISSING
    cb = Codebook(ids, codes, {m: rng.normal(size=(4, 3)).astype("f4") for m in grammar.MODALITIES})
    vocab = expand_vocabulary(model, tok, grammar.vocabulary(cb.k))
    return tok, cb, vocab


def conv() -> Conversation:
    return Conversation("c1", [
        Message("user", "something calm <|audio-1|> please"),
        Message("music", "t3"),
        Message("assistant", "Try this quiet one."),
        Message("user", "too quiet"),
        Message("music", "t5"),
        Message("assistant", "Here is a louder one."),
    ], meta={"rejected": [1]})


def labelled(r) -> list[int]:
    return [i for i, m in zip(r.ids, r.mask, strict=True) if m]


def test_labels_are_exactly_assistant_text_music_and_end_of_turn(setup):
    tok, cb, vocab = setup
    (r,) = render_conversation(conv(), tok, cb, vocab)
    assert len(r.ids) == len(r.mask) and not r.truncated
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    want = (encode_text(tok, "Try this quiet one.") + [eot]  # t3 rejected: shown, not trained
            + vocab.ids(cb.codes_of("t5")) + encode_text(tok, "Here is a louder one.") + [eot])
    assert labelled(r) == want
    text = tok.decode(r.ids)
    # System prompt, user text kept as text, music block BEFORE the assistant's text.
    assert SYSTEM_PROMPT in text and "something calm <|audio-1|> please" in text
    assert cb.text_of("t3") + "Try this quiet one." in text
    assert cb.text_of("t5") + "Here is a louder one." in text
    audio1 = int(vocab.table[4, 1])
    user_span = encode_text(tok, "something calm <|audio-1|> please")
    assert audio1 not in user_span
    # The rejected block is present in the ids (as context) but unlabelled.
    block = vocab.ids(cb.codes_of("t3"))
    pos = next(i for i in range(len(r.ids)) if r.ids[i:i + 7] == block)
    assert not any(r.mask[pos:pos + 7])


def test_music_after_text_in_source_still_comes_first(setup):
    tok, cb, vocab = setup
    c = Conversation("c2", [Message("user", "hi"), Message("assistant", "Listen:"),
                            Message("music", "t1")])
    (r,) = render_conversation(c, tok, cb, vocab)
    assert cb.text_of("t1") + "Listen:" in tok.decode(r.ids)


def test_long_conversation_becomes_windows_that_keep_every_turn(setup):
    tok, cb, vocab = setup
    msgs = []
    for i in range(8):
        msgs += [Message("user", f"request number {i} with some words"), Message("music", f"t{i}"),
                 Message("assistant", f"reply number {i}")]
    c = Conversation("long", msgs)
    (full,) = render_conversation(c, tok, cb, vocab, context_length=4096)
    windows = render_conversation(c, tok, cb, vocab, context_length=150)
    assert len(windows) > 1 and all(w.truncated for w in windows)
    assert all(len(w.ids) <= 150 for w in windows)
    assert all(tok.decode(w.ids).count(SYSTEM_PROMPT) == 1 for w in windows)
    # Every labelled token of the full rendering is labelled in exactly one window, in order.
    assert sum((labelled(w) for w in windows), []) == labelled(full)


def test_prompt_ends_where_music_starts_and_matches_training_prefix(setup):
    tok, cb, vocab = setup
    c = conv()
    (r,) = render_conversation(c, tok, cb, vocab)
    prompt = render_prompt(c.messages[:4], tok, cb, vocab)
    # The training sequence continues the prompt with the next music block.
    assert r.ids[: len(prompt)] == prompt
    assert r.ids[len(prompt)] == vocab.start
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
    # A too-long history keeps the newest exchanges.
    short = render_prompt(c.messages[:4], tok, cb, vocab, context_length=80, reserve=10)
    assert len(short) <= 70 and "too quiet" in tok.decode(short)
    assert "something calm" not in tok.decode(short)


def test_playlist_continuation_sample(setup):
    tok, cb, vocab = setup
    tracks = [f"t{i}" for i in range(10)]
    r = render_playlist(tracks, 4, tok, cb, vocab, max_target=3)
    assert labelled(r) == sum((vocab.ids(cb.codes_of(t)) for t in tracks[4:7]), []) + [
        tok.convert_tokens_to_ids("<|im_end|>")]
    text = tok.decode(r.ids)
    assert PLAYLIST_PROMPT in text
    assert "".join(cb.text_of(t) for t in tracks[:4]) in text
    assert not r.truncated
    # Tight context: oldest inputs dropped, at least one input and one target kept.
    small = render_playlist(tracks, 8, tok, cb, vocab, context_length=75, max_target=2)
    assert len(small.ids) <= 75 and small.truncated
    assert cb.text_of("t7") + "<|im_end|>" in tok.decode(small.ids)
    with pytest.raises(ValueError):
        render_playlist(tracks, 0, tok, cb, vocab)


def test_unknown_track_is_a_clear_error(setup):
    tok, cb, vocab = setup
    c = Conversation("bad", [Message("user", "x"), Message("music", "nope")])
    with pytest.raises(KeyError, match="nope"):
        render_conversation(c, tok, cb, vocab)


def test_hidden_playlist_codes_render_the_none_token(setup):
    from talkplay.train.data import hidden_playlist_codes

    tok, cb, vocab = setup
    c = conv()
    music = [i for i, m in enumerate(c.messages) if m.role == "music"]
    assert hidden_playlist_codes(c, cb, 0.0, seed=0) == frozenset()
    everything = hidden_playlist_codes(c, cb, 1.0, seed=0)
    assert everything == frozenset(i for i in music if cb.codes_of(c.messages[i].content)[0] >= 0)
    assert hidden_playlist_codes(c, cb, 0.5, seed=3) == hidden_playlist_codes(c, cb, 0.5, seed=3)
    plain = render_conversation(c, tok, cb, vocab)[0].ids
    hidden = render_conversation(c, tok, cb, vocab, hide_playlist=everything)[0].ids
    none_id = int(vocab.ids((-1, 0, 0, 0, 0))[1])  # <|playlist-none|> follows <start_of_music>
    assert len(plain) == len(hidden) and plain != hidden
    assert hidden.count(none_id) == len(everything) + plain.count(none_id)
