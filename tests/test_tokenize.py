"""K-means codebooks: the K cap, spherical k-means, codes with MISSING, warm/cold statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from talkplay.config import TokenizerConfig
from talkplay.data.dataset import Dataset, write_dataset
from talkplay.data.errors import DataError
from talkplay.data.schema import Playlist, Track
from talkplay.embed.store import embeddings_dir, update_manifest, write_matrix
from talkplay.tokenize.build import build_codebook
from talkplay.tokenize.codebook import Codebook
from talkplay.tokenize.grammar import MISSING, MODALITIES
from talkplay.tokenize.kmeans import cap_k, normalise, spherical_kmeans
from talkplay.tokenize.stats import cluster_sizes, tuple_stats


def blobs(n_per: int, k: int, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k well-separated directions, n_per noisy points each, random lengths (cosine ignores them)."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((k, d)))
    labels = np.repeat(np.arange(k), n_per)
    x = centres[labels] + 0.05 * rng.standard_normal((len(labels), d))
    return (x * rng.uniform(0.5, 5.0, (len(labels), 1))).astype(np.float32), labels


@pytest.mark.parametrize(("k", "n", "per", "want"), [
    (1024, 0, 4, 0), (1024, 1, 4, 1), (1024, 3, 4, 2), (1024, 5, 4, 2), (1024, 100, 4, 25),
    (16, 1000, 4, 16), (1024, 100_000, 4, 1024)])
def test_k_cap_rule(k, n, per, want):
    assert cap_k(k, n, per) == want


def test_spherical_kmeans_recovers_directions_deterministically():
    x, labels = blobs(20, 4)
    c1, a1 = spherical_kmeans(normalise(x), 4, niter=20, seed=0)
    c2, a2 = spherical_kmeans(normalise(x), 4, niter=20, seed=0)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_allclose(np.linalg.norm(c1, axis=1), 1, rtol=1e-5)
    # one code per true direction, and every item at its most cosine-similar centroid
    assert all(len(set(a1[labels == g])) == 1 for g in range(4)) and len(set(a1)) == 4
    np.testing.assert_array_equal(a1, np.argmax(normalise(x) @ c1.T, axis=1))


def test_cluster_sizes_hand_computed():
    s = cluster_sizes(np.array([0, 0, 0, 1, 3, 3]), 5)
    assert (s["k"], s["items"], s["empty"], s["min"], s["max"]) == (5, 6, 2, 0, 3)
    assert s["q50"] == 1.0 and s["histogram"] == {"0": 2, "1": 1, "2-3": 2}


def test_tuple_stats_count_over_the_whole_catalog():
    codes = np.array([[0, 1, 1, 1, 1], [0, 1, 1, 1, 1], [2, 1, 1, 1, 1], [MISSING, 1, 1, 1, 1],
                      [0, 1, 1, 1, 1]], np.int32)
    cold = np.array([False, False, False, True, True])
    assert tuple_stats(codes, ~cold) == {"items": 3, "distinct_tuples": 2, "collision_rate": 2 / 3,
                                         "max_items_per_tuple": 3, "items_per_tuple": 1.5}
    t = tuple_stats(codes, cold)
    assert t["collision_rate"] == 0.5 and t["max_items_per_tuple"] == 3  # track 4 shares with 0, 1


def make_embedded(root, n: int = 40, n_cold: int = 4):
    """A dataset of n tracks (the last n_cold cold) with synthetic embeddings: playlist vectors
    for the warm tracks, semantic and metadata for all, lyrics for even tracks, no audio."""
    tracks = [Track(id=f"t{i}", title=f"T{i}", cold=i >= n - n_cold) for i in range(n)]
    warm = [t.id for t in tracks if not t.cold]
    cold = [t.id for t in tracks if t.cold]
    write_dataset(root, Dataset(tracks=tracks, playlists=[
        Playlist(id="p0", track_ids=warm, split="train"),
        Playlist(id="p1", track_ids=cold, split="test")]), source="toy", split_rule="hand-made")
    emb = embeddings_dir(root)
    x, _ = blobs(n // 4, 4, d=6)
    for m, ids in (("playlist", warm), ("semantic", [t.id for t in tracks]),
                   ("metadata", [t.id for t in tracks]), ("lyrics", [f"t{i}" for i in range(0, n, 2)]),
                   ("audio", [])):
        rows = [int(t[1:]) for t in ids]
        write_matrix(emb, m, ids, x[rows] if ids else np.zeros((0, 0), np.float32))
        update_manifest(emb, m, {"encoder": "synthetic", "fingerprint": m, "n": len(ids)})
    return root


def test_codebook_codes_missing_modalities_and_cold_items(tmp_path):
    d = make_embedded(tmp_path)
    cb = build_codebook(d, TokenizerConfig(k=16, niter=10))
    assert cb.codes.shape == (40, 5) and cb.item_ids == [f"t{i}" for i in range(40)]
    assert cb.k == {"playlist": 9, "semantic": 10, "metadata": 10, "lyrics": 5, "audio": 0}
    pl, lyr, audio = (MODALITIES.index(m) for m in ("playlist", "lyrics", "audio"))
    assert (cb.codes[36:, pl] == MISSING).all() and (cb.codes[:36, pl] >= 0).all()
    assert (cb.codes[1::2, lyr] == MISSING).all() and (cb.codes[::2, lyr] >= 0).all()
    assert (cb.codes[:, audio] == MISSING).all() and cb.centroids["audio"].shape[0] == 0
    assert (cb.codes[:, 1:3] >= 0).all()
    s = cb.stats
    assert (s["warm"], s["cold"]) == (36, 4)
    assert s["modalities"]["playlist"]["coverage"] == {"all": 0.9, "warm": 1.0, "cold": 0.0}
    assert s["modalities"]["lyrics"]["coverage"]["all"] == 0.5
    assert s["modalities"]["semantic"]["items"] == 40 and s["modalities"]["audio"]["k"] == 0
    assert s["tuples"]["all"]["items"] == 40 and s["tuples"]["cold"]["items"] == 4
    loaded = Codebook.load(d / "tokenizer")
    np.testing.assert_array_equal(loaded.codes, cb.codes)
    assert loaded.k == cb.k and loaded.stats == json.loads(json.dumps(s))
    assert loaded.manifest["config"]["k"] == 16
    assert "<|playlist-none|>" in loaded.text_of("t39")


def test_codebook_is_deterministic_and_scale_invariant(tmp_path):
    a = build_codebook(make_embedded(tmp_path / "a"), TokenizerConfig(k=8, niter=10), save=False)
    d = make_embedded(tmp_path / "b")
    ids = json.loads((d / "embeddings" / "semantic.ids.json").read_text())
    x = np.load(d / "embeddings" / "semantic.npy")
    write_matrix(embeddings_dir(d), "semantic", ids, x * np.arange(1, 41)[:, None])
    b = build_codebook(d, TokenizerConfig(k=8, niter=10), save=False)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_cold_track_with_a_playlist_vector_gets_none(tmp_path):
    d = make_embedded(tmp_path)
    emb = embeddings_dir(d)
    x = np.load(emb / "semantic.npy")
    write_matrix(emb, "playlist", [f"t{i}" for i in range(40)], x)  # stale: cold tracks included
    cb = build_codebook(d, TokenizerConfig(k=8, niter=5), save=False)
    assert (cb.codes[36:, 0] == MISSING).all()


def test_stale_or_absent_embeddings_are_clear_errors(tmp_path):
    d = make_embedded(tmp_path)
    write_matrix(embeddings_dir(d), "lyrics", ["ghost"], np.ones((1, 6), np.float32))
    with pytest.raises(DataError, match="lyrics.ids.json.*ghost.*talkplay embed"):
        build_codebook(d, save=False)
    with pytest.raises(DataError, match="run `talkplay embed` first"):
        build_codebook(_no_embeddings(tmp_path / "y"), save=False)


def _no_embeddings(root):
    write_dataset(root, Dataset(tracks=[Track(id="a", title="A")]), source="toy", split_rule="-")
    return root


def test_cli_tokenize_prints_statistics(tmp_path):
    from typer.testing import CliRunner

    from talkplay.cli import app

    d = make_embedded(tmp_path)
    r = CliRunner().invoke(app, ["tokenize", "--data", str(d), "--clusters", "8", "--niter", "5"],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "collision rate" in r.output and "playlist" in r.output and "cold" in r.output
    assert "is now" not in r.output
    # The old names (--k, --k-modality) still work for one release, with a note.
    r = CliRunner().invoke(app, ["tokenize", "--data", str(d), "--k", "6", "--k-modality",
                                 "playlist=3", "--niter", "5"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "--k is now --clusters" in r.output and "--k-modality is now --modality-clusters" in r.output
    stats = json.loads((d / "tokenizer" / "stats.json").read_text())
    assert stats["modalities"]["playlist"]["k"] <= 3 and stats["modalities"]["semantic"]["k"] <= 6
    r = CliRunner().invoke(app, ["tokenize", "--data", str(_no_embeddings(tmp_path / "e"))])
    assert r.exit_code == 2 and "talkplay embed" in r.output and "Traceback" not in r.output
