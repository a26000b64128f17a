"""Each baseline on a toy catalog where the right answer is obvious."""

from __future__ import annotations

import json

import numpy as np
import pytest

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Conversation, Message, Playlist, Track
from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
from talkplay.evaluate.baselines.common import query_parts, top_k, track_text

TRACKS = [
    Track("nirvana1", "Smells Like Teen Spirit", ["Nirvana"], "Nevermind", "1991",
          tags=["grunge", "rock"]),
    Track("nirvana2", "Come as You Are", ["Nirvana"], "Nevermind", "1991", tags=["grunge"]),
    Track("miles", "Blue in Green", ["Miles Davis"], "Kind of Blue", "1959",
          tags=["jazz", "trumpet"]),
    Track("debussy", "Clair de Lune", ["Claude Debussy"], "Suite bergamasque", "1905",
          tags=["classical", "piano"]),
    Track("daftpunk", "One More Time", ["Daft Punk"], "Discovery", "2000",
          tags=["electronic", "dance"]),
    Track("adele", "Someone Like You", ["Adele"], "21", "2011", tags=["pop", "ballad"]),
]


def _ds(tmp_path=None, **kw) -> Dataset:
    return Dataset(tracks=[Track(**vars(t)) for t in TRACKS], root=tmp_path, **kw)


def _user(text):
    return [Message("user", text)]


def test_track_text_and_query_weights():
    assert track_text(TRACKS[0]) == ("Smells Like Teen Spirit by Nirvana from Nevermind grunge "
                                     "rock 1991 90s")
    full = Track("x", "Rain Song", ["Band"], tags=["folk"], release_date="2013", tempo=72.4,
                 key="A minor", lyrics="The rain falls, rain on the river. River rain, home.")
    assert track_text(full) == ("Rain Song by Band folk 2013 2010s 72 bpm slow A minor "
                                "lyrics: rain river falls home")
    assert track_text(full, lyric_count=0) == "Rain Song by Band folk 2013 2010s 72 bpm slow A minor"
    bm25 = SYSTEMS["bm25"](Dataset(tracks=[full]))
    assert bm25.text_of["x"] == track_text(full, lyric_count=0)  # chosen on validation
    hist = [Message("user", "old"), Message("music", "miles"), Message("assistant", "x"),
            Message("user", "new")]
    parts = query_parts(hist, decay=0.5, track_weight=0.5)
    assert [(p.weight, p.text, p.track_id) for p in parts] == [
        (0.5, "old", None), (0.5, None, "miles"), (1.0, "new", None)]


def test_rejected_tracks_are_never_evidence():
    hist = [Message("user", "play something"), Message("music", "miles", "rejected"),
            Message("user", "not that one"), Message("music", "nirvana1"),
            Message("user", "more")]
    parts = query_parts(hist, decay=0.5, track_weight=0.5)
    assert [p.track_id for p in parts if p.track_id] == ["nirvana1"]
    bm25 = SYSTEMS["bm25"](_ds())
    only_rejected = [Message("user", "hmm"), Message("music", "miles", "rejected"),
                     Message("user", "something else")]
    assert np.array_equal(bm25.scores(only_rejected),
                          bm25.scores([Message("user", "hmm"), Message("user", "something else")]))


def test_cooc_follows_training_playlists_and_backs_off_to_text():
    playlists = [Playlist("p1", ["miles", "debussy"]), Playlist("p2", ["miles", "debussy", "adele"]),
                 Playlist("p3", ["nirvana1", "daftpunk"]),
                 Playlist("p4", ["miles", "nirvana2"], split="test")]  # test: never counted
    cooc = SYSTEMS["cooc"](_ds(playlists=playlists))
    hist = [Message("user", "something calm"), Message("music", "miles"), Message("user", "more")]
    rec = cooc.recommend(hist, k=3, exclude={"miles"})
    # miles and debussy share both training playlists (cosine 1), adele one (1/sqrt(2*1));
    # nirvana2 co-occurs only in a test playlist. Scores carry the track weight 0.5.
    assert [t.track_id for t in rec.tracks[:2]] == ["debussy", "adele"]
    assert [t.score for t in rec.tracks[:2]] == pytest.approx([0.5, 0.5 / np.sqrt(2)])
    assert rec.tracks[2].score == 0.0
    # A rejected track is no evidence: only text remains, and it names Nirvana.
    hist = [Message("user", "play something"), Message("music", "miles", "rejected"),
            Message("user", "no, grunge like Nirvana")]
    rec = cooc.recommend(hist, k=2, exclude={"miles"})
    assert {t.track_id for t in rec.tracks} == {"nirvana1", "nirvana2"}
    # First turn: nothing accepted yet, BM25 alone orders the catalog.
    rec = cooc.recommend([Message("user", "Clair de Lune")], k=1)
    assert rec.tracks[0].track_id == "debussy" and rec.info["cooc_nonzero"] == 0


def test_incidence_is_binary_and_ignores_unknown_ids():
    from talkplay.evaluate.baselines.cooc import incidence

    x = incidence(["a", "b", "c"], [["a", "b", "a"], ["zz"], [], ["c", "b"]])
    assert x.dtype == np.float64 and x.shape == (4, 3)
    np.testing.assert_array_equal(x.toarray(), [[1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 1, 1]])
    assert incidence(["a"], []).shape == (0, 1)


def test_top_k_excludes_and_breaks_ties_by_catalog_order():
    rec = top_k(np.array([1.0, 3.0, 3.0, 0.5]), ["a", "b", "c", "d"], 2, {"b"})
    assert [t.track_id for t in rec.tracks] == ["c", "a"]
    rec = top_k(np.zeros(4), ["a", "b", "c", "d"], 3, None)
    assert [t.track_id for t in rec.tracks] == ["a", "b", "c"]


def test_bm25_finds_the_named_artist_and_uses_liked_tracks():
    bm25 = SYSTEMS["bm25"](_ds())
    rec = bm25.recommend(_user("I want some grunge like Nirvana"), k=3)
    assert {t.track_id for t in rec.tracks[:2]} == {"nirvana1", "nirvana2"}
    rec = bm25.recommend(_user("play Clair de Lune please"), k=3, exclude={"debussy"})
    assert "debussy" not in [t.track_id for t in rec.tracks]
    # A vague request after a liked Nirvana song: the other Nirvana song comes first.
    hist = [Message("user", "start with a classic"), Message("music", "nirvana1"),
            Message("user", "more like that")]
    rec = bm25.recommend(hist, k=2, exclude={"nirvana1"})
    assert rec.tracks[0].track_id == "nirvana2"


def test_popularity_from_catalog_or_training_counts():
    ds = _ds()
    ds.tracks[3].popularity = 10.0
    ds.tracks[1].popularity = 5.0
    rec = SYSTEMS["popularity"](ds).recommend(_user("anything"), k=2)
    assert [t.track_id for t in rec.tracks] == ["debussy", "nirvana2"]
    ds = _ds(playlists=[Playlist("p1", ["adele", "miles"]), Playlist("p2", ["adele"]),
                        Playlist("t", ["daftpunk"] * 5, split="test")],
             conversations=[Conversation("c", [Message("music", "miles"), Message("music", "miles")])])
    pop = SYSTEMS["popularity"](ds)
    assert pop.source == "train-counts"
    # miles: 3 training occurrences, adele 2; the test playlist does not count.
    assert [t.track_id for t in pop.recommend(_user("x"), k=3).tracks] == ["miles", "adele", "nirvana1"]


@pytest.mark.slow
def test_dense_minilm_semantic_match_and_cache(tmp_path):
    ds = _ds(tmp_path)
    dense = SYSTEMS["dense"](ds)
    rec = dense.recommend(_user("a calm classical piano piece"), k=3)
    assert rec.tracks[0].track_id == "debussy"
    rec = dense.recommend(_user("cool jazz with a trumpet"), k=3)
    assert rec.tracks[0].track_id == "miles"
    dense.prepare([[Message("user", "songs for a rainy day")]])  # batched up front, then reused
    assert "songs for a rainy day" in dense.embed.memo
    cached = sorted((tmp_path / "cache").glob("dense-minilm-*.npy"))
    assert len(cached) == 1
    before = np.load(cached[0])
    again = SYSTEMS["dense"](ds)  # loads the cache: same vectors, no new file
    assert sorted((tmp_path / "cache").glob("*.npy")) == cached
    np.testing.assert_allclose(again.vectors, dense.vectors, atol=1e-6)
    assert before.shape == (len(TRACKS), 384)


def _write_audio_tags(root, rows: dict[str, dict[str, float]], names: list[str]) -> None:
    emb = root / "embeddings"
    emb.mkdir(parents=True)
    probs = np.array([[r.get(n, 0.01) for n in names] for r in rows.values()], np.float32)
    np.save(emb / "audio_tags.npy", probs)
    (emb / "audio_tags.ids.json").write_text(json.dumps(list(rows)))
    (emb / "audio_tags.names.json").write_text(json.dumps(names))


@pytest.mark.slow
def test_tagclap_routes_text_through_audio_tags(tmp_path):
    names = ["rock", "jazz", "classical", "electronic", "piano", "female vocalists"]
    # Audio tags only for four tracks; adele and nirvana2 have no audio.
    _write_audio_tags(tmp_path, {"nirvana1": {"rock": 0.9}, "miles": {"jazz": 0.9},
                                 "debussy": {"classical": 0.8, "piano": 0.7},
                                 "daftpunk": {"electronic": 0.9}}, names)
    clap = SYSTEMS["clap"](_ds(tmp_path), BaselineOptions())
    assert "4/6 tracks" in clap.description
    rec = clap.recommend(_user("some jazz please"), k=6)
    ids = [t.track_id for t in rec.tracks]
    assert ids[0] == "miles"
    assert set(ids[-2:]) == {"nirvana2", "adele"}  # no audio: lowest
    assert clap.recommend(_user("electronic dance music"), k=1).tracks[0].track_id == "daftpunk"
    # A liked track's audio tags pull the query towards its sound.
    hist = [Message("user", "play something"), Message("music", "debussy"),
            Message("user", "keep going")]
    assert clap.recommend(hist, k=1, exclude={"debussy"}).tracks[0].track_id != "nirvana2"


def test_clap_rejects_a_missing_model_by_name():
    from talkplay.data.errors import DataError

    with pytest.raises(DataError, match="cannot load CLAP model"):
        SYSTEMS["clap"](_ds(), BaselineOptions(clap_model="/nonexistent/clap-model"))


def _tiny_clap(path):
    """A randomly initialised, tiny transformers ClapModel saved like a hub checkpoint."""
    import torch
    from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

    from talkplay.evaluate.baselines.encoders import load_text_encoder

    tok = AutoTokenizer.from_pretrained(load_text_encoder("minilm").tokenizer.name_or_path)
    cfg = ClapConfig(
        text_config=dict(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=130),
        audio_config=dict(depths=[1, 1], num_attention_heads=[1, 2], patch_embeds_hidden_size=16,
                          hidden_size=32, window_size=4, enable_fusion=False),
        projection_dim=16)
    torch.manual_seed(0)
    ClapModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    ClapFeatureExtractor().save_pretrained(path)


@pytest.mark.slow
def test_hf_clap_code_path_on_real_audio(tmp_path, shared_data):
    """The real-CLAP path end to end with a random tiny ClapModel (no CLAP weights offline)."""
    _tiny_clap(tmp_path / "clap")
    ds = _ds(tmp_path / "data")
    ds.tracks[2].audio = str(shared_data / "audio" / "sorohan_solo_trumpet.ogg")
    ds.tracks[3].audio = str(shared_data / "audio" / "brahms_hungarian_dance_5.ogg")
    ds.tracks[4].audio = str(shared_data / "audio" / "hobbs_lets_go_fishin.ogg")
    clap = SYSTEMS["clap"](ds, BaselineOptions(clap_model=str(tmp_path / "clap"), batch_size=2))
    assert clap.has_audio.tolist() == [False, False, True, True, True, False]
    assert len(list((tmp_path / "data" / "cache").glob("clap-*.npy"))) == 1
    # A history of one liked track and no text: that track's own audio vector is the query.
    rec = clap.recommend([Message("music", "debussy")], k=6)
    ids = [t.track_id for t in rec.tracks]
    assert ids[0] == "debussy" and rec.tracks[0].score == pytest.approx(1.0, abs=1e-5)
    assert set(ids[3:]) == {"nirvana1", "nirvana2", "adele"}  # no audio: last
    rec = clap.recommend(_user("jazz trumpet"), k=2)
    assert len(rec.tracks) == 2 and all(t.track_id in {"miles", "debussy", "daftpunk"} for t in rec.tracks)


def test_memo_asks_deep_once_and_rrf_fuses_reciprocal_ranks():
    from talkplay.evaluate.fusion import Memo, RRFRecommender
    from talkplay.recommend.protocol import Recommendation, ScoredTrack

    class Counting:
        name, calls = "fixed", []

        def recommend(self, history, k=10, exclude=None):
            self.calls.append(k)
            ids = [t.id for t in TRACKS if t.id not in (exclude or set())][:k]
            return Recommendation([ScoredTrack(t, -i) for i, t in enumerate(ids)])

    inner = Counting()
    memo = Memo(inner, depth=50)
    hist = _user("anything")
    assert [t.track_id for t in memo.recommend(hist, k=2).tracks] == ["nirvana1", "nirvana2"]
    memo.recommend(hist, k=5)
    memo.recommend(hist, k=3, exclude={"miles"})  # another query: computed again
    assert inner.calls == [50, 50]
    bm25 = SYSTEMS["bm25"](_ds())
    query = _user("Miles Davis jazz")
    fused = RRFRecommender({"a": memo, "b": bm25}).recommend(query, k=6)
    fixed = [t.track_id for t in memo.recommend(query, k=6).tracks]
    lexical = [t.track_id for t in bm25.recommend(query, k=6).tracks]
    expect = {t: 1 / (61 + fixed.index(t)) + 1 / (61 + lexical.index(t)) for t in fixed}
    assert {t.track_id: t.score for t in fused.tracks} == pytest.approx(expect)
    assert [t.track_id for t in fused.tracks] == sorted(expect, key=lambda t: -expect[t])
