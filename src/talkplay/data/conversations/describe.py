"""Track attributes as phrase slots, and template filling.

``slots(track, rng)`` turns a track's fields (tags or pseudo tags, release year, tempo, key,
lyrics, album) into short phrases such as ``mood="mellow"``, ``era="the 90s"``,
``tempo="laid-back"``. A template is usable for a track only when every slot it names is
available, so phrases stay grounded in the track's real attributes.
"""

from __future__ import annotations

import random
import re
import string
from functools import lru_cache

from talkplay.data.conversations import phrases as P
from talkplay.data.conversations.common import tag_set
from talkplay.data.schema import Track

_FORMATTER = string.Formatter()
_WORD = re.compile(r"[a-zA-Z']{4,}")


@lru_cache(maxsize=4096)
def template_slots(template: str) -> frozenset[str]:
    """Names of the ``{slots}`` in a template."""
    return frozenset(name for _, name, _, _ in _FORMATTER.parse(template) if name)


def tempo_bucket(bpm: float | None) -> str | None:
    if not bpm or bpm <= 0:
        return None
    return "slow" if bpm < 90 else "mid" if bpm < 120 else "fast"


def decade(year: int | None) -> tuple[str, str] | None:
    """("the 90s", "90s") for 1994; ("the 2010s", "2010s") for 2013."""
    if not year:
        return None
    d = year // 10 * 10
    short = f"{d % 100:02d}s" if d < 2000 else f"{d}s"
    return f"the {short}", short


def lyric_theme(lyrics: str | None, rng: random.Random) -> str | None:
    """A content word from the lyrics (what the song is about, roughly)."""
    top = _lyric_words(lyrics) if lyrics else ()
    return rng.choice(top) if top else None


def lyric_words(lyrics: str | None) -> tuple[str, ...]:
    """Up to five content words of the lyrics, most repeated first (what ``lyric_theme`` draws
    from)."""
    return _lyric_words(lyrics) if lyrics else ()


@lru_cache(maxsize=65536)
def _lyric_words(lyrics: str) -> tuple[str, ...]:
    words = [w.lower().strip("'") for w in _WORD.findall(lyrics[:2000])]
    words = [w for w in words if w not in P.STOPWORDS and len(w) >= 4]
    # Prefer repeated words: they are more likely the song's subject than a passing word.
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    first = {w: i for i, w in reversed(list(enumerate(words)))}
    return tuple(sorted(counts, key=lambda w: (-counts[w], first[w]))[:5])


_ERA_TAG = re.compile(r"^(\d0s|\d{4}s)$")


def tag_kinds(track: Track) -> dict[str, list[str]]:
    """A track's tags sorted into mood, era, vocals, instrument and style (the rest: genres)."""
    return _kinds(tuple(sorted(tag_set(track))))


@lru_cache(maxsize=65536)
def _kinds(tags: tuple[str, ...]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {"mood": [], "era": [], "vocals": [], "instrument": [], "style": []}
    for t in tags:
        if t in P.MOODS:
            kinds["mood"].append(t)
        elif _ERA_TAG.match(t):
            kinds["era"].append(t)
        elif "vocal" in t or t == "instrumental":
            kinds["vocals"].append("no vocals" if t == "instrumental" else t)
        elif t.split()[-1] in P.INSTRUMENT_WORDS:
            kinds["instrument"].append(t)
        else:
            kinds["style"].append(t)
    return kinds


def slots(track: Track, rng: random.Random) -> dict[str, str]:
    """Available phrase slots for a track; a slot is absent when the track lacks the field."""
    out: dict[str, str] = {"noun": rng.choice(P.NOUNS), "title": track.title}
    if track.artists:
        out["artist"] = track.artist
    kinds = tag_kinds(track)
    for kind in ("mood", "style", "instrument", "vocals"):
        if kinds[kind]:
            out[kind] = rng.choice(kinds[kind])
    era = decade(track.year) or (("the " + kinds["era"][0], kinds["era"][0]) if kinds["era"] else None)
    if era:
        out["era"], out["era_adj"] = era
        if track.year:
            out["year"] = str(track.year)
    bucket = tempo_bucket(track.tempo)
    if bucket:
        out["tempo"] = rng.choice(P.TEMPO_WORDS[bucket])
        out["bpm"] = str(round(track.tempo))
    if track.key:
        out["key"] = track.key
        mode = "minor" if "min" in track.key.lower() else "major"
        out["mode"] = mode
        out["keymood"] = rng.choice(P.KEY_MOODS[mode])
    theme = lyric_theme(track.lyrics, rng)
    if theme:
        out["theme"] = theme
    if track.album:
        out["album"] = track.album
    return out


def fill(templates: list[str], values: dict[str, str], rng: random.Random,
         need: set[str] | None = None) -> str | None:
    """Fill a random template whose slots are all in ``values``; None when none fits.

    Args:
        templates: candidate templates.
        values: slot values.
        rng: seeded generator.
        need: if given, only templates using at least one of these slots qualify.
    """
    usable = [t for t in templates if template_slots(t) <= values.keys()
              and (need is None or template_slots(t) & need)]
    if not usable:
        return None
    return fix_articles(rng.choice(usable).format(**values))


def fix_articles(text: str) -> str:
    """"a upbeat" -> "an upbeat", "a 80s" -> "an 80s"."""
    text = re.sub(r"\b([Aa]) (?!one\b|uni|use|eu)(?=[aeiouAEIOU]|8|18\d|11\b)", r"\1n ", text)
    return text[0].upper() + text[1:] if text else text


def describe(track: Track, rng: random.Random) -> str:
    """A short attribute description of a track ("a mellow jazz tune from the 60s")."""
    values = slots(track, rng)
    # Prefer descriptions with two attributes; fall back to whatever the track offers.
    text = fill(P.DESCRIBE, values, rng)
    if text is None:  # a track without usable attributes
        return rng.choice(["something good", "something you think I'd like", "a good one"])
    return text[0].lower() + text[1:]
