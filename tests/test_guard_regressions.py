"""Reply-guard regressions from a quickstart run: a false tag written in another tokenization
(" female" + " voc" + "al") or misspelled after its first token ("male vocale") got past the
guard, and the checker did not count keys ("it's in G# minor" for a C minor track)."""

from __future__ import annotations

import pytest

from talkplay.config import ModelConfig
from talkplay.data.schema import Track
from talkplay.evaluate.replies import ClaimChecker
from talkplay.lm.base import load_tokenizer
from talkplay.recommend.guard import ReplyGuard

MOON = Track(id="m", title="Electric Moon", artists=["Otis Tionea Quartet"], album="Brorur",
             release_date="1991", tags=["jazz", "swing", "piano", "instrumental"], key="B minor")
SERENADE = Track(id="s", title="Serenade No. 9 in B: I. Allegro", artists=["The Shychos Consort"],
                 album="Live at Red Rocks", release_date="1986",
                 pseudo_tags=["ambient", "electronic", "instrumental"], key="C minor")
SINGER = Track(id="v", title="Blue Song", artists=["Ann Lee"], release_date="1994",
               tags=["pop", "female vocalists"])
OTHER = Track(id="o", title="Thunder Road", artists=["Max Power"], release_date="1981",
              tags=["rock", "female vocals", "male vocals"], key="D major")
NO_KEY = Track(id="n", title="Untitled", artists=["Nobody"], tags=["jazz"])
CATALOG = [MOON, SERENADE, SINGER, OTHER, NO_KEY]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(ModelConfig(base="tiny"))


@pytest.fixture(scope="module")
def guard(tok):
    return ReplyGuard(tok, CATALOG)


def token(tok, text: str) -> int:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 and tok.decode(ids) == text, (text, ids)
    return ids[0]


def writable(guard, tok, track_id: str, prefix: str, pieces: list[str]) -> bool:
    """Can ``pieces`` (each one token, in this split) follow ``prefix`` in a reply?"""
    banned = guard.for_track(track_id)
    ids = tok(prefix, add_special_tokens=False)["input_ids"]
    banned(ids)  # the reply starts after the prefix
    for piece in pieces:
        t = token(tok, piece)
        if t in banned(ids):
            return False
        ids.append(t)
    return True


PREFIX = "Here's Electric Moon by Otis Tionea Quartet - jazz with"


@pytest.mark.parametrize("pieces", [
    [" female", " voc", "al"],  # "female vocal", not as the tokenizer writes it (" vocal")
    [" female", " voc", "als"],
    [" male", " voc", "ale"],  # a misspelling after the banned phrase's first token
    [" male", " voc", "ales"],
    [" male", " vo", "cal"],
    [" male", " vo", "cale"],
])
def test_a_false_phrase_is_banned_however_its_tokens_split_it(guard, tok, pieces):
    assert not writable(guard, tok, "m", PREFIX, pieces)


@pytest.mark.parametrize("track, prefix, pieces", [
    ("m", PREFIX, [" no", " voc", "als"]),  # not a catalog claim
    ("m", PREFIX, [" piano"]),
    ("v", "Blue Song by Ann Lee - pop with", [" female", " voc"]),  # on the way to a true tag
    ("s", "from the album Live at Red", [" Rocks"]),  # the tag "rock" goes on into "Rocks"
])
def test_true_claims_and_other_words_stay_free(guard, tok, track, prefix, pieces):
    assert writable(guard, tok, track, prefix, pieces)


@pytest.mark.parametrize("reply, false", [
    ("Try Serenade No. 9 in B: I. Allegro by The Shychos Consort - it's in G# minor, which "
     "gives it a darker color.", ["key: G# minor"]),
    ("Try Serenade No. 9 in B: I. Allegro - it's in D major.", ["key: D major"]),
    ("It's in C minor, which gives it a darker color.", []),
    ("It's in B# minor.", []),  # enharmonic: the same pitch class and mode as C minor
    ("It's in E flat Major.", ["key: E flat Major"]),
    ("It's in G## major, which gives it a sunnier color.", ["key: G## major"]),
    ("It's in G#, which gives it a darker color.", []),  # a note alone is not counted
    ("A piece in a minor key.", []),  # a mode alone names no key
])
def test_key_claims_are_checked(reply, false):
    got = ClaimChecker(CATALOG).check(reply, SERENADE)
    assert got.false_claims == false
    assert got.claims >= len(false)


def test_any_key_is_false_of_a_track_without_one_and_none_of_an_unreadable_one():
    from talkplay.lm.facts import key_true, parse_key

    checker = ClaimChecker(CATALOG)
    assert checker.check("It's in C minor.", NO_KEY).false_claims == ["key: C minor"]
    odd = Track(id="x", title="X", key="mixolydian")
    assert key_true("C minor", odd.key) is None
    assert checker.check("It's in C minor.", odd).false_claims == []
    assert parse_key("B# minor") == parse_key("C minor") == parse_key("Dbb minor") == (0, "minor")
    assert parse_key("Db major") == parse_key("C sharp Major") and parse_key("H major") is None


def test_a_key_in_the_tracks_own_title_is_no_claim():
    nocturne = Track(id="t", title="Nocturne in E flat major", artists=["Ann Lee"], key="C minor")
    checker = ClaimChecker([*CATALOG, nocturne])
    assert checker.check("Here is Nocturne in E flat major by Ann Lee.", nocturne).false_claims == []
    assert checker.check("Nocturne in E flat major, in D minor.", nocturne).false_claims == [
        "key: D minor"]
