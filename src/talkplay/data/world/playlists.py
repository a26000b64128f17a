"""Playlists of the embedded music world: listeners of hidden scenes, with mood or genre themes.

Step 6 of the generative story in ``talkplay.data.world.build``: a playlist's tracks come
mostly from its listener's scene (which no text reveals), partly from the whole catalog,
weighted by popularity and boosted by the playlist's theme. Only co-occurrence reveals the scenes.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from talkplay.data.schema import Playlist, Track
from talkplay.data.world import text as wt
from talkplay.data.world.genres import GENRES, MOOD_NAMES

DAY = 86400


def _norm(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def draw_playlists(rng: np.random.Generator, cfg, lat: dict[str, np.ndarray], t_pop: np.ndarray,
                   t_release_day: np.ndarray, tracks: list[Track], modified: np.ndarray,
                   created: np.ndarray) -> list[Playlist]:
    """Draw ``cfg.n_playlists`` playlists.

    Args:
        rng: the world's generator.
        cfg: the ``WorldConfig``.
        lat: hidden per-track variables (``scene``, ``mood``, ``genre``), [n_tracks] each.
        t_pop: track popularity, [n_tracks].
        t_release_day: release day (days since epoch) of new releases, 0 for catalog tracks.
        tracks: the track records (row order of the arrays).
        modified: playlist modification times (Unix s), [n_playlists].
        created: playlist creation times (Unix s), [n_playlists].
    Returns:
        The playlists, split not yet assigned.
    """
    n_t = len(tracks)
    scene = lat["scene"]
    scene_mass = np.bincount(scene, weights=t_pop, minlength=cfg.n_scenes) + 1e-9
    days = modified // DAY
    artist = lat["artist"]
    # Flattened popularity: hits recur across playlists, and tail tracks still get picked.
    base = t_pop ** cfg.playlist_popularity_power + 0.05
    out = []
    for p in range(cfg.n_playlists):
        s = rng.choice(cfg.n_scenes, p=_norm(scene_mass))
        in_scene = scene == s
        available = t_release_day <= days[p]
        w = base * available * np.where(t_release_day > 0, cfg.new_release_boost, 1.0)
        r = rng.random()
        mood = genre = None
        seed_track = rng.choice(n_t, p=_norm(w * in_scene + 1e-12))
        if r < cfg.p_mood_playlist:
            mood = lat["mood"][seed_track]
            w = w * np.where(lat["mood"] == mood, cfg.theme_boost, 1.0)
        elif r < cfg.p_mood_playlist + cfg.p_genre_playlist:
            genre = lat["genre"][seed_track]
            w = w * np.where(lat["genre"] == genre, cfg.theme_boost, 1.0)
        ws, wo = w * in_scene, w * ~in_scene
        # Mixture: (1 - p_off) of the mass on the scene, p_off on the rest of the catalog.
        mix = (1 - cfg.p_off_scene) * ws / max(ws.sum(), 1e-12) + cfg.p_off_scene * wo / max(wo.sum(), 1e-12)
        length = int(np.clip(round(rng.lognormal(np.log(cfg.playlist_len_mean), 0.5)),
                             cfg.playlist_len_min, cfg.playlist_len_max))
        # Gumbel top-k: a weighted sample without replacement in one vectorised step.
        with np.errstate(divide="ignore"):
            keys = np.log(mix) + rng.gumbel(size=n_t)
        # Listeners mix artists: at most max_per_artist tracks by one artist per playlist.
        chosen, per_artist = [], {}
        for i in np.argsort(-keys)[:int((mix > 0).sum())]:
            a = artist[i]
            if per_artist.get(a, 0) < cfg.max_per_artist:
                per_artist[a] = per_artist.get(a, 0) + 1
                chosen.append(i)
                if len(chosen) == length:
                    break
        chosen = np.array(chosen)
        if rng.random() < 0.5:
            tempo = np.array([tracks[i].tempo for i in chosen]) * rng.choice([-1, 1])
            chosen = chosen[np.argsort(tempo + rng.normal(0, 15, len(chosen)))]
        else:
            chosen = rng.permutation(chosen)
        year = dt.datetime.fromtimestamp(int(modified[p]), dt.UTC).year
        name = wt.playlist_name(rng, None if mood is None else MOOD_NAMES[mood],
                                None if genre is None else GENRES[genre].name, year)
        out.append(Playlist(id=f"p{p:05d}", track_ids=[tracks[i].id for i in chosen], name=name,
                            created_at=int(created[p]), modified_at=int(modified[p])))
    return out
