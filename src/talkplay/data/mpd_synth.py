"""MPD-shaped slice files for scale tests: the Million Playlist Dataset's exact JSON layout with
its skew, text fields only, deterministic per seed.

``write_mpd_slices(out, playlists=N)`` writes ``mpd.slice.{start}-{end}.json`` files of
``slice_size`` playlists each (the real MPD: 1,000 slices of 1,000). What is drawn:

- **playlist lengths** from a log-normal (median 49, mean about 66 tracks, as MPD's 66M entries
  over 1M playlists) clipped to MPD's 5-250;
- **tracks** by Zipf-like popularity over a catalog of ``tracks`` ids (default 2.3 per playlist,
  MPD's 2.26M unique tracks for 1M playlists): p(rank r) proportional to 1 / (r + 100), so at
  MPD's size the top track is in about 7% of playlists (MPD's: 4.7%) and most tracks are in
  one or none;
- **artists** (about 8 tracks each, also skewed) and **albums** (about 3 tracks each) per track;
- **modified_at** over 2010-01 to 2017-11, denser towards the end (as MPD, collected in 2017).

Every field is a deterministic function of ``seed`` and the playlist's or track's index, so a
slice can be written alone, in any order, on any machine, and the same slice comes out byte for
byte. Names are plain ASCII ("Track 1234 Blue", "Artist 17").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from talkplay.io import atomic_path

START, END = 1262304000, 1509494400  # 2010-01-01 .. 2017-11-01 (Unix seconds, UTC)
_WORDS = ("Blue", "Night", "Fire", "Love", "Road", "Summer", "Gold", "River", "Dream", "Heart",
          "Rain", "Star", "City", "Wild", "Home", "Light", "Stone", "Ocean", "Ghost", "Echo")
_NAMES = ("chill", "workout", "road trip", "party", "throwbacks", "study", "summer", "sleep",
          "country", "rap", "worship", "oldies", "running", "feels", "jams", "indie")
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _mix(x: int) -> int:
    """splitmix64's finaliser: a 64-bit integer hash."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _uri(kind: str, i: int, seed: int) -> str:
    """A Spotify-like 22-character base62 id, distinct per (kind, index, seed)."""
    key = (seed * 1_000_003 + {"track": 1, "artist": 2, "album": 3}[kind]) << 40 | i
    x = _mix(key) << 64 | _mix(key ^ 0x5DEECE66D)
    chars = []
    for _ in range(22):
        x, r = divmod(x, 62)
        chars.append(_B62[r])
    return f"spotify:{kind}:{''.join(chars)}"


class MpdShape:
    """The catalog side of a generated MPD: track -> artist, album, name, duration.

    Args:
        tracks: catalog size.
        seed: everything derives from it.
    """

    def __init__(self, tracks: int, seed: int = 0):
        if tracks < 1:
            raise ValueError(f"tracks must be at least 1, got {tracks}")
        self.tracks, self.seed = tracks, seed
        weights = 1.0 / (np.arange(tracks, dtype=np.float64) + 100.0)
        self._cum = np.cumsum(weights)
        self._cum /= self._cum[-1]
        # track rank -> a shuffled track index, so popular tracks are spread over artists
        self._order = np.random.default_rng([seed, 1]).permutation(tracks)
        n_artists = max(1, tracks // 8)
        art_w = 1.0 / np.power(np.arange(n_artists, dtype=np.float64) + 2.0, 0.8)
        art_cum = np.cumsum(art_w) / art_w.sum()
        rng = np.random.default_rng([seed, 2])
        self.artist = np.searchsorted(art_cum, rng.random(tracks)).astype(np.int64)
        self.album = (self.artist * 1000 + rng.integers(0, 4, tracks)).astype(np.int64)
        self.duration = rng.integers(90_000, 420_000, tracks).astype(np.int64)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` track indices by popularity."""
        ranks = np.searchsorted(self._cum, rng.random(n))
        return self._order[np.minimum(ranks, self.tracks - 1)]

    def entry(self, track: int, pos: int) -> dict:
        t, a, al = int(track), int(self.artist[track]), int(self.album[track])
        return {"pos": pos, "artist_name": f"Artist {a}",
                "track_uri": _uri("track", t, self.seed),
                "artist_uri": _uri("artist", a, self.seed),
                "track_name": f"Track {t} {_WORDS[t % len(_WORDS)]}",
                "album_uri": _uri("album", al, self.seed),
                "duration_ms": int(self.duration[track]),
                "album_name": f"Album {al} {_WORDS[al % len(_WORDS)]}"}


def playlist(shape: MpdShape, pid: int, seed: int) -> dict:
    """Playlist ``pid`` (a deterministic function of ``seed`` and ``pid``)."""
    rng = np.random.default_rng([seed, 3, pid])
    n = int(min(250, max(5, math.exp(rng.normal(3.9, 0.75)))))
    tracks = shape.draw(rng, n)
    entries = [shape.entry(t, i) for i, t in enumerate(tracks.tolist())]
    modified = int(START + (END - START) * math.sqrt(rng.random()))
    return {"name": _NAMES[int(rng.integers(len(_NAMES)))], "collaborative": "false",
            "pid": pid, "modified_at": modified, "num_tracks": n,
            "num_albums": len({e["album_uri"] for e in entries}),
            "num_followers": int(1 + rng.zipf(2.0)) if rng.random() < 0.9 else 1,
            "tracks": entries, "num_edits": int(rng.integers(1, 40)),
            "duration_ms": sum(e["duration_ms"] for e in entries),
            "num_artists": len({e["artist_uri"] for e in entries})}


def write_mpd_slices(out: str | Path, playlists: int, *, slice_size: int = 1000,
                     tracks: int | None = None, seed: int = 0,
                     on_slice: Callable[[Path], None] | None = None) -> list[Path]:
    """Write ``playlists`` playlists as MPD slice files under ``out`` (each file atomically;
    existing complete slices are kept, so an interrupted run resumes).

    Args:
        out: directory to write into (created).
        playlists: how many playlists (pids 0..playlists-1).
        slice_size: playlists per file (MPD: 1,000).
        tracks: catalog size (default: 2.3 x playlists, at least 100).
        seed: every field derives from it.
        on_slice: called after each file.
    Returns:
        The slice files, in pid order.
    """
    if playlists < 1 or slice_size < 1:
        raise ValueError("playlists and slice_size must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shape = MpdShape(tracks or max(100, int(2.3 * playlists)), seed)
    files = []
    for start in range(0, playlists, slice_size):
        end = min(start + slice_size, playlists) - 1
        path = out / f"mpd.slice.{start}-{end}.json"
        if not path.exists():
            doc = {"info": {"generated_on": "talkplay mpd_synth", "slice": f"{start}-{end}",
                            "version": "v1", "seed": seed, "tracks": shape.tracks},
                   "playlists": [playlist(shape, pid, seed) for pid in range(start, end + 1)]}
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(doc, separators=(",", ":")))
        files.append(path)
        if on_slice:
            on_slice(path)
    return files


__all__ = ["MpdShape", "playlist", "write_mpd_slices"]
