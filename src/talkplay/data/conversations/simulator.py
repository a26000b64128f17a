"""Rule-based conversation simulator (offline stand-in for the paper's LLM generator).

Turns a playlist into ``user -> music -> assistant -> user -> music -> assistant ...``
following the paper's rules (section 3.2, appendix A.1): the opening query names a track
or artist or describes tags, mood and era; every assistant turn carries exactly one track
(the music message comes first, then a short reason grounded in that track's attributes);
each later user turn accepts, rejects (the previous track came from a negative set of
tracks outside the playlist; the next one comes from the playlist again) or changes
direction. Playlist tracks are used in playlist order. Output is deterministic per seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field

from talkplay.data.conversations import phrases as P
from talkplay.data.conversations.common import ConversationShape, NegativeSampler, tag_set
from talkplay.data.conversations.describe import describe, fill, slots, tag_kinds
from talkplay.data.schema import Conversation, Message, Playlist, Track


@dataclass
class SimulatorConfig:
    """How the simulator shapes conversations."""

    shape: ConversationShape = field(default_factory=ConversationShape)
    """Seed, turns, windows, rejections and negatives: shared with the LLM generator."""
    name_rate: float = 0.25
    """Chance that the opening query names the first track or its artist instead of describing it."""
    title_rate: float = 0.04
    """Chance that a later request names the next track's title (kept low on purpose)."""
    direction_overlap: float = 0.1
    """A next track whose tag overlap (Jaccard) with the previous one is below this, by
    another artist, is introduced as a change of direction."""

    def record(self) -> dict:
        """Settings for manifests, flat (the shape's fields beside the simulator's own)."""
        own = asdict(self)
        return {**own.pop("shape"), **own}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _join(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


_AFTER_COMMA = re.compile(r"^(\w+(?: there)?, )([A-Z])(?=[a-z])")


def _opening(track: Track, cfg: SimulatorConfig, rng: random.Random) -> str:
    # "Hi, Can you ..." -> "Hi, can you ..." (prefixes ending in a comma run into the sentence).
    return _AFTER_COMMA.sub(lambda m: m.group(1) + m.group(2).lower(), _opening_raw(track, cfg, rng))


def _opening_raw(track: Track, cfg: SimulatorConfig, rng: random.Random) -> str:
    values = slots(track, rng)
    values.update(prefix=rng.choice(P.OPEN_PREFIXES), context=rng.choice(P.OPEN_CONTEXTS),
                  verb=rng.choice(P.OPEN_VERBS), desc=describe(track, rng))
    if "artist" in values and rng.random() < cfg.name_rate:
        pool = P.OPEN_NAME_TRACK if rng.random() < 0.4 else P.OPEN_NAME_ARTIST
        return fill(pool, values, rng)
    return fill(P.OPEN_DESCRIBE, values, rng)


def _request(prev: Track, nxt: Track, cfg: SimulatorConfig, rng: random.Random) -> str:
    """What the user asks for next, mostly by attributes or by reference to the last track."""
    values = {"desc": describe(nxt, rng), "title": nxt.title, "artist": nxt.artist,
              "prev_artist": prev.artist}
    if nxt.artists and rng.random() < cfg.title_rate:
        return fill(P.TITLE_REQUESTS, values, rng)
    if nxt.artists and set(nxt.artists) & set(prev.artists) and rng.random() < 0.4:
        return fill(P.NEXT_SAME_ARTIST, values, rng)
    r = rng.random()
    if r < 0.2:
        return rng.choice(P.NEXT_SIMILAR)
    if r < 0.35 and prev.artists and not set(nxt.artists) & set(prev.artists):
        return fill(P.NEXT_SIMILAR_ARTIST, values, rng)
    return fill(P.NEXT_DESCRIBE, values, rng)


def _reject_reason(neg: Track, target: Track, rng: random.Random) -> str:
    """Why the user turns down ``neg`` when they wanted something like ``target``."""
    options: list[tuple[str, str]] = []
    theirs, ours = tag_kinds(neg), tag_kinds(target)
    for kind in ("style", "mood", "instrument", "vocals"):
        extra = sorted(set(theirs[kind]) - set(ours[kind]))
        if extra:
            options.append((kind, rng.choice(extra)))
    if neg.artists and not set(neg.artists) & set(target.artists):
        options.append(("artist", neg.artist))
    if neg.year and target.year and abs(neg.year - target.year) >= 10:
        options.append(("era", rng.choice(["old", "dated", "retro"]) if neg.year < target.year
                        else rng.choice(["modern", "recent", "new"])))
    if neg.tempo and target.tempo and abs(neg.tempo - target.tempo) > 25:
        options.append(("tempo", "fast" if neg.tempo > target.tempo else "slow"))
    if not options:
        return ""
    kind, word = rng.choice(options)
    if word == "no vocals":
        return "I wanted something with vocals."
    return rng.choice(P.REJECT_REASONS[kind]).format(neg=word, Neg=word[:1].upper() + word[1:])


def _reply(track: Track, rng: random.Random, lead: str = "") -> str:
    """The assistant's line for a track: an intro plus a reason grounded in its attributes."""
    values = slots(track, rng)
    values.setdefault("artist", "an artist I think you'll like")
    intro = fill(P.ASSISTANT_INTROS, values, rng).rstrip("?")
    reason = fill(P.ASSISTANT_REASONS, values, rng)
    sep = " - " if ":" in intro else rng.choice([": ", " - ", ", "])
    text = f"{intro}{sep}{reason[0].lower() + reason[1:]}." if reason else f"{intro}."
    return _join(lead, text)


def simulate_playlist(playlist: Playlist, catalog: dict[str, Track], negatives: NegativeSampler,
                      cfg: SimulatorConfig, index: int = 0) -> Conversation | None:
    """One conversation from one playlist.

    Args:
        playlist: the source playlist (its order is followed).
        catalog: track id -> Track.
        negatives: sampler of negative-set tracks.
        cfg: simulator settings.
        index: which conversation of this playlist (0 .. per_playlist - 1).
    Returns:
        The conversation, or None when the playlist is shorter than ``cfg.shape.min_tracks``.
    """
    shape = cfg.shape
    ids = [t for t in playlist.track_ids if t in catalog]
    # Seeding by (seed, playlist, index) makes each conversation independent of the others.
    rng = random.Random(f"{shape.seed}:{playlist.id}:{index}")
    span = shape.window(ids, index, rng)
    if span is None:
        return None
    start, stop = span
    window = [catalog[t] for t in ids[start:stop]]
    negs = negatives.sample(ids, playlist.split, rng, shape.negatives)
    msgs: list[Message] = []
    rejected: list[int] = []
    feedback: list[str] = []
    music_turns = 0
    user_text = _opening(window[0], cfg, rng)
    feedback.append("start")
    for i, track in enumerate(window):
        if music_turns >= shape.max_turns:
            break
        lead = ""
        # A rejection needs room for the rejected turn and the playlist turn after it.
        if negs and rng.random() < shape.reject_rate and music_turns + 2 <= shape.max_turns:
            neg = negs.pop(0)
            msgs += [Message("user", user_text), Message("music", neg.id),
                     Message("assistant", _reply(neg, rng))]
            rejected.append(len(msgs) - 2)
            music_turns += 1
            user_text = _join(rng.choice(P.REJECT_OPENERS), _reject_reason(neg, track, rng),
                              fill(P.REJECT_RETRY, {"desc": describe(track, rng)}, rng))
            feedback.append("reject")
            lead = rng.choice(P.ASSISTANT_APOLOGY)
        elif i > 0 and feedback[-1] == "direction" and rng.random() < 0.5:
            lead = rng.choice(P.ASSISTANT_SWITCH)
        msgs += [Message("user", user_text), Message("music", track.id),
                 Message("assistant", _reply(track, rng, lead))]
        music_turns += 1
        if i + 1 < len(window) and music_turns < shape.max_turns:
            nxt = window[i + 1]
            turned = (_jaccard(tag_set(track), tag_set(nxt)) < cfg.direction_overlap
                      and not set(track.artists) & set(nxt.artists))
            if turned:
                user_text = _join(rng.choice(P.DIRECTION_CHANGES),
                                  fill(P.NEXT_DESCRIBE, {"desc": describe(nxt, rng)}, rng))
                feedback.append("direction")
            else:
                user_text = _join(rng.choice(P.ACCEPTS), _request(track, nxt, cfg, rng))
                feedback.append("accept")
    return Conversation(
        id=f"{playlist.id}:sim{index}", messages=msgs, split=playlist.split,
        playlist_id=playlist.id, source="simulator",
        meta={"rejected": rejected, "feedback": feedback, "window": [start, stop]},
    )


def simulate(tracks: list[Track], playlists: list[Playlist], cfg: SimulatorConfig,
             progress=None) -> list[Conversation]:
    """Conversations for every playlist (``cfg.shape.per_playlist`` each).

    Args:
        tracks: the catalog (negative sets are drawn from it).
        playlists: source playlists.
        cfg: simulator settings.
        progress: optional callable called with 1 after each playlist.
    Returns:
        Conversations in playlist order.
    """
    catalog = {t.id: t for t in tracks}
    sampler = NegativeSampler(tracks)
    out: list[Conversation] = []
    for p in playlists:
        for j in range(cfg.shape.per_playlist):
            conv = simulate_playlist(p, catalog, sampler, cfg, j)
            if conv is not None:
                out.append(conv)
        if progress:
            progress(1)
    return out
