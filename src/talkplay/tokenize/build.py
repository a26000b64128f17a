"""Embeddings -> codebook: spherical K-means per modality, five codes per track, statistics.

Codes follow the dataset's track order. A track lacking a modality gets MISSING (-1) there,
so cold tracks, which item2vec never saw (it trains on training playlists only), are
tokenised from their content modalities alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from talkplay.config import TokenizerConfig, asdict
from talkplay.data.dataset import read_dataset
from talkplay.data.errors import DataError
from talkplay.embed.store import embeddings_dir, load_modality, read_manifest
from talkplay.tokenize.codebook import Codebook
from talkplay.tokenize.grammar import MISSING, MODALITIES
from talkplay.tokenize.kmeans import cap_k, normalise, spherical_kmeans
from talkplay.tokenize.stats import codebook_stats

log = logging.getLogger(__name__)

DIRNAME = "tokenizer"
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def build_codebook(data_dir: str | Path, cfg: TokenizerConfig | None = None, *,
                   progress: ProgressFactory | None = None, save: bool = True) -> Codebook:
    """Cluster each modality's embeddings and assign five codes to every track.

    Args:
        data_dir: dataset directory holding ``embeddings/`` (``talkplay embed``).
        cfg: K, the small-catalog cap, iterations and seed.
        progress: progress-bar factory (label, total) -> advance(n).
        save: write the codebook to ``data_dir/tokenizer``.
    Returns:
        The codebook, with ``stats`` filled in.
    Raises:
        DataError: no embeddings, or embeddings that name tracks the dataset lacks (stale).
    """
    cfg = cfg or TokenizerConfig()
    root = Path(data_dir)
    ds = read_dataset(root)
    emb_dir = embeddings_dir(root)
    if not (emb_dir / "manifest.json").exists():
        raise DataError("no embeddings here; run `talkplay embed` first", file=str(emb_dir))
    emb_manifest = read_manifest(emb_dir)
    item_ids = [t.id for t in ds.tracks]
    row = {tid: i for i, tid in enumerate(item_ids)}
    cold = np.array([t.cold for t in ds.tracks], dtype=bool)
    codes = np.full((len(item_ids), len(MODALITIES)), MISSING, dtype=np.int32)
    centroids: dict[str, np.ndarray] = {}
    advance = (progress or (lambda label, total: lambda n: None))("k-means", len(MODALITIES))
    for j, m in enumerate(MODALITIES):
        loaded = load_modality(root, m)
        ids, matrix = loaded if loaded is not None else ([], np.zeros((0, 0), np.float32))
        stale = [tid for tid in ids if tid not in row]
        if stale:
            raise DataError(f"{m} embeddings name {len(stale)} track(s) not in the dataset "
                            f"(first: {stale[0]!r}); rerun `talkplay embed`",
                            file=str(emb_dir / f"{m}.ids.json"))
        keep = np.array([not (m == "playlist" and cold[row[t]]) for t in ids], dtype=bool)
        if m == "playlist" and not keep.all():
            # Cannot happen with train-only item2vec; guards against embeddings built
            # before the split changed. Cold items must not carry playlist tokens.
            log.warning("playlist: dropping %d cold tracks that have a vector", (~keep).sum())
        rows = np.flatnonzero(keep)
        k_m = cap_k(cfg.k_per_modality.get(m, cfg.k), len(rows), cfg.min_items_per_cluster)
        if k_m == 0:
            log.warning("%s: no track has this modality; only its none token is used", m)
            centroids[m] = np.zeros((0, matrix.shape[1] if matrix.ndim == 2 else 0), np.float32)
            advance(1)
            continue
        x = normalise(np.asarray(matrix[rows]))  # [n_m, d_m], unit rows
        log.info("%s: k-means K=%d over %d tracks (%d-d)", m, k_m, len(rows), x.shape[1])
        centroids[m], assign = spherical_kmeans(x, k_m, niter=cfg.niter, seed=cfg.seed)
        codes[[row[ids[r]] for r in rows], j] = assign
        advance(1)
    k = {m: int(centroids[m].shape[0]) for m in MODALITIES}
    stats = codebook_stats(codes, k, cold)
    cb = Codebook(item_ids=item_ids, codes=codes, centroids=centroids, stats=stats,
                  manifest={"config": asdict(cfg), "geometry": "L2-normalised, spherical k-means",
                            "embeddings": {m: {key: e.get(key) for key in ("encoder", "fingerprint")}
                                           for m, e in emb_manifest["modalities"].items()}})
    if save:
        cb.save(root / DIRNAME)
    return cb
