"""Item embeddings: item2vec, text and audio modalities, caching, resuming, pseudo tags.

Fast tests use two small real encoders registered here (hashed bag of words for text, band
energies of the decoded waveform for audio); the packaged MiniLM and musicnn run in the
slow tier.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from talkplay.config import EmbedConfig
from talkplay.data.dataset import Dataset, read_dataset, write_dataset
from talkplay.data.errors import DataError
from talkplay.data.schema import Playlist, Track
from talkplay.embed import ENCODERS, Entry, build_embeddings, check_encoder, load_modality
from talkplay.embed.diagnostics import genre_agreement, neighbour_agreement
from talkplay.embed.inputs import metadata_text
from talkplay.embed.protocol import ItemEncoder

GENRES = ("jazz", "rock", "classical")
SR = 8000


class HashText:
    """Bag of words hashed into 32 buckets, L2-normalised: a real, tiny text encoder."""

    name, dim = "hash32", 32

    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode(self, items, batch_size):
        self.calls.append(len(items))
        out = np.zeros((len(items), self.dim), np.float32)
        for i, text in enumerate(items):
            for w in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class BandAudio:
    """Log energy in 12 frequency bands of the decoded file, plus 3 "tags" from band groups."""

    name, dim = "bands", 12
    tags = ["low", "mid", "high"]

    def encode(self, items, batch_size):
        return self.encode_with_tags(items, batch_size)[0]

    def encode_with_tags(self, items, batch_size):
        embs = []
        for path in items:
            y, _ = sf.read(path, dtype="float32")
            spec = np.abs(np.fft.rfft(y))
            bands = np.array([b.sum() for b in np.array_split(spec, self.dim)])
            embs.append(np.log1p(bands))
        e = np.asarray(embs, np.float32)
        groups = np.stack([e[:, :4].sum(1), e[:, 4:8].sum(1), e[:, 8:].sum(1)], 1)
        p = np.exp(groups - groups.max(1, keepdims=True))
        return e, (p / p.sum(1, keepdims=True)).astype(np.float32)


@pytest.fixture
def encoders(monkeypatch):
    """Register the test encoders under their names, as a user would register their own."""
    text = HashText()
    monkeypatch.setitem(ENCODERS, "hash32", Entry("text", lambda cfg: text))
    monkeypatch.setitem(ENCODERS, "bands", Entry("audio", lambda cfg: BandAudio()))
    return text


def toy_cfg(**kw) -> EmbedConfig:
    enc = {"playlist": "item2vec", "semantic": "hash32", "metadata": "hash32",
           "lyrics": "hash32", "audio": "bands"}
    return EmbedConfig(encoders=enc, item2vec_dim=8, item2vec_epochs=3, item2vec_window=5,
                       batch_size=4, **kw)


def make_toy(root: Path, n: int = 30, audio: bool = True) -> Path:
    """n tracks in three genres; the last track is only in a test playlist (cold), track 1 has
    no tags but audio (pseudo tags), every third track has no lyrics, tones differ by genre."""
    rng = np.random.default_rng(0)
    tracks = []
    for i in range(n):
        g = GENRES[i % 3]
        path = None
        if audio and i % 5 != 4:
            (root / "audio").mkdir(parents=True, exist_ok=True)
            t = np.arange(SR) / SR
            y = 0.3 * np.sin(2 * np.pi * (220 * 2 ** (i % 3 * 1.5)) * t) + 0.01 * rng.standard_normal(SR)
            sf.write(root / "audio" / f"t{i}.wav", y.astype(np.float32), SR)
            path = f"audio/t{i}.wav"
        tracks.append(Track(
            id=f"t{i}", title=f"Song {i}", artists=[f"Artist {i % 7}"], album=f"Album {i % 4}",
            release_date=str(1990 + i), tags=[] if i == 1 else [g, "mood" + str(i % 2)],
            lyrics=None if i % 3 == 2 else f"la la {g} love " * (3 + i), audio=path))
    ids = [t.id for t in tracks]
    playlists = [Playlist(id=f"p{j}", track_ids=[ids[(j * 3 + k * 3) % (n - 1)] for k in range(6)]
                          + [ids[(j + 1) % (n - 1)]], split="train") for j in range(12)]
    playlists.append(Playlist(id="pv", track_ids=[ids[0], ids[2]], split="valid"))
    playlists.append(Playlist(id="pt", track_ids=[ids[0], ids[-1]], split="test"))
    tracks[-1].cold = True
    write_dataset(root, Dataset(tracks=tracks, playlists=playlists), source="toy",
                  split_rule="hand-made")
    return root


def test_item2vec_uses_training_playlists_only_and_is_deterministic(tmp_path, encoders):
    a, b = make_toy(tmp_path / "a"), make_toy(tmp_path / "b")
    for d in (a, b):
        build_embeddings(d, toy_cfg(), modalities=["playlist"])
    ids, m = load_modality(a, "playlist")
    train_ids = {t for p in read_dataset(a).playlists if p.split == "train" for t in p.track_ids}
    assert set(ids) == train_ids and "t29" not in ids  # the cold track has no vector
    assert isinstance(m, np.memmap) and m.dtype == np.float32 and m.shape == (len(ids), 8)
    np.testing.assert_array_equal(m, load_modality(b, "playlist")[1])
    manifest = json.loads((a / "embeddings" / "manifest.json").read_text())
    assert manifest["modalities"]["playlist"]["encoder"] == "item2vec"


def test_item2vec_resumes_to_the_same_vectors(tmp_path, encoders):
    full, cut = make_toy(tmp_path / "full"), make_toy(tmp_path / "cut")
    build_embeddings(full, toy_cfg(), modalities=["playlist"])

    class Stop(Exception):
        pass

    def stop_after_two(label, total):
        done = []
        def advance(n):
            done.append(n)
            if len(done) == 2:
                raise Stop
        return advance

    with pytest.raises(Stop):
        build_embeddings(cut, toy_cfg(), modalities=["playlist"], progress=stop_after_two)
    assert (cut / "embeddings" / ".partial" / "playlist" / "item2vec.model").exists()
    build_embeddings(cut, toy_cfg(), modalities=["playlist"])
    np.testing.assert_array_equal(load_modality(full, "playlist")[1],
                                  load_modality(cut, "playlist")[1])
    assert not (cut / "embeddings" / ".partial" / "playlist").exists()


def test_item2vec_workers_come_from_the_cli_and_key_the_cache(tmp_path, encoders):
    """``--item2vec-workers 2 --item2vec-epochs 2`` train the playlist vectors with two gensim
    threads (recorded in the spec, so they never reuse single-thread vectors, or the reverse);
    one worker keeps the spec of caches built before the option existed."""
    from typer.testing import CliRunner

    from talkplay.cli import app
    from talkplay.embed.registry import encoder_spec

    assert "workers" not in encoder_spec("playlist", "item2vec", toy_cfg())
    d = make_toy(tmp_path / "d")
    r = CliRunner().invoke(app, ["embed", "--data", str(d), "--profile", "tiny", "-m", "playlist",
                                 "--item2vec-workers", "2", "--item2vec-epochs", "2"])
    assert r.exit_code == 0, r.output
    entry = json.loads((d / "embeddings" / "manifest.json").read_text())["modalities"]["playlist"]
    assert entry["spec"]["workers"] == 2 and entry["spec"]["epochs"] == 2
    ids, m = load_modality(d, "playlist")
    train_ids = {t for p in read_dataset(d).playlists if p.split == "train" for t in p.track_ids}
    assert set(ids) == train_ids and m.shape == (len(ids), entry["dim"]) and np.isfinite(m).all()
    r = CliRunner().invoke(app, ["embed", "--data", str(d), "-m", "playlist", "--item2vec-workers", "0"])
    assert r.exit_code == 2 and "Traceback" not in r.output

def test_text_modalities_absent_where_input_is(tmp_path, encoders):
    d = make_toy(tmp_path, audio=False)
    reports = build_embeddings(d, toy_cfg(pseudo_tags=False))
    got = {r.modality: r for r in reports}
    assert got["metadata"].n == 30 and got["lyrics"].n == 20
    assert got["semantic"].n == 29  # t1 has no tags and no audio, so no pseudo tags either
    assert got["audio"].n == 0 and load_modality(d, "audio")[1].shape[0] == 0
    lyr_ids, lyr = load_modality(d, "lyrics")
    assert "t2" not in lyr_ids and lyr.shape == (20, 32)
    np.testing.assert_allclose(np.linalg.norm(lyr, axis=1), 1, rtol=1e-5)


def test_rerun_recomputes_only_changed_modalities(tmp_path, encoders):
    d = make_toy(tmp_path)
    build_embeddings(d, toy_cfg())
    assert all(r.cached for r in build_embeddings(d, toy_cfg()))
    ds = read_dataset(d)
    ds.tracks[0].lyrics = "completely new words"
    write_dataset(d, ds, source="toy", split_rule="hand-made")
    encoders.calls.clear()
    reports = {r.modality: r.cached for r in build_embeddings(d, toy_cfg())}
    assert reports == {"playlist": True, "audio": True, "semantic": True, "metadata": True,
                       "lyrics": False}
    assert sum(encoders.calls) == 20  # only the lyrics were encoded again
    cfg = toy_cfg()
    cfg.item2vec_dim = 4
    assert [r.modality for r in build_embeddings(d, cfg) if not r.cached] == ["playlist"]


def test_interrupted_encoding_resumes_from_finished_chunks(tmp_path, encoders):
    full, cut = make_toy(tmp_path / "full"), make_toy(tmp_path / "cut")
    build_embeddings(full, toy_cfg(), modalities=["metadata"], chunk_size=8)

    class Stop(Exception):
        pass

    def stop_mid_chunk(label, total):
        seen = []
        def advance(n):
            seen.append(n)
            if sum(seen) >= 20:  # 2 chunks of 8 done, third chunk half-way
                raise Stop
        return advance

    with pytest.raises(Stop):
        build_embeddings(cut, toy_cfg(), modalities=["metadata"], progress=stop_mid_chunk,
                         chunk_size=8)
    partial = cut / "embeddings" / ".partial" / "metadata"
    assert sorted(p.name for p in partial.glob("0*.npy")) == ["0000000000.npy", "0000000008.npy"]
    assert not (cut / "embeddings" / "metadata.npy").exists()
    encoders.calls.clear()
    build_embeddings(cut, toy_cfg(), modalities=["metadata"], chunk_size=8)
    assert sum(encoders.calls) == 30 - 16
    np.testing.assert_array_equal(load_modality(full, "metadata")[1],
                                  load_modality(cut, "metadata")[1])
    assert not partial.exists()


def test_audio_tags_and_pseudo_tags(tmp_path, encoders):
    d = make_toy(tmp_path)
    build_embeddings(d, toy_cfg(pseudo_tag_count=2))
    emb = d / "embeddings"
    ids, tags = load_modality(d, "audio_tags")
    assert tags.shape == (24, 3) and ids == load_modality(d, "audio")[0]
    assert json.loads((emb / "audio_tags.names.json").read_text()) == BandAudio.tags
    ds = read_dataset(d)
    t1 = ds.track_index()["t1"]
    assert t1.tags == [] and len(t1.pseudo_tags) == 2 and set(t1.pseudo_tags) <= set(BandAudio.tags)
    assert all(not t.pseudo_tags for t in ds.tracks if t.tags)
    assert ds.manifest["source"] == "toy" and ds.manifest["pseudo_tags"]["tracks"] == 1
    assert json.loads((emb / "semantic.pseudo.json").read_text()) == ["t1"]
    assert "t1" in load_modality(d, "semantic")[0]
    assert all(r.cached for r in build_embeddings(d, toy_cfg(pseudo_tag_count=2)))


def test_missing_audio_file_is_a_located_error(tmp_path, encoders):
    d = make_toy(tmp_path)
    (d / "audio" / "t3.wav").unlink()
    with pytest.raises(DataError) as e:
        build_embeddings(d, toy_cfg(), modalities=["audio"])
    assert "tracks.parquet:3" in str(e.value) and "audio" in str(e.value) and "t3" in str(e.value)


@pytest.mark.parametrize("modality,name,needs", [
    ("audio", "minilm", "audio encoder: musicnn"),       # would embed file paths as text
    ("playlist", "minilm", "playlist encoder: item2vec"),  # has no fit(): AttributeError before
    ("semantic", "musicnn", "text encoder: minilm"),
    ("lyrics", "item2vec", "text encoder: minilm"),
    ("audio", "some/hf-model", "unknown encoder 'some/hf-model'"),
])
def test_encoder_of_the_wrong_kind_is_refused(modality, name, needs):
    with pytest.raises(ValueError, match=re.escape(needs)):
        check_encoder(modality, name)


def test_fitting_encoders_pass_the_check():
    for modality, name in [("playlist", "item2vec"), ("metadata", "minilm"),
                           ("semantic", "any/sentence-transformers-model"), ("audio", "musicnn")]:
        check_encoder(modality, name)
    with pytest.raises(ValueError, match="unknown modality 'video'"):
        check_encoder("video", "minilm")


def test_misfit_encoder_fails_before_anything_is_built(tmp_path, encoders):
    d = make_toy(tmp_path, audio=False)
    cfg = toy_cfg()
    cfg.encoders["audio"] = "hash32"
    with pytest.raises(ValueError, match="'hash32' embeds text, but modality 'audio'"):
        build_embeddings(d, cfg)
    assert encoders.calls == [] and not (d / "embeddings" / "playlist.ids.json").exists()


def test_cli_refuses_a_misfit_encoder_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from talkplay.cli import app

    d = make_toy(tmp_path, audio=False)
    for spec in ("audio=minilm", "playlist=minilm"):
        r = CliRunner().invoke(app, ["embed", "--data", str(d), "--encoder", spec])
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert "encoder" in r.output and spec.split("=")[0] in r.output


def test_metadata_text_follows_the_paper():
    t = Track(id="x", title="Blue", artists=["A", "B"], album="Kind", release_date="1959-08-17")
    assert metadata_text(t) == "Blue by A, B from Kind (1959)"
    assert metadata_text(Track(id="y", title="Solo")) == "Solo"


def test_neighbour_agreement_against_hand_computed_chance():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    r = neighbour_agreement(x, ["a", "a", "b", "b"], k=1)
    assert r["at_1"] == 1.0 and r["chance"] == pytest.approx(4 / 12) and r["lift_at_1"] == 3.0
    r = neighbour_agreement(x, ["a", "b", "a", "b"], k=1)
    assert r["at_1"] == 0.0


def test_band_audio_separates_toy_genres(tmp_path, encoders):
    d = make_toy(tmp_path)
    build_embeddings(d, toy_cfg(), modalities=["audio"])
    r = genre_agreement(d, read_dataset(d).tracks, "audio", k=3)
    assert r["labels"] == 3 and r["at_k"] > 0.9 and r["lift_at_k"] > 2.5
    assert isinstance(HashText(), ItemEncoder)


@pytest.mark.slow
def test_minilm_chunks_long_texts_instead_of_cutting_them():
    from talkplay.embed.text import TextEncoder

    enc = TextEncoder("minilm", device="cpu")
    assert enc.dim == 384 and isinstance(enc, ItemEncoder)
    head = "sunny morning walk by the sea " * 60  # ~360 word pieces > 254
    tail = "dark stormy night in the city " * 60
    assert len(enc.split(head + tail)) >= 3
    v = enc.encode([head + tail, head, "short text"], batch_size=8)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    truncated = enc.model.encode([head + tail], normalize_embeddings=True)[0]
    assert float(v[0] @ truncated) < 0.98  # the tail counts; a silent cut would give ~1.0


@pytest.mark.slow
def test_cli_embed_and_tokenize_with_packaged_text_model(tmp_path, encoders):
    from typer.testing import CliRunner

    from talkplay.cli import app

    d = make_toy(tmp_path)
    r = CliRunner().invoke(app, ["embed", "--data", str(d), "--profile", "tiny",
                                 "--encoder", "audio=bands", "--diagnose"])
    assert r.exit_code == 0, r.output
    assert "minilm" in r.output and "genre agreement" in r.output
    assert load_modality(d, "metadata")[1].shape == (30, 384)
    r = CliRunner().invoke(app, ["tokenize", "--data", str(d), "--profile", "tiny"])
    assert r.exit_code == 0, r.output
    assert "5-token tuples" in r.output and (d / "tokenizer" / "stats.json").exists()
    r = CliRunner().invoke(app, ["embed", "--data", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "error" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_real_musicnn_on_shared_audio(tmp_path, shared_data):
    pytest.importorskip("talkplay.embed.musicnn")
    # The two shortest recordings (51 s in all) keep this test quick.
    files = [shared_data / "audio" / f for f in ("sorohan_solo_trumpet.ogg",
                                                  "brahms_hungarian_dance_5.ogg")]
    tracks = [Track(id=f.stem, title=f.stem, audio=str(f)) for f in files]
    tracks[0].tags = ["jazz"]
    write_dataset(tmp_path, Dataset(tracks=tracks, playlists=[]), source="shared audio",
                  split_rule="none")
    cfg = EmbedConfig(encoders={"audio": "musicnn"}, batch_size=2, device="cpu")
    (rep,) = build_embeddings(tmp_path, cfg, modalities=["audio"])
    assert rep.n == len(files) and rep.dim > 0
    ids, probs = load_modality(tmp_path, "audio_tags")
    names = json.loads((tmp_path / "embeddings" / "audio_tags.names.json").read_text())
    assert probs.shape == (len(files), 50) and len(names) == 50 and "jazz" in names
    ds = read_dataset(tmp_path)
    assert all(len(t.pseudo_tags) == 5 for t in ds.tracks[1:]) and ds.tracks[0].pseudo_tags == []
