"""The embedded music world: an offline, seeded dataset in which every modality carries signal.

Generative story (each step draws from one seeded ``numpy`` generator):

1. **Scenes.** ``n_scenes`` hidden listener communities. Each scene mixes a few genres
   (``genres_per_scene``), so a scene groups *specific artists across genres*. Scenes appear
   in no tag, title, name or lyric: only playlist co-occurrence reveals them.
2. **Artists.** Each artist joins one scene, then takes a genre from that scene's mixture, a
   sub-genre, a debut year in the genre's era and a career span (the release years), a
   Zipf-distributed popularity, a mood profile (the genre's moods, perturbed per artist), a
   tempo centre, a vocal style and an instrumentation (the genre's core plus optional ones).
3. **Tracks.** Artists get tracks (at least one each) and albums. A track draws a mood from its
   artist's profile; the mood sets the mode (sad/dark moods are mostly minor) and shifts the
   tempo (energetic moods are faster); the key root is uniform. A lyric theme is drawn from
   the mood's themes times the genre's bias; instrumental tracks have no lyrics. Popularity =
   artist popularity x a within-artist Zipf term x noise. A share of tracks are *new releases*
   dated inside the held-out (valid and test) windows.
4. **Tags.** Genre, sub-genre, mood, instruments, decade and vocal style, each kept with a
   probability that grows with popularity (tail tracks have few tags; ``p_untagged`` none),
   plus occasional wrong moods.
5. **Audio.** A preview clip per track rendered from genre, tempo, key, mode, instruments and
   vocal style (``world.audio``).
6. **Playlists.** Dates spread over a few years, denser lately. A playlist belongs to a
   listener of one scene and has a theme: a mood (``p_mood_playlist``), a genre
   (``p_genre_playlist``) or none. Its tracks are drawn without replacement, a share
   ``1 - p_off_scene`` from the scene and the rest from the whole catalog, weighted by
   popularity and boosted by the theme, with at most ``max_per_artist`` tracks per artist (so
   artist names alone do not give the next track away); new releases can appear only after
   their release day and are boosted then. Half the playlists are ordered by (noisy) tempo,
   like an energy arc; the rest are shuffled.
7. **Split.** The latest playlists (from the test cut-off day on) are test; a small valid set
   comes from the next latest (``chronological_split``). New releases come out from the valid
   window on, so they are cold, and both held-out splits ask for them.

So text retrieval finds the genre or mood of a playlist (tags, names, lyric words), but
only co-occurrence finds its scene: a next-track recommender that learned the playlist
structure beats one that matches text. Measured on the default world (seed 0, before new
releases reached the valid window, which moved only their dates), next-track
MRR over positions 3-8 of the test playlists: BM25 over "{Title} by {Artist} from {Album}
{tags} {year}" 0.015, MiniLM dense retrieval 0.010-0.017, popularity 0.014, summed train
co-occurrence counts 0.035, an oracle that knows the hidden scene 0.044. musicnn (MSD)
embeddings of the clips predict the genre with 98% accuracy (5-fold logistic regression)
and the tempo with r = 0.92. ``out/world/latent.json`` holds the hidden variables for
analysis only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from talkplay.data.dataset import Dataset, write_dataset
from talkplay.data.schema import Track
from talkplay.data.splits import chronological_split
from talkplay.data.world import text as wt
from talkplay.data.world.audio import render_audio
from talkplay.data.world.genres import GENRE_THEMES, GENRES, MOOD_NAMES, MOODS, THEMES
from talkplay.data.world.playlists import draw_playlists
from talkplay.io import atomic_dir, write_json

KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
DAY = 86400


@dataclass
class WorldConfig:
    """Size and shape of the embedded music world."""

    seed: int = 0
    """Everything is a deterministic function of the config, this seed included."""
    n_tracks: int = 3000
    """Catalog size, new releases included."""
    n_artists: int = 300
    n_playlists: int = 3000
    n_scenes: int = 30
    """Hidden listener communities; each groups artists across genres."""
    genres_per_scene: int = 3
    new_release_fraction: float = 0.05
    """Share of tracks released inside the valid and test windows (cold items)."""
    popularity_zipf: float = 0.7
    """Zipf exponent of artist and within-artist popularity (long tail)."""
    p_untagged: float = 0.1
    """Share of tracks with no tags at all."""
    p_tag_noise: float = 0.05
    """Probability that a track carries one wrong mood tag."""
    playlist_len_mean: float = 15.0
    playlist_len_min: int = 5
    playlist_len_max: int = 60
    p_off_scene: float = 0.1
    """Share of a playlist drawn from the whole catalog instead of the listener's scene."""
    max_per_artist: int = 2
    """At most this many tracks by one artist in a playlist (listeners mix artists)."""
    playlist_popularity_power: float = 1.0
    """Track popularity ** this weights playlist draws (1 = proportional, 0 = uniform)."""
    p_mood_playlist: float = 0.35
    p_genre_playlist: float = 0.3
    theme_boost: float = 4.0
    """Weight multiplier of tracks that match a playlist's mood or genre theme."""
    new_release_boost: float = 4.0
    start_date: str = "2015-01-01"
    end_date: str = "2018-12-31"
    """Playlist modification dates span these days."""
    test_fraction: float = 0.1
    """About this share of playlists (the latest) form the test split."""
    valid_fraction: float = 0.05
    audio: bool = True
    """Render audio clips (``--no-audio`` for metadata only)."""
    audio_seconds: float = 4.0
    sample_rate: int = 16000
    audio_format: str = "ogg"
    """"ogg" (Vorbis, small) or "flac" (lossless, about 4x larger, faster to write)."""


@dataclass
class World:
    """The dataset plus the hidden variables it was drawn from (for analysis and tests)."""

    dataset: Dataset
    config: WorldConfig
    latent: dict[str, np.ndarray] = field(default_factory=dict)
    """Per track (row order of ``dataset.tracks``): scene, genre, mood, theme, minor, new, artist."""
    audio_specs: list[dict] = field(default_factory=list)
    """Per track, what ``world.audio.render_track`` needs."""
    split_rule: str = ""


def _epoch(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).date().isoformat()


def _zipf(rng: np.random.Generator, n: int, s: float) -> np.ndarray:
    """Popularity weights 1/rank^s, ranks shuffled: [n]."""
    return 1.0 / (rng.permutation(n) + 1.0) ** s


def _norm(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """One key of ``weights``, drawn with probability proportional to its value."""
    keys = list(weights)
    return keys[rng.choice(len(keys), p=_norm(np.array([weights[k] for k in keys], dtype=float)))]


def _check(cfg: WorldConfig) -> None:
    """Raise ValueError naming the first WorldConfig field that cannot work."""
    problems = [
        (cfg.n_artists < 1 or cfg.n_tracks - round(cfg.new_release_fraction * cfg.n_tracks) < cfg.n_artists,
         "n_tracks minus new releases must be >= n_artists >= 1 (every artist has a catalog track)"),
        (cfg.n_playlists < 10, "n_playlists must be >= 10"),
        (cfg.n_scenes < 1 or cfg.genres_per_scene < 1, "n_scenes and genres_per_scene must be >= 1"),
        (not 0 <= cfg.new_release_fraction < 1, "new_release_fraction must be in [0, 1)"),
        (not 0 < cfg.test_fraction < 1 or not 0 <= cfg.valid_fraction < 1 - cfg.test_fraction,
         "test_fraction and valid_fraction must be fractions that leave a train split"),
        (not 0 <= cfg.p_off_scene <= 1, "p_off_scene must be in [0, 1]"),
        (cfg.p_mood_playlist + cfg.p_genre_playlist > 1, "p_mood_playlist + p_genre_playlist must be <= 1"),
        (cfg.playlist_len_min < 1 or cfg.playlist_len_max < cfg.playlist_len_min,
         "need 1 <= playlist_len_min <= playlist_len_max"),
        (_epoch(cfg.end_date) <= _epoch(cfg.start_date), "end_date must be after start_date"),
        (cfg.audio_format not in ("ogg", "flac"), "audio_format must be 'ogg' or 'flac'"),
        (cfg.audio and (cfg.audio_seconds <= 0 or cfg.sample_rate < 8000),
         "audio_seconds must be > 0 and sample_rate >= 8000"),
    ]
    for bad, message in problems:
        if bad:
            raise ValueError(f"WorldConfig: {message}")


def _artists(rng: np.random.Generator, a_genre: np.ndarray, last_year: int) -> list[dict]:
    """Step 2: per artist a unique name, sub-genre, career years, mood profile, tempo, voice, band."""
    artists = []
    for gi in a_genre:
        g = GENRES[gi]
        debut = int(rng.integers(g.years[0], min(g.years[1], last_year) + 1))
        moods = list(g.moods)
        artists.append({
            "name": wt.artist_name(rng, g.name),
            "sub": g.subgenres[int(rng.integers(len(g.subgenres)))],
            "years": (debut, min(last_year, debut + int(rng.integers(1, 20)))),
            "moods": dict(zip(moods, rng.dirichlet(np.array([g.moods[m] for m in moods]) * 1.5), strict=True)),
            "tempo": rng.uniform(*g.tempo),
            "vocal": _choice(rng, g.vocals),
            "instruments": [*g.core, *[i for i in g.optional if rng.random() < 0.4]],
        })
    # Artist names must be unique so that "by {Artist}" identifies one artist.
    seen: set[str] = set()
    for a in artists:
        while a["name"] in seen:
            a["name"] = f"{a['name']} {wt.invented_word(rng, 1)}"
        seen.add(a["name"])
    return artists


def _track(rng: np.random.Generator, cfg: WorldConfig, i: int, ad: dict, g, album: tuple[str, int],
           release: str | None, pop: float, pop_q: float) -> tuple[Track, dict, dict]:
    """Step 3-4 for one track: mood -> mode, tempo and lyric theme; tags; audio spec."""
    mood = _choice(rng, ad["moods"])
    energy, p_minor, theme_w = MOODS[mood]
    minor = bool(rng.random() < p_minor)
    lo, hi = g.tempo
    tempo = float(np.clip(ad["tempo"] + energy * 0.2 * (hi - lo) + rng.normal(0, 0.08 * (hi - lo)), lo, hi))
    root = int(rng.integers(12))
    bias = GENRE_THEMES.get(g.name, {})
    theme = _choice(rng, {t: theme_w.get(t, 0.1) * bias.get(t, 1.0) for t in THEMES})
    vocal = ad["vocal"] if rng.random() < 0.85 else _choice(rng, g.vocals)
    instruments = list(ad["instruments"])
    release = release or str(album[1])
    year = int(release[:4])
    tid = f"t{i:05d}"
    track = Track(
        id=tid, title=wt.title(rng, g.name, None if vocal == "instrumental" else theme),
        artists=[ad["name"]], album=album[0], release_date=release, popularity=round(pop, 3),
        tags=wt.tags(rng, [g.name, ad["sub"], mood, *instruments, wt.decade_tag(year), vocal],
                     pop_q, cfg.p_untagged, cfg.p_tag_noise, MOOD_NAMES),
        lyrics=None if vocal == "instrumental" else wt.lyrics(rng, theme, int(rng.integers(3, 7))),
        audio=f"audio/{tid}.{cfg.audio_format}" if cfg.audio else None,
        # Metadata duration of the whole song; the audio file is a short preview clip.
        duration_ms=int(rng.uniform(150, 600 if g.name == "classical" else 330) * 1000),
        tempo=round(tempo, 1), key=f"{KEYS[root]} {'minor' if minor else 'major'}")
    spec = {"genre": g.name, "tempo": tempo, "root": root, "minor": minor,
            "instruments": instruments, "vocal": vocal, "seed": [cfg.seed, i]}
    hidden = {"mood": MOOD_NAMES.index(mood), "theme": THEMES.index(theme), "minor": minor}
    return track, spec, hidden


def build_world(cfg: WorldConfig) -> World:
    """Draw the whole world (records, hidden variables, audio specs); renders no audio.

    Args:
        cfg: the world's size and shape.
    Returns:
        The world, already split (playlists carry their split, cold tracks are flagged).
    """
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    n_g, n_s, n_a, n_t = len(GENRES), cfg.n_scenes, cfg.n_artists, cfg.n_tracks
    gw = _norm(np.array([g.weight for g in GENRES]))

    # 1. Scenes: a few genres each, with mixture weights.
    k = min(cfg.genres_per_scene, n_g)
    scene_genres = [rng.choice(n_g, size=k, replace=False, p=gw) for _ in range(n_s)]
    scene_mix = [rng.dirichlet(np.full(k, 2.0)) for _ in range(n_s)]
    scene_share = rng.dirichlet(np.full(n_s, 4.0))

    # 2. Artists.
    # Scene sizes follow scene_share, but every scene gets an artist while there are enough.
    sizes = (np.arange(n_s) < n_a).astype(int)
    sizes += np.floor(scene_share * (n_a - sizes.sum())).astype(int)
    sizes[np.argsort(-scene_share)[:n_a - sizes.sum()]] += 1
    a_scene = rng.permutation(np.repeat(np.arange(n_s), sizes))
    a_genre = np.array([rng.choice(scene_genres[s], p=scene_mix[s]) for s in a_scene])
    a_pop = _zipf(rng, n_a, cfg.popularity_zipf)
    artists = _artists(rng, a_genre, int(cfg.start_date[:4]) - 1)

    # 3. Tracks: one per artist, the rest by popularity; new releases favour popular artists.
    n_new = int(round(cfg.new_release_fraction * n_t))
    n_old = n_t - n_new
    t_artist = np.concatenate([np.arange(n_a), rng.choice(n_a, size=n_old - n_a, p=_norm(a_pop ** 0.5)),
                               rng.choice(n_a, size=n_new, p=_norm(a_pop))])
    t_new = np.arange(n_t) >= n_old
    t_pop = a_pop[t_artist] * rng.lognormal(0, 0.5, n_t) / (rng.integers(1, 8, n_t) ** cfg.popularity_zipf)
    t_pop = 100 * t_pop / t_pop.max()
    pop_q = np.argsort(np.argsort(t_pop)) / max(n_t - 1, 1)

    # 6a. Playlist dates first: the held-out windows decide when new releases come out. They
    # come out from the day after the valid window opens to the middle of the test window, so
    # the valid split asks for new (cold) tracks as the test split does: a hybrid fit on a valid
    # split without them learns to ignore the text retrievers that find them.
    t0, t1 = _epoch(cfg.start_date), _epoch(cfg.end_date) + DAY - 1
    modified = (t0 + (t1 - t0) * rng.random(cfg.n_playlists) ** 0.7).astype(np.int64)
    created = np.maximum(t0, modified - rng.exponential(200 * DAY, cfg.n_playlists)).astype(np.int64)
    days = modified // DAY
    latest_first = np.sort(days)[::-1]
    n_test = max(1, int(round(cfg.test_fraction * cfg.n_playlists)))
    cutoff = latest_first[n_test - 1]
    n_test_exact = int((days >= cutoff).sum())
    n_valid = int(round(cfg.valid_fraction * cfg.n_playlists))
    first = latest_first[min(n_test_exact + n_valid, cfg.n_playlists) - 1] + 1 if n_valid else cutoff
    last = cutoff + (days.max() - cutoff) // 2
    t_release_day = np.where(t_new, rng.integers(first, last + 1, n_t), 0)

    tracks, specs = [], []
    lat = {k: np.zeros(n_t, dtype=np.int64) for k in ("scene", "genre", "mood", "theme", "minor", "artist")}
    albums: dict[tuple[int, int], tuple[str, int]] = {}
    per_artist = np.bincount(t_artist[:n_old], minlength=n_a)
    for i in range(n_t):
        a = int(t_artist[i])
        release = _iso(int(t_release_day[i]) * DAY) if t_new[i] else None
        slot = -1 if t_new[i] else int(rng.integers(1 + per_artist[a] // 5))
        if (a, slot) not in albums:  # a few albums per artist; new releases share a new one
            year = int(rng.integers(artists[a]["years"][0], artists[a]["years"][1] + 1))
            albums[(a, slot)] = (wt.album_name(rng, artists[a]["name"], GENRES[a_genre[a]].name), year)
        track, spec, hidden = _track(rng, cfg, i, artists[a], GENRES[a_genre[a]], albums[(a, slot)],
                                     release, float(t_pop[i]), float(pop_q[i]))
        tracks.append(track)
        specs.append(spec)
        for k_, v in {"scene": a_scene[a], "genre": a_genre[a], "artist": a, **hidden}.items():
            lat[k_][i] = v
    lat["new"] = t_new
    playlists = draw_playlists(rng, cfg, lat, t_pop, t_release_day, tracks, modified, created)
    ds = Dataset(tracks=tracks, playlists=playlists)
    rule = chronological_split(ds, test_size=n_test_exact, valid_size=n_valid, seed=cfg.seed)
    rule += f"; test = every playlist modified on or after {_iso(int(cutoff) * DAY)}"
    return World(dataset=ds, config=cfg, latent=lat, audio_specs=specs, split_rule=rule)


def synth_world(out: str | Path, cfg: WorldConfig, *, workers: int = 1,
                on_progress: Callable[[int], None] | None = None) -> World:
    """Build the world and write it as a dataset directory (audio clips included).

    ``out/audio/`` is rendered into a temporary folder and swapped in whole; the tables and
    manifest are written last (``write_dataset``), so a new directory holds a dataset only
    once all its audio is complete. ``out/world/latent.json`` keeps the hidden variables
    (scene, genre, mood, theme per track) for analysis; no recommender may read it.

    Args:
        out: dataset directory.
        cfg: the world config (saved in the manifest under "world").
        workers: audio rendering processes.
        on_progress: called with the number of clips just rendered.
    Returns:
        The world that was written.
    """
    out = Path(out)
    world = build_world(cfg)
    ds = world.dataset
    if cfg.audio:
        with atomic_dir(out / "audio") as tmp:
            paths = [str(tmp / Path(t.audio).name) for t in ds.tracks]
            render_audio(world.audio_specs, paths, sr=cfg.sample_rate, seconds=cfg.audio_seconds,
                         workers=workers, on_progress=on_progress)
    write_json(out / "world" / "latent.json", {
        "track_ids": [t.id for t in ds.tracks],
        "names": {"genre": [g.name for g in GENRES], "mood": list(MOOD_NAMES), "theme": list(THEMES)},
        **{k: v.astype(int).tolist() for k, v in world.latent.items()}})
    write_dataset(out, ds, source=f"world(seed={cfg.seed})", split_rule=world.split_rule,
                  extra={"world": asdict(cfg)})
    return world
