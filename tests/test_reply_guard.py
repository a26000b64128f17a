"""The reply guard: claim words false of the recommended track cannot be generated, true ones can,
and generate_text honours a guard's multi-token bans."""

from __future__ import annotations

import pytest
from test_engine import PROMPT, Cfg
from test_engine import model as model  # noqa: F401  (the tiny Llama fixture)

from talkplay.config import ModelConfig
from talkplay.data.schema import Track
from talkplay.evaluate.replies import ClaimChecker
from talkplay.lm.base import load_tokenizer
from talkplay.recommend.engine import generate_text
from talkplay.recommend.guard import ReplyGuard

BLUE = Track(id="b", title="Blue Hour", artists=["Ann Lee"], release_date="1994",
             tags=["jazz", "mellow", "synth pad"])
OTHER = Track(id="o", title="Thunder Road", artists=["Max Power"], release_date="1981",
              tags=["rock", "upbeat", "80s", "jazz fusion", "female vocals"])
NO_YEAR = Track(id="n", title="Untitled", artists=["Nobody"], tags=["jazz"])


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(ModelConfig(base="tiny"))


def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def allowed(banned, tok, prefix: str, word: str) -> bool:
    """Can ``word`` (its tokens) be generated after ``prefix`` under ``banned``?"""
    ids = encode(tok, prefix)
    for t in encode(tok, word):
        if t in banned(ids):
            return False
        ids.append(t)
    return True


@pytest.mark.parametrize("word, ok", [
    (" rock", False), (" Rock", False), (" upbeat", False), (" jazz fusion", False),
    (" 80s", False), (" 1980s", False), (" 1981", False), (" 80's", False),
    (" female vocals", False), (" female vocal", False), (" 90's", True),
    (" jazz", True), (" mellow", True), (" synth pad", True), (" 90s", True), (" 1990s", True),
    (" 1994", True), (" fusion", True), (" lovely", True),  # not claims, or true ones
])
def test_words_false_of_the_track_are_banned_and_true_ones_free(tok, word, ok):
    banned = ReplyGuard(tok, [BLUE, OTHER]).for_track("b")
    assert allowed(banned, tok, "Blue Hour is a", word) is ok
    if not ok:  # capitalised at the start of the reply too
        assert not allowed(banned, tok, "", word.strip().capitalize())


def test_a_track_without_a_year_may_claim_no_year_or_decade(tok):
    guard = ReplyGuard(tok, [BLUE, OTHER, NO_YEAR])
    banned = guard.for_track("n")
    assert not allowed(banned, tok, "From the", " 90s") and not allowed(banned, tok, "In", " 1994")
    assert allowed(banned, tok, "Some", " jazz")
    assert guard.for_track("missing") is None


def test_the_guard_and_the_checker_agree_on_what_is_false(tok):
    """Every word the guard bans for a track is one the checker calls false, and the reverse."""
    guard, checker = ReplyGuard(tok, [BLUE, OTHER]), ClaimChecker([BLUE, OTHER])
    for track in (BLUE, OTHER):
        banned = set(guard.false_words(track))
        for word in {*guard.tags, "80s", "90s", "1981", "1994"}:
            said = checker.check(f"It has some {word} in it.", track).false_claims
            assert bool(said) == (word in banned), (track.id, word, said)


def test_generate_text_honours_a_multi_token_ban(model):
    free = generate_text(model, PROMPT, Cfg(greedy=True), stop_ids=[], max_new_tokens=4)
    first, second = free[0], free[1]
    seen = []

    def guard(ids):
        seen.append(list(ids))
        return [second] if ids[-1] == first else []

    out = generate_text(model, PROMPT, Cfg(greedy=True), stop_ids=[], max_new_tokens=4, guard=guard)
    assert out[0] == first and out[1] != second  # banned only right after ``first``
    assert seen[0] == PROMPT and seen[1] == [*PROMPT, first]  # asked before every token


SONG = Track(id="s", title="Moon Of Wire", artists=["Nora Baisyl"], release_date="2007",
             tags=["reggae", "chill"],
             lyrics="Midnight streetlights, midnight rain\nElectric hearts can't hold the dark\n"
                    "midnight streetlights call my name")
QUOTE = 'Moon Of Wire by Nora Baisyl: the lyrics keep coming back to "'


def test_a_quoted_lyric_can_only_be_one_of_the_tracks_lyric_words(tok):
    """Random walks through what the guard allows inside the quotation all end in one of the
    facts line's lyric words and the closing quote, which the checker finds true."""
    import random

    from talkplay.data.conversations.describe import lyric_words

    guard, checker = ReplyGuard(tok, [SONG, BLUE]), ClaimChecker([SONG, BLUE])
    words = lyric_words(SONG.lyrics)
    assert "midnight" in words and "chill" not in words
    every = set(range(len(tok)))
    written = set()
    for seed in range(12):
        rng = random.Random(seed)
        banned = guard.for_track("s")
        ids = encode(tok, "(Moon Of Wire; lyrics: midnight) ")
        banned(ids)  # the reply starts here
        ids += encode(tok, QUOTE)
        for _ in range(12):
            free = sorted(every - set(banned(ids)))
            assert free, tok.decode(ids)
            ids.append(rng.choice(free))
            if '"' in tok.decode(ids).split(QUOTE, 1)[1]:
                break
        reply = tok.decode(ids).split(") ", 1)[1]
        quoted = reply[len(QUOTE):].split('"')[0]
        assert '"' in reply[len(QUOTE):], reply  # the quotation was closed
        assert quoted.lower() in words, reply
        assert checker.check(reply, SONG).false_claims == [], reply
        written.add(quoted.lower())
    assert len(written) >= 2  # every lyric word is open, not one forced path
    # outside a quotation about lyrics, any word may follow a quote mark
    banned = guard.for_track("s")
    banned([])
    assert allowed(banned, tok, 'She said "', "chill")


def test_a_track_without_lyric_words_cannot_be_said_to_have_lyrics(tok):
    banned = ReplyGuard(tok, [SONG, BLUE]).for_track("b")
    assert not allowed(banned, tok, "Blue Hour: the", " lyrics")
    assert not allowed(banned, tok, "", "Lyrics")
    assert allowed(ReplyGuard(tok, [SONG, BLUE]).for_track("s"), tok, "Moon: the", " lyrics")


def test_every_lyric_word_the_guard_allows_the_checker_calls_true(tok):
    from talkplay.data.conversations.describe import lyric_words
    from talkplay.data.world import WorldConfig, build_world

    tracks = build_world(WorldConfig(n_tracks=120, n_artists=30, n_playlists=40, audio=False,
                                     seed=1)).dataset.tracks
    assert sum(bool(lyric_words(t.lyrics)) for t in tracks) > 30
    checker = ClaimChecker(tracks)
    for track in tracks:
        for word in lyric_words(track.lyrics):
            verdict = checker.check(f'The lyrics keep coming back to "{word}".', track)
            assert verdict.false_claims == [], (track.id, word)
