"""Split rules: chronological playlist split (the paper's) and warm/cold flags on tracks."""

from __future__ import annotations

import random
from collections import Counter

from talkplay.data.dataset import Dataset


def training_playlists(ds: Dataset) -> list[list[str]]:
    """Track-id sequences of the training playlists: all that item2vec, co-occurrence and
    popularity may learn from (valid and test playlists never count). The playlists' own lists,
    not copies (a copy of MPD's 66M entries costs GB): read them, do not change them."""
    return [p.track_ids for p in ds.playlists if p.split == "train"]


def warm_ids(ds: Dataset) -> set[str]:
    """The one definition of a warm track: it is in a **training** playlist.

    Exactly these tracks have an item2vec vector (item2vec reads training playlists only) and
    so a playlist-co-occurrence code; every other track (only in valid/test playlists, only in
    conversations, or in none) is cold and gets ``<|playlist-none|>``. Evaluation reports warm
    and cold results by this flag, on every dataset alike.
    """
    return {tid for ids in training_playlists(ds) for tid in ids}


def mark_cold(ds: Dataset) -> int:
    """Set ``Track.cold`` = not in any training playlist (see ``warm_ids``). Returns the count."""
    warm = warm_ids(ds)
    n = 0
    for t in ds.tracks:
        t.cold = t.id not in warm
        n += t.cold
    return n


def training_popularity(ds: Dataset) -> None:
    """Set ``Track.popularity`` = number of **training** playlists containing the track.

    Valid and test playlists never count, so neither the popularity baseline nor TalkPlay's
    lookup tie-break can learn from the playlists they are evaluated on.
    """
    counts: Counter[str] = Counter()
    for ids in training_playlists(ds):
        counts.update(set(ids))
    for t in ds.tracks:
        t.popularity = float(counts[t.id])


def chronological_split(ds: Dataset, *, test_size: int, valid_size: int = 0, seed: int = 0) -> str:
    """Assign splits by date, as the paper does with the Million Playlist Dataset.

    Test playlists are sampled from those with the latest ``modified_at`` date (the latest
    calendar day, widened day by day until there are enough); valid playlists are sampled
    from the remaining ones the same way; the rest are train. Conversations take the split
    of their source playlist. Tracks in no training playlist become cold (``mark_cold``).

    Returns:
        A sentence describing the rule, for the manifest.
    """
    rng = random.Random(seed)
    day = lambda p: (p.modified_at or p.created_at or 0) // 86400  # noqa: E731
    order = sorted(ds.playlists, key=day, reverse=True)

    def take(pool: list, n: int) -> set[str]:
        """Sample ``n`` of the latest days' playlists: all playlists of the latest days,
        widened day by day until there are ``n`` (``pool`` is sorted by day, latest first, so
        these days are a prefix of it: the one that ends with the n-th playlist's day)."""
        if n <= 0 or not pool:
            return set()
        end = len(pool)
        if n < len(pool):
            last = day(pool[n - 1])
            end = n
            while end < len(pool) and day(pool[end]) == last:
                end += 1
        chosen = pool[:end]
        return {p.id for p in rng.sample(chosen, min(n, len(chosen)))}

    test = take(order, test_size)
    valid = take([p for p in order if p.id not in test], valid_size)
    for p in ds.playlists:
        p.split = "test" if p.id in test else "valid" if p.id in valid else "train"
    by_playlist = {p.id: p.split for p in ds.playlists}
    for c in ds.conversations:
        if c.playlist_id in by_playlist:
            c.split = by_playlist[c.playlist_id]
    mark_cold(ds)
    return (f"chronological: {len(test)} test playlists sampled from the latest modified_at "
            f"dates, {len(valid)} valid from the next latest, rest train (seed={seed}); "
            "conversations follow their playlist; tracks in no training playlist are cold")
