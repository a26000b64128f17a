from __future__ import annotations

import random

import pytest
from typer.testing import CliRunner

from talkplay.cli import app
from talkplay.data.conversations.common import (
    ConversationShape,
    NegativeSampler,
    conversation_stats,
)
from talkplay.data.conversations.simulator import SimulatorConfig, simulate
from talkplay.data.dataset import Dataset, read_dataset, write_dataset
from talkplay.data.schema import Playlist, Track

GENRES = [["rock", "energetic", "guitar"], ["jazz", "mellow", "saxophone"],
          ["electronic", "dance", "upbeat"], ["folk", "acoustic", "sad"],
          ["hip hop", "rap", "confident"], ["classical", "calm", "piano"]]
LYRICS = ["the river runs down to the river sea", "dancing all night, dancing in the light",
          "lonely road and a lonely heart", None]
KEYS = ["A minor", "C major", "E minor", "G major", None]


def toy_dataset(n_tracks: int = 60, n_playlists: int = 12, seed: int = 0) -> Dataset:
    """Tracks with tags, lyrics, tempo, key and years; playlists mixing two genres each."""
    rng = random.Random(seed)
    tracks = [Track(id=f"t{i}", title=f"Song Number {i}", artists=[f"Artist {i % 9}"],
                    album=f"Album {i % 7}", release_date=str(1965 + (i * 7) % 55),
                    tags=list(GENRES[i % 6]), lyrics=LYRICS[i % 4], tempo=70 + (i * 13) % 90,
                    key=KEYS[i % 5]) for i in range(n_tracks)]
    playlists = []
    for p in range(n_playlists):
        g = p % 6
        ids = [t.id for i, t in enumerate(tracks) if i % 6 in (g, (g + 1) % 6)]
        rng.shuffle(ids)
        playlists.append(Playlist(id=f"p{p}", track_ids=ids[:rng.randint(3, 12)],
                                  split=("train", "valid", "test")[p % 3]))
    return Dataset(tracks=tracks, playlists=playlists)


def check_structure(conv, playlist: Playlist, catalog: set[str]) -> None:
    """One track per assistant turn, valid rejections, playlist order, known ids."""
    roles = [m.role for m in conv.messages]
    assert len(roles) % 3 == 0 and roles == ["user", "music", "assistant"] * (len(roles) // 3)
    assert len(conv.meta["feedback"]) == roles.count("user")
    rejected = set(conv.meta["rejected"])
    positives = []
    for i, m in enumerate(conv.messages):
        if m.role != "music":
            continue
        assert m.content in catalog
        if i in rejected:
            assert m.content not in playlist.track_ids
            # The user turns it down, and the next track comes from the playlist.
            assert conv.meta["feedback"][(i + 2) // 3] == "reject"
            assert conv.messages[i + 3].content in playlist.track_ids
        else:
            assert m.content in playlist.track_ids
            positives.append(m.content)
    start, end = conv.meta["window"]
    assert positives == playlist.track_ids[start:end][:len(positives)]


def test_structure_and_rejections():
    ds = toy_dataset()
    cfg = SimulatorConfig(ConversationShape(reject_rate=0.5, per_playlist=3, seed=3))
    convs = simulate(ds.tracks, ds.playlists, cfg)
    assert len(convs) == 3 * len(ds.playlists)
    by_id = {p.id: p for p in ds.playlists}
    catalog = {t.id for t in ds.tracks}
    for c in convs:
        check_structure(c, by_id[c.playlist_id], catalog)
        assert len(c.music_ids()) <= cfg.shape.max_turns
        assert c.split == by_id[c.playlist_id].split
    stats = conversation_stats(convs)
    assert stats["rejects"] > 0 and stats["accepts"] > 0 and stats["direction_changes"] > 0


def test_negatives_are_dissimilar_and_skip_cold():
    ds = toy_dataset()
    ds.tracks[10].cold = True
    sampler = NegativeSampler(ds.tracks)
    pl = ds.playlists[0]  # rock + jazz
    for seed in range(20):
        negs = sampler.sample(pl.track_ids, "train", random.Random(seed), 5)
        assert len(negs) == 5 and not {t.id for t in negs} & set(pl.track_ids)
        assert "t10" not in {t.id for t in negs}
        playlist_tags = {g for t in pl.track_ids for g in ds.track_index()[t].tags}
        assert all(not set(t.tags) & playlist_tags for t in negs)


def test_rates_and_limits():
    ds = toy_dataset()
    none = simulate(ds.tracks, ds.playlists, SimulatorConfig(ConversationShape(reject_rate=0.0)))
    assert conversation_stats(none)["rejects"] == 0
    many = simulate(ds.tracks, ds.playlists, SimulatorConfig(ConversationShape(reject_rate=1.0, max_turns=4)))
    assert all(len(c.music_ids()) <= 4 for c in many)
    assert conversation_stats(many)["rejects"] >= len(many)
    ds.playlists.append(Playlist(id="short", track_ids=["t0"]))
    assert "short" not in {c.playlist_id for c in simulate(ds.tracks, ds.playlists, SimulatorConfig())}


def test_deterministic_per_seed():
    ds = toy_dataset()
    a = simulate(ds.tracks, ds.playlists, SimulatorConfig(ConversationShape(seed=1)))
    b = simulate(ds.tracks, ds.playlists, SimulatorConfig(ConversationShape(seed=1)))
    c = simulate(ds.tracks, ds.playlists, SimulatorConfig(ConversationShape(seed=2)))
    assert a == b
    assert a != c
    # A conversation depends on its own playlist only, not on which others are simulated.
    alone = simulate(ds.tracks, ds.playlists[5:6], SimulatorConfig(ConversationShape(seed=1)))
    assert alone[0] == a[5]


def test_phrasing_variety_and_few_titles():
    ds = toy_dataset(n_tracks=300, n_playlists=200)
    convs = simulate(ds.tracks, ds.playlists, SimulatorConfig())
    users = [(c, i) for c in convs for i, m in enumerate(c.messages) if m.role == "user"]
    texts = [c.messages[i].content for c, i in users]
    assert len(set(texts)) / len(texts) > 0.8
    titles = {t.id: t.title for t in ds.tracks}
    # Later user turns seldom name the title of the track that follows them.
    later = [(c, i) for c, i in users if i > 0]
    leaks = sum(titles[c.messages[i + 1].content] in c.messages[i].content for c, i in later)
    assert leaks / len(later) < 0.08


def test_cli_adds_conversations_and_keeps_split(tmp_path):
    ds = toy_dataset()
    write_dataset(tmp_path / "d", ds, source="toy", split_rule="by hand", extra={"world": {"a": 1}})
    runner = CliRunner()
    args = ["data", "conversations", "--data", str(tmp_path / "d"), "--per-playlist", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "direction_changes" in res.output
    res = runner.invoke(app, args)  # the same seed again replaces, never duplicates
    assert res.exit_code == 0 and "replaced 24" in res.output
    back = read_dataset(tmp_path / "d")
    assert len(back.conversations) == 24
    split = {p.id: p.split for p in back.playlists}
    assert all(c.split == split[c.playlist_id] for c in back.conversations)
    gens = back.manifest["conversation_generators"]
    assert gens[-1]["generator"] == "simulator" and gens[-1]["config"]["per_playlist"] == 2
    assert back.manifest["world"] == {"a": 1} and back.manifest["split_rule"] == "by hand"


def test_cli_playlist_and_turn_limits_and_their_old_names(tmp_path):
    write_dataset(tmp_path / "d", toy_dataset(), source="toy", split_rule="x")
    base = ["data", "conversations", "--data", str(tmp_path / "d")]

    def music_turns() -> list[int]:
        convs = read_dataset(tmp_path / "d").conversations
        return [sum(m.role == "music" for m in c.messages) for c in convs]

    res = CliRunner().invoke(app, [*base, "--max-playlists", "3", "--max-music-turns", "2"])
    assert res.exit_code == 0 and "is now" not in res.output, res.output
    assert len(music_turns()) == 3 and max(music_turns()) == 2
    # --limit and --max-turns were renamed: they still work for one release, with a note.
    res = CliRunner().invoke(app, [*base, "--limit", "5", "--max-turns", "1"])
    assert res.exit_code == 0, res.output
    out = res.output.replace("\n", "")
    assert "--limit is now --max-playlists" in out and "--max-turns is now --max-music-turns" in out
    assert len(music_turns()) == 5 and max(music_turns()) == 1


@pytest.mark.parametrize("bad", [["--generator", "nope"], ["--splits", "training"]])
def test_cli_errors_are_clear(tmp_path, bad):
    write_dataset(tmp_path / "d", toy_dataset(), source="toy", split_rule="x")
    res = CliRunner().invoke(app, ["data", "conversations", "--data", str(tmp_path / "d"), *bad])
    assert res.exit_code != 0 and "error:" in res.output and "Traceback" not in res.output


def test_on_the_embedded_world():
    from talkplay.data import world as world_mod

    world = world_mod.build_world(world_mod.WorldConfig(
        n_tracks=400, n_artists=50, n_playlists=150, audio=False, seed=1))
    ds = world.dataset
    convs = simulate(ds.tracks, ds.playlists, SimulatorConfig(ConversationShape(reject_rate=0.3)))
    by_id = {p.id: p for p in ds.playlists}
    catalog = {t.id for t in ds.tracks}
    cold = {t.id for t in ds.tracks if t.cold}
    row = {t.id: i for i, t in enumerate(ds.tracks)}
    genre = world.latent["genre"]
    differs = total = 0
    for c in convs:
        check_structure(c, by_id[c.playlist_id], catalog)
        for i in c.meta["rejected"]:
            neg, wanted = c.messages[i].content, c.messages[i + 3].content
            assert c.split == "test" or neg not in cold  # no cold leak into training
            differs += genre[row[neg]] != genre[row[wanted]]
            total += 1
    assert total > 20 and differs / total > 0.8  # negatives are unlike what the user wanted
