"""The embeddings directory: one matrix and one id list per modality, and its manifest.

```
DIR/embeddings/manifest.json        kind=embeddings; per modality: encoder, spec, fingerprint, n, dim
DIR/embeddings/{m}.npy              float32 [n_m, d_m] (np.load(..., mmap_mode="r") works)
DIR/embeddings/{m}.ids.json         track ids, row order of {m}.npy (dataset track order)
DIR/embeddings/semantic.pseudo.json ids whose semantic vector came from pseudo tags
DIR/embeddings/audio_tags.npy       float32 [n, 50] tagger probabilities (+ .ids.json, .names.json)
DIR/embeddings/.partial/{m}/        finished chunks of an interrupted run (removed when done)
```
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkplay.io import MANIFEST, make_manifest, read_json, write_json, write_npy

DIRNAME = "embeddings"
FORMAT_VERSION = 1
AUDIO_TAGS = "audio_tags"


def embeddings_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / DIRNAME


def read_manifest(emb_dir: Path) -> dict:
    """The embeddings manifest, or a fresh one when none exists yet."""
    if (emb_dir / MANIFEST).exists():
        return read_json(emb_dir / MANIFEST)
    return make_manifest("embeddings", FORMAT_VERSION, modalities={})


def write_matrix(emb_dir: Path, name: str, ids: list[str], matrix: np.ndarray) -> None:
    """Write ``{name}.npy`` and ``{name}.ids.json`` (each atomically)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.shape[0] != len(ids):
        raise ValueError(f"{name}: {matrix.shape[0]} rows but {len(ids)} ids")
    write_npy(emb_dir / f"{name}.npy", matrix)
    write_json(emb_dir / f"{name}.ids.json", ids)


def update_manifest(emb_dir: Path, modality: str, entry: dict) -> dict:
    """Record one finished modality (written last, so the manifest never names missing files)."""
    manifest = read_manifest(emb_dir)
    manifest["modalities"][modality] = entry
    manifest["talkplay_version"] = make_manifest("embeddings", FORMAT_VERSION)["talkplay_version"]
    write_json(emb_dir / MANIFEST, manifest)
    return manifest


def is_cached(emb_dir: Path, modality: str, fp: str) -> bool:
    """True when ``modality`` was built from exactly these inputs and its files are present."""
    entry = read_manifest(emb_dir)["modalities"].get(modality)
    names = [modality] + ([AUDIO_TAGS] if entry and entry.get("tags") else [])
    return bool(entry and entry.get("fingerprint") == fp and all(
        (emb_dir / f"{n}.npy").exists() and (emb_dir / f"{n}.ids.json").exists() for n in names))


def load_modality(data_dir: str | Path, modality: str,
                  mmap: bool = True) -> tuple[list[str], np.ndarray] | None:
    """One modality's (track ids, float32 [n_m, d_m] matrix), or None when it was not built.

    Args:
        data_dir: dataset directory.
        modality: a modality name or "audio_tags".
        mmap: memory-map the matrix instead of reading it.
    """
    d = embeddings_dir(data_dir)
    if not (d / f"{modality}.npy").exists():
        return None
    ids = read_json(d / f"{modality}.ids.json")
    matrix = np.load(d / f"{modality}.npy", mmap_mode="r" if mmap else None)
    return ids, matrix
