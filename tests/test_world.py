"""The embedded music world: determinism, signal in every modality, split, files, CLI."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import stft
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.data.dataset import read_dataset
from talkplay.data.world import WorldConfig, build_world, synth_world
from talkplay.data.world.audio import render_track
from talkplay.data.world.genres import GENRES, MOOD_NAMES, THEMES
from talkplay.data.world.text import THEME_WORDS

SMALL = WorldConfig(n_tracks=200, n_artists=40, n_playlists=300, n_scenes=5, playlist_len_mean=10,
                    audio=False)


@pytest.fixture(scope="module")
def world():
    return build_world(SMALL)


def _index(w):
    return {t.id: i for i, t in enumerate(w.dataset.tracks)}


def test_same_seed_same_world_other_seed_differs(world):
    again = build_world(SMALL)
    assert [asdict(t) for t in again.dataset.tracks] == [asdict(t) for t in world.dataset.tracks]
    assert [asdict(p) for p in again.dataset.playlists] == [asdict(p) for p in world.dataset.playlists]
    assert np.array_equal(render_track(world.audio_specs[0], seconds=1.0),
                          render_track(again.audio_specs[0], seconds=1.0))
    other = build_world(WorldConfig(**{**asdict(SMALL), "seed": 1}))
    assert [t.title for t in other.dataset.tracks] != [t.title for t in world.dataset.tracks]
    assert [p.track_ids for p in other.dataset.playlists] != [p.track_ids for p in world.dataset.playlists]


def test_playlists_reveal_hidden_scenes_beyond_genre(world):
    idx, scene, genre = _index(world), world.latent["scene"], world.latent["genre"]
    pairs = [(idx[a], idx[b]) for p in world.dataset.playlists
             for a, b in zip(p.track_ids, p.track_ids[1:], strict=False)]  # neighbours
    a, b = np.array(pairs).T
    co_scene = np.mean(scene[a] == scene[b])
    share = np.bincount(scene) / len(scene)
    assert co_scene > 2 * (share @ share)  # far above chance
    # Beyond genre (what tags reveal): neighbours of the same genre share a scene more often than
    # random same-genre pairs, and neighbours of different genres more often than random ones.
    same_genre_pair = genre[a] == genre[b]
    same_genre = genre[:, None] == genre[None, :]
    same_scene = scene[:, None] == scene[None, :]
    np.fill_diagonal(same_genre, False)
    assert np.mean(scene[a] == scene[b], where=same_genre_pair) > same_scene[same_genre].mean() + 0.15
    assert np.mean(scene[a] == scene[b], where=~same_genre_pair) > 2 * same_scene[genre[:, None] != genre].mean()
    # No text field names a scene: playlist names come from moods, genres and generic words.
    words = {w for p in world.dataset.playlists for w in (p.name or "").split()}
    assert not words & {f"scene{s}" for s in range(SMALL.n_scenes)}


def test_tags_follow_genre_and_popularity(world):
    tracks, genre = world.dataset.tracks, world.latent["genre"]
    names = {g.name: i for i, g in enumerate(GENRES)}
    tagged = [(i, t) for i, t in enumerate(tracks) if t.tags]
    assert 0 < len(tracks) - len(tagged) < 0.3 * len(tracks)  # some tracks have no tags
    with_genre = [(i, [names[x] for x in t.tags if x in names]) for i, t in tagged]
    assert all(g == [genre[i]] for i, g in with_genre if g)
    pop = np.array([t.popularity for t in tracks])
    n_tags = np.array([len(t.tags) for t in tracks])
    top, tail = pop >= np.quantile(pop, 0.75), pop <= np.quantile(pop, 0.25)
    assert n_tags[top].mean() > n_tags[tail].mean() + 1


def test_lyrics_carry_theme_and_theme_follows_mood(world):
    theme, mood = world.latent["theme"], world.latent["mood"]
    hits, n = 0, 0
    for i, t in enumerate(world.dataset.tracks):
        if "instrumental" in t.tags:
            assert t.lyrics is None
        if t.lyrics is None:
            continue
        text = t.lyrics.lower()
        score = [sum(text.count(w) for part in THEME_WORDS[th] for w in part) for th in THEMES]
        hits += int(np.argmax(score)) == theme[i]
        n += 1
    assert n > 50 and hits / n > 0.7
    # Mood -> theme: knowing the mood predicts the theme far better than the overall majority.
    joint = np.zeros((len(MOOD_NAMES), len(THEMES)))
    np.add.at(joint, (mood, theme), 1)
    assert joint.max(1).sum() / joint.sum() > joint.sum(0).max() / joint.sum() + 0.15


def _features(x: np.ndarray, sr: int = 16000, hop: int = 128) -> tuple[float, float]:
    """Spectral centroid (Hz) and a tempo estimate (BPM) from the spectral-flux autocorrelation."""
    f, _, z = stft(x, sr, nperseg=512, noverlap=512 - hop)
    mag = np.abs(z)
    centroid = float((f @ mag).sum() / mag.sum())
    flux = np.maximum(np.diff(np.log(mag + 1e-4), axis=1), 0).sum(0)
    flux -= flux.mean()
    ac = np.correlate(flux, flux, "full")[len(flux) - 1:]
    lags = np.arange(len(ac)) * hop / sr
    ok = (lags > 60 / 200) & (lags < 60 / 50)
    return centroid, float(60 / lags[ok][np.argmax(ac[ok])])


def _spec(genre: str, i: int) -> dict:
    g = next(g for g in GENRES if g.name == genre)
    tempo = float(np.random.default_rng(i).uniform(*g.tempo))
    return {"genre": genre, "tempo": tempo, "root": i % 12, "minor": i % 2 == 0,
            "instruments": list(g.core), "vocal": list(g.vocals)[0], "seed": [7, i]}


def test_audio_sounds_like_genre_and_tempo():
    cent = {g: [_features(render_track(_spec(g, i)))[0] for i in range(3)]
            for g in ("ambient", "classical", "electronic", "jazz")}
    calm = np.mean(cent["ambient"] + cent["classical"])
    busy = np.mean(cent["electronic"] + cent["jazz"])
    assert calm < 0.75 * busy
    # Drum genres: the onset periodicity matches the tempo up to a metrical level (x1/2, 2/3, 1, 3/2, 2).
    good, n = 0, 0
    for genre in ("hip-hop", "reggae", "jazz", "rock", "electronic"):
        for i in range(3):
            spec = _spec(genre, i)
            ratio = _features(render_track(spec))[1] / spec["tempo"]
            good += any(abs(ratio - r) < 0.04 * r for r in (0.5, 2 / 3, 1, 1.5, 2))
            n += 1
    assert good / n >= 0.8
    x = render_track(_spec("rock", 0), seconds=2.0)
    assert x.dtype == np.float32 and x.shape == (32000,) and np.abs(x).max() <= 1


def test_chronological_split_and_cold_new_releases(world):
    ds, new = world.dataset, world.latent["new"]
    by_split = {s: [p for p in ds.playlists if p.split == s] for s in ("train", "valid", "test")}
    assert all(by_split.values())
    assert min(p.modified_at for p in by_split["test"]) // 86400 > \
        max(p.modified_at for p in by_split["train"] + by_split["valid"]) // 86400
    in_test = {t for p in by_split["test"] for t in p.track_ids}
    warm = {t for p in by_split["train"] for t in p.track_ids}
    cold = {t.id for t in ds.tracks if t.cold}
    assert cold and cold == {t.id for t in ds.tracks} - warm  # warm = in a training playlist
    in_valid = {t for p in by_split["valid"] for t in p.track_ids}
    used_new = {t.id for i, t in enumerate(ds.tracks) if new[i]} & (in_test | in_valid | warm)
    assert used_new and used_new <= cold  # new releases appear only in the latest playlists
    # both held-out splits ask for new releases, so choices made on valid see cold targets
    assert used_new & in_valid and used_new & in_test
    assert "chronological" in world.split_rule


def test_synth_writes_a_readable_dataset_with_audio(tmp_path):
    cfg = WorldConfig(n_tracks=24, n_artists=6, n_playlists=20, n_scenes=2, audio_seconds=1.0,
                      audio_format="flac")
    synth_world(tmp_path / "w", cfg)
    ds = read_dataset(tmp_path / "w")
    assert len(ds.tracks) == 24 and ds.manifest["world"]["n_tracks"] == 24
    assert ds.manifest["world"]["seed"] == 0 and "chronological" in ds.manifest["split_rule"]
    assert ds.conversations == []
    t = ds.tracks[3]
    assert t.audio == "audio/t00003.flac" and t.tempo and t.key.split()[1] in ("major", "minor")
    info = sf.info(str(tmp_path / "w" / t.audio))
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000)
    assert (tmp_path / "w" / "world" / "latent.json").exists()


def test_cli_synth_and_refuses_to_clobber(tmp_path):
    out = tmp_path / "w"
    args = ["data", "synth", "--out", str(out), "--tracks", "30", "--artists", "6", "--playlists",
            "20", "--scenes", "2", "--seconds", "0.5", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tracks" in result.output and len(list((out / "audio").glob("*.ogg"))) == 30
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = CliRunner().invoke(app, [*args[:4], "--tracks", "3", "--artists", "6", "--overwrite"])
    assert bad.exit_code == 2 and "n_tracks" in bad.output and "Traceback" not in bad.output
