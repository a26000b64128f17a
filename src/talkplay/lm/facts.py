"""What a grounded reply may say about a track: its catalog facts, as one short line of text.

With grounded replies (``talkplay train --grounded-replies``) each music block in a rendered
conversation is followed by this line (context, never a training target), and the reply comes
after it: the model reads what the chosen track is before it talks about it. Training, prompts
and the reply at inference all go through ``lm.render`` with the same ``facts`` function.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from talkplay.data.conversations.describe import decade, lyric_words
from talkplay.data.schema import Track

MAX_TAGS = 4
MIN_TAG = 4
"""One-word tags shorter than this (characters) are not claims (too many are other words)."""
YEARS = range(1950, 2030)
"""Years a reply can claim (and ``evaluate.replies`` checks)."""
DECADES = sorted({form for d in range(1950, 2030, 10) for form in (f"{d}s", f"{d % 100:02d}s")})
"""Decades a reply can claim, long and short ("1990s", "90s"); also written "90's"."""
_NOTES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_KEY = re.compile(r"([A-G])([#b\u266f\u266d]*)( sharp| flat)? ([Mm]ajor|[Mm]inor)")
KEY_CLAIM = re.compile(r"(?<![\w#\u266f\u266d])" + _KEY.pattern + r"(?!\w)")
"""A key claim in single-spaced text, as whole words: a note (a letter with any sharp and flat
signs, or with the word "sharp" or "flat") and a mode ("G# minor", "Bb major", "E flat Major")."""


def parse_key(name: str | None) -> tuple[int, str] | None:
    """(pitch class 0-11, "major" or "minor") of a key name such as "F# minor" or "E flat major"
    (None when it is not one)."""
    m = _KEY.fullmatch(" ".join((name or "").split()))
    if m is None:
        return None
    shift = sum(1 if c in "#\u266f" else -1 for c in m[2]) + {" sharp": 1, " flat": -1}.get(m[3], 0)
    return (_NOTES[m[1]] + shift) % 12, m[4].lower()


def key_true(said: str, key: str | None) -> bool | None:
    """Is the key claim ``said`` ("G# minor") true of a track whose key is ``key``: the same pitch
    class and mode, in any spelling ("B# minor" is C minor)? False when the track has no key;
    None when ``key`` is not a key name (the claim cannot be checked)."""
    if not key:
        return False
    mine = parse_key(key)
    return None if mine is None else parse_key(said) == mine


def track_facts(track: Track, max_tags: int = MAX_TAGS) -> str:
    """"(Blue Hour by Ann Lee; album Night; 1965, the 60s; jazz, mellow, female vocals; 92 BPM,
    C minor; lyrics: rain, night)": title and artists, album, year and decade, the first
    ``max_tags`` tags (or pseudo tags) and any later one about the singing ("instrumental",
    "female vocals"), the tempo and key, the lyrics' most repeated content words; missing fields
    are left out. The simulator's replies state tempos, keys and the singing, so these are on
    the line for the model to copy instead of guess (a hidden "instrumental" tag made it claim a
    singer, a hidden key made it name one); a mood, style or instrument tag past the first
    ``max_tags`` is still not shown (the reply guard keeps false tags out)."""
    name = track.title or "untitled"
    if track.artists:
        name += f" by {', '.join(track.artists)}"
    parts = [name]
    if track.album:
        parts.append(f"album {track.album}")
    if track.year:
        parts.append(f"{track.year}, {decade(track.year)[0]}")
    every = list(track.tags or track.pseudo_tags)
    tags = every[:max_tags] + [t for t in every[max_tags:] if "vocal" in t or t == "instrumental"]
    if tags:
        parts.append(", ".join(tags))
    sound = [f"{round(track.tempo)} BPM"] if track.tempo and track.tempo > 0 else []
    sound += [track.key] if track.key else []
    if sound:
        parts.append(", ".join(sound))
    words = lyric_words(track.lyrics)
    if words:
        parts.append("lyrics: " + ", ".join(words))
    return "(" + "; ".join(parts) + ")"


def tag_forms(tag: str) -> set[str]:
    """How a reply may write ``tag``: lower-cased, and a several-word plural also in the
    singular ("female vocals", "female vocal")."""
    tag = tag.lower()
    forms = {tag}
    if " " in tag and tag.endswith("s") and not tag.endswith("ss"):
        forms.add(tag[:-1])
    return forms


def claim_tags(tracks: Iterable[Track]) -> set[str]:
    """The catalog's vocabulary of tag claims: every form (``tag_forms``) of every track's tags
    and pseudo tags of at least ``MIN_TAG`` characters or several words."""
    return {f for tr in tracks for t in (*tr.tags, *tr.pseudo_tags)
            if len(t) >= MIN_TAG or " " in t for f in tag_forms(t)}


def true_tags(track: Track) -> set[str]:
    """The tag claims that are true of ``track``: every form of its tags and pseudo tags."""
    return {f for t in (*track.tags, *track.pseudo_tags) for f in tag_forms(t)}


def decade_forms(year: int | None) -> set[str]:
    """The ways to name the decade of ``year``: {"1990s", "90s"} for 1994 (empty without one)."""
    if not year:
        return set()
    d = year // 10 * 10
    return {f"{d}s", f"{d % 100:02d}s"}  # with an apostrophe ("90's") they are the same claim


def facts_lookup(tracks: Iterable[Track]) -> Callable[[str], str]:
    """track id -> its ``track_facts`` line (computed once per track)."""
    table = {t.id: track_facts(t) for t in tracks}

    def facts(track_id: str) -> str:
        return table.get(track_id, "")

    return facts
