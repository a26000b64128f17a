"""What a grounded reply may say about a track: its catalog facts, as one short line of text.

With grounded replies (``talkplay train --grounded-replies``) each music block in a rendered
conversation is followed by this line (context, never a training target), and the reply comes
after it: the model reads what the chosen track is before it talks about it. Training, prompts
and the reply at inference all go through ``lm.render`` with the same ``facts`` function.
"""

from __future__ import annotations

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


def track_facts(track: Track, max_tags: int = MAX_TAGS) -> str:
    """"(Blue Hour by Ann Lee; album Night; 1965, the 60s; jazz, mellow; lyrics: rain, night)":
    title and artists, album, year and decade, the first tags (or pseudo tags), the lyrics' most
    repeated content words; missing fields are left out."""
    name = track.title or "untitled"
    if track.artists:
        name += f" by {', '.join(track.artists)}"
    parts = [name]
    if track.album:
        parts.append(f"album {track.album}")
    if track.year:
        parts.append(f"{track.year}, {decade(track.year)[0]}")
    tags = list(track.tags or track.pseudo_tags)[:max_tags]
    if tags:
        parts.append(", ".join(tags))
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
