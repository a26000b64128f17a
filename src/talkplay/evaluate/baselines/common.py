"""What every retrieval baseline shares: the item text, the weighted query, top-k with exclusion.

How the history becomes a query (the same for BM25, dense and the tag-CLAP substitute): the
conversation is a list of weighted parts. Each user message is a text part whose weight decays
with its age, ``decay ** a`` where ``a`` counts user turns back from the latest (a = 0); each
track already in the conversation is a track part of weight ``track_weight * decay ** a``
(a = user turns after it, minus one: the tracks that answered the previous request are as
fresh as the latest request, which usually refers to them: "more like that"). Only tracks the
user accepted count: a track the user rejected (``Message.feedback == "rejected"``) is never
evidence (it stays excluded from the results by the caller). Assistant text is left out: in
synthetic conversations it mostly describes tracks already shown, and the tracks themselves enter as track parts.
This follows the "recent turns matter most, liked items are evidence" practice of CPCD's and
TalkPlay's query-rewriting baselines while staying training-free. Systems score each part and
sum the weighted scores (BM25) or average the weighted embeddings (dense).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkplay.data.conversations.describe import decade
from talkplay.data.schema import REJECTED, Message, Track
from talkplay.recommend.protocol import Recommendation, ScoredTrack


@dataclass
class BaselineOptions:
    """Options every baseline builder accepts (each uses the ones it needs)."""

    decay: float = 0.5
    """Weight multiplier per user turn of age (1.0 = all turns equal)."""
    track_weight: float = 0.5
    """Weight of a track already in the conversation relative to a user turn of the same age."""
    text_model: str = "minilm"
    """"minilm" (packaged all-MiniLM-L6-v2) or any sentence-transformers name/path."""
    clap_model: str = "tagclap"
    """"tagclap" (text encoder + musicnn tags, the offline substitute) or a Hugging Face
    ClapModel name/path such as "laion/clap-htsat-unfused" (needs its weights)."""
    cache_dir: Path | None = None
    """Where catalog embeddings are cached (default DATA/cache)."""
    batch_size: int = 64
    device: str = "cpu"


@dataclass
class QueryPart:
    weight: float
    text: str | None = None
    track_id: str | None = None


_WORD = re.compile(r"[a-zA-Z']{4,}")
_STOP = frozenset("""that this with your have from what when there their they them then than
were been will would could should just like into over only about yeah gonna wanna cause
every where which while these those more some such very much still ever never always""".split())
LYRIC_WORDS = 12
"""Content words of the lyrics indexed per track (most repeated first)."""


def lyric_words(lyrics: str | None, n: int = LYRIC_WORDS) -> list[str]:
    """The ``n`` most repeated content words (4+ letters, no stopwords) of the lyrics."""
    if not lyrics:
        return []
    counts: dict[str, int] = {}
    for w in _WORD.findall(lyrics[:4000]):
        w = w.lower().strip("'")
        if len(w) >= 4 and w not in _STOP:
            counts[w] = counts.get(w, 0) + 1
    return sorted(counts, key=lambda w: -counts[w])[:n]  # stable: first seen wins ties


def tempo_words(bpm: float | None) -> str | None:
    """"112 bpm mid-tempo" (the number and a plain word for its range)."""
    if not bpm or bpm <= 0:
        return None
    word = "slow" if bpm < 90 else "mid-tempo" if bpm < 120 else "fast"
    return f"{round(bpm)} bpm {word}"


def track_text(track: Track, lyric_count: int = LYRIC_WORDS) -> str:
    """Everything a text baseline can match: "{Title} by {Artist} from {Album} {tags} {year}
    {decade}s {bpm} bpm {tempo word} {key} lyrics: {lyric words}", missing fields left out.

    Every field the dataset has can be indexed (tempo, key and mode, lyric themes included),
    so a baseline is compared at its best, not handicapped by a shorter document; each
    baseline picks ``lyric_count`` (0 leaves the lyrics out) on the validation split.
    """
    parts = [track.title]
    if track.artists:
        parts.append(f"by {track.artist}")
    if track.album:
        parts.append(f"from {track.album}")
    tags = track.tags or track.pseudo_tags
    if tags:
        parts.append(" ".join(tags))
    if track.year:
        parts.append(f"{track.year} {decade(track.year)[1]}")  # "1994 90s", "2013 2010s"
    tempo = tempo_words(track.tempo)
    if tempo:
        parts.append(tempo)
    if track.key:
        parts.append(track.key)
    words = lyric_words(track.lyrics, lyric_count) if lyric_count > 0 else []
    if words:
        parts.append("lyrics: " + " ".join(words))
    return " ".join(parts)


def query_parts(history: list[Message], *, decay: float, track_weight: float) -> list[QueryPart]:
    """The weighted parts of a conversation history (see the module docstring).

    Args:
        history: messages so far.
        decay: weight multiplier per user turn of age.
        track_weight: relative weight of tracks in the history.
    Returns:
        Parts with positive weight, oldest first.
    """
    n_users = sum(m.role == "user" for m in history)
    parts: list[QueryPart] = []
    seen_users = 0
    for m in history:
        if m.role == "user":
            seen_users += 1
            if m.content.strip():
                parts.append(QueryPart(decay ** (n_users - seen_users), text=m.content))
        elif m.role == "music" and m.feedback != REJECTED:
            age = max(n_users - seen_users - 1, 0)
            parts.append(QueryPart(track_weight * decay ** age, track_id=m.content))
    return [p for p in parts if p.weight > 0]


def top_k(scores: np.ndarray, ids: list[str], k: int, exclude: set[str] | None,
          info: dict | None = None) -> Recommendation:
    """The ``k`` best-scoring ids not in ``exclude``; ties broken by catalog order (stable).

    Args:
        scores: float [n_items], larger is better.
        ids: track id per row.
        k: how many to return.
        exclude: ids that must not be returned.
        info: diagnostics for the Recommendation.
    Returns:
        A Recommendation.
    """
    scores = np.asarray(scores, dtype=np.float64)
    want = min(len(ids), k + len(exclude or ()))
    if want <= 0:
        return Recommendation([], info=info or {})
    if want < len(ids):
        # Everything scoring at least the want-th best value, so that ties are all kept.
        kth = -np.partition(-scores, want - 1)[want - 1]
        cand = np.flatnonzero(scores >= kth)
    else:
        cand = np.arange(len(ids))
    cand = cand[np.lexsort((cand, -scores[cand]))]  # score descending, then catalog order
    out: list[ScoredTrack] = []
    for i in cand:
        tid = ids[int(i)]
        if exclude and tid in exclude:
            continue
        out.append(ScoredTrack(tid, float(scores[i])))
        if len(out) >= k:
            break
    return Recommendation(out, info=info or {})
