"""Pieces both generators share: the conversation shape, negative sets, statistics, and adding
conversations to a dataset."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from talkplay.data.dataset import Dataset, write_dataset
from talkplay.data.schema import Conversation, Playlist, Track

# Manifest keys that write_dataset/make_manifest set themselves; everything else is carried over.
_OWN_KEYS = {"kind", "format_version", "talkplay_version", "created", "source", "split_rule", "counts"}


@dataclass
class ConversationShape:
    """How conversations are cut from playlists: the settings the simulator and the LLM
    generator share (each config holds one as ``shape``)."""

    seed: int = 0
    max_turns: int = 8
    """Most music turns per conversation (rejected tracks included)."""
    min_tracks: int = 2
    """Playlists with fewer tracks (in the catalog) are skipped."""
    per_playlist: int = 1
    """Conversations per playlist; the second and later use other windows of long playlists."""
    reject_rate: float = 0.15
    """Chance per music turn that a negative-set track comes first and the user turns it down
    (the LLM generator asks for that many rejections in its prompt)."""
    negatives: int = 8
    """Size of the negative set per conversation (rejected tracks are drawn from it)."""

    def window(self, ids: list[str], index: int, rng: random.Random) -> tuple[int, int] | None:
        """The playlist tracks conversation ``index`` walks through, as ``ids[start:stop]``.

        Args:
            ids: the playlist's track ids that are in the catalog, in playlist order.
            index: which conversation of the playlist (0 .. per_playlist - 1); 0 starts at the
                first track, later ones at a random offset (drawn from ``rng``).
            rng: the conversation's seeded generator.
        Returns:
            (start, stop), or None when the playlist has fewer than ``min_tracks`` tracks.
        """
        if len(ids) < max(self.min_tracks, 1):
            return None
        n = min(len(ids), self.max_turns)
        start = 0 if index == 0 or len(ids) == n else rng.randrange(len(ids) - n + 1)
        return start, start + n


def tag_set(track: Track) -> set[str]:
    """Lower-cased tags of a track, falling back to its pseudo tags."""
    return {t.lower() for t in (track.tags or track.pseudo_tags)}


class NegativeSampler:
    """Draws, for a playlist, tracks that are not in it and preferably unlike it.

    Candidates for train/valid playlists exclude cold tracks, so that rejected tracks never
    leak test-only items into training conversations.

    Args:
        tracks: the catalog.
        pool: candidates drawn at random per call; the least similar of them are returned.
    """

    def __init__(self, tracks: list[Track], pool: int = 64):
        self.all = list(tracks)
        self.warm = [t for t in tracks if not t.cold]
        self.pool = pool
        self._tags = {t.id: tag_set(t) for t in tracks}
        self._artists = {t.id: t.artists for t in tracks}

    def sample(self, playlist_ids: list[str], split: str, rng: random.Random, n: int) -> list[Track]:
        """Up to ``n`` tracks outside the playlist, least tag overlap with it first.

        Args:
            playlist_ids: the playlist's track ids.
            split: the playlist's split ("test" may use cold tracks).
            rng: seeded generator (the only source of randomness).
            n: how many to return.
        Returns:
            Tracks sorted from least to most similar to the playlist.
        """
        cands = self.all if split == "test" else self.warm
        inside = set(playlist_ids)
        if n <= 0:
            return []
        if len(cands) <= self.pool * 4:
            picked = [t for t in cands if t.id not in inside]
        else:
            # Large catalog: rank a random pool instead of scanning everything.
            found: dict[str, Track] = {}
            for _ in range(max(self.pool, n) * 4):
                t = cands[rng.randrange(len(cands))]
                if t.id not in inside:
                    found[t.id] = t
                if len(found) >= max(self.pool, n):
                    break
            picked = list(found.values())
        rng.shuffle(picked)  # random order among equally distant tracks (the sort is stable)
        tags = {x for tid in playlist_ids for x in self._tags.get(tid, ())}
        artists = {a for tid in playlist_ids for a in self._artists.get(tid, ())}

        def distance(t: Track) -> tuple:
            # Fewer shared tags and no shared artist = more clearly "not what the user wants".
            return (len(self._tags[t.id] & tags), bool(set(t.artists) & artists))

        return sorted(picked, key=distance)[:n]


def conversation_stats(convs: list[Conversation]) -> dict[str, int]:
    """Counts of conversations, music turns, accepts, rejects and direction changes."""
    labels: Counter = Counter()
    for c in convs:
        labels.update(c.meta.get("feedback", []))
    return {
        "conversations": len(convs),
        "turns": sum(len(c.music_ids()) for c in convs),
        "accepts": labels["accept"],
        "rejects": sum(len(c.meta.get("rejected", [])) for c in convs),
        "direction_changes": labels["direction"],
    }


def playlists_to_use(ds: Dataset, splits: list[str] | None = None, limit: int | None = None
                     ) -> list[Playlist]:
    """The dataset's playlists in a chosen set of splits, in file order, at most ``limit``."""
    chosen = [p for p in ds.playlists if not splits or p.split in splits]
    return chosen[:limit] if limit else chosen


def add_conversations(ds: Dataset, convs: list[Conversation]) -> int:
    """Add ``convs`` to ``ds`` in place; a conversation with an existing id replaces it.

    Each conversation takes its playlist's split, so the dataset's split is kept.

    Returns:
        How many existing conversations were replaced.
    """
    split_of = {p.id: p.split for p in ds.playlists}
    for c in convs:
        if c.playlist_id in split_of:
            c.split = split_of[c.playlist_id]
    new_ids = {c.id for c in convs}
    before = len(ds.conversations)
    ds.conversations = [c for c in ds.conversations if c.id not in new_ids] + list(convs)
    return before + len(convs) - len(ds.conversations)


def save_with_generator(path: str | Path, ds: Dataset, record: dict) -> Path:
    """Rewrite the dataset atomically, keeping its manifest and appending ``record``.

    Args:
        path: dataset directory.
        ds: dataset read from ``path`` with conversations added.
        record: {"generator": ..., "config": ..., "added": ...} for the manifest's
            ``conversation_generators`` list.
    Returns:
        The dataset directory.
    """
    old = dict(ds.manifest)
    extra = {k: v for k, v in old.items() if k not in _OWN_KEYS}
    extra["conversation_generators"] = [*old.get("conversation_generators", []), record]
    return write_dataset(path, ds, source=old.get("source", "unknown"),
                         split_rule=old.get("split_rule", "unknown"), extra=extra)
