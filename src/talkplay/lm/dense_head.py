"""A dense head beside the music tokens (LIGER-style): any catalog track gets a model score.

Generative retrieval scores a track through its five music tokens; a track new to the catalog
carries ``<|playlist-none|>`` and shares its other codes with its neighbours, so the tokens
cannot single it out. The dense head gives the same model a second, continuous output: its
last hidden state where a music block starts (the position that predicts the first music
token) is projected into the space of the tracks' **content** embeddings (every modality but
the playlist one: text, lyrics, audio; what a new track has too) and trained with an in-batch
contrastive loss beside the usual cross-entropy (``train.losses.dense_contrastive_loss``). At
inference ``score = cos(head(h), content(track))`` for any track, warm or cold.

Files: ``RUN/model/dense_head.safetensors`` (the projection) and ``RUN/model/dense_head.json``
(hidden size, content modalities and their dimensions, temperature), written beside the HF
model by ``save_head`` and read by ``load_head``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from talkplay.embed.store import load_modality
from talkplay.io import atomic_path
from talkplay.tokenize import grammar

WEIGHTS = "dense_head.safetensors"
META = "dense_head.json"


@dataclass
class HeadSpec:
    """What a dense head was built for (saved in ``dense_head.json``)."""

    hidden: int
    """The LM's hidden size."""
    modalities: list[str]
    """Content modalities concatenated into the target space, in order."""
    dims: list[int]
    """Their embedding dimensions."""
    temperature: float = 0.05
    """Softmax temperature of the contrastive loss."""

    @property
    def dim(self) -> int:
        return int(sum(self.dims))


class DenseHead(torch.nn.Module):
    """Linear projection of a hidden state into the content space, L2-normalised."""

    def __init__(self, spec: HeadSpec):
        super().__init__()
        self.spec = spec
        self.proj = torch.nn.Linear(spec.hidden, spec.dim, bias=False)
        torch.nn.init.normal_(self.proj.weight, std=1.0 / math.sqrt(spec.hidden))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., h] -> float32 [..., d], unit norm."""
        return F.normalize(self.proj(hidden.to(self.proj.weight.dtype)).float(), dim=-1, eps=1e-8)


def content_modalities(k: dict[str, int]) -> list[str]:
    """The modalities a dense head targets: those tokenized (K > 0), except ``playlist``."""
    return [m for m in grammar.MODALITIES if m != "playlist" and k.get(m, 0) > 0]


def content_matrix(data_dir: str | Path, item_ids: list[str], modalities: list[str],
                   dims: list[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """The target space: per track, each modality's embedding L2-normalised, concatenated,
    and the whole normalised again (a track without an embedding in one modality gets zeros
    there; a track with none at all gets a zero row, which scores 0 against every query).

    Args:
        data_dir: the dataset directory (its ``embeddings/``).
        item_ids: tracks, in the order of the returned rows.
        modalities: from ``content_modalities`` (or a head's spec).
        dims: expected dimensions (a head's spec); a mismatch is an error.
    Returns:
        (float32 [len(item_ids), sum of dims], each modality's dimension).
    Raises:
        FileNotFoundError: a modality's embeddings are missing.
        ValueError: a dimension differs from ``dims``.
    """
    parts, found = [], []
    for j, m in enumerate(modalities):
        got = load_modality(data_dir, m)
        if got is None:
            raise FileNotFoundError(f"{data_dir}: no {m} embeddings (run `talkplay embed`); "
                                    "the dense head needs them")
        ids, matrix = got
        d = int(matrix.shape[1]) if matrix.ndim == 2 else 0
        found.append(d)
        if dims is not None and d != dims[j]:
            raise ValueError(f"{data_dir}: {m} embeddings have dimension {d}, the dense head "
                             f"was trained on {dims[j]}")
        where = {t: i for i, t in enumerate(ids)}
        block = np.zeros((len(item_ids), d), dtype=np.float32)
        rows = [(i, where[t]) for i, t in enumerate(item_ids) if t in where]
        if rows:
            dst, src = map(np.asarray, zip(*rows, strict=True))
            block[dst] = np.asarray(matrix[src], dtype=np.float32)
        norm = np.linalg.norm(block, axis=1, keepdims=True)
        parts.append(block / np.maximum(norm, 1e-8))
    out = np.concatenate(parts, axis=1) if parts else np.zeros((len(item_ids), 0), np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8), found


def save_head(model_dir: str | Path, head: DenseHead) -> None:
    """Write the head's weights and spec into ``model_dir`` (each file atomically)."""
    model_dir = Path(model_dir)
    with atomic_path(model_dir / WEIGHTS) as tmp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()},
                  str(tmp))
    with atomic_path(model_dir / META) as tmp:
        Path(tmp).write_text(json.dumps(asdict(head.spec), indent=2))


def load_head(model_dir: str | Path) -> DenseHead | None:
    """The head saved in ``model_dir`` (eval mode, float32), or None when the run has none."""
    model_dir = Path(model_dir)
    if not (model_dir / META).exists():
        return None
    try:
        spec = HeadSpec(**json.loads((model_dir / META).read_text()))
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"{model_dir / META}: not a dense-head spec ({e})") from e
    head = DenseHead(spec)
    head.load_state_dict(load_file(str(model_dir / WEIGHTS)))
    return head.eval()


def head_checksum(run: str | Path) -> str | None:
    """SHA-256 of the run's dense-head weights, or None when it has no head."""
    path = Path(run) / "model" / WEIGHTS
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def load_dense_head(run: str | Path, item_ids: list[str]) -> tuple[DenseHead, np.ndarray] | None:
    """A run's dense head and the content matrix of ``item_ids`` it scores against (from the
    embeddings of the dataset the run was trained on), or None when the run has no head.

    Raises:
        FileNotFoundError: the run's dataset or its embeddings are gone.
    """
    from talkplay.io import read_json

    head = load_head(Path(run) / "model")
    if head is None:
        return None
    data = read_json(Path(run) / "manifest.json").get("data")
    if not data or not Path(data).exists():
        raise FileNotFoundError(f"{run}: its dense head needs the content embeddings of the "
                                f"dataset it was trained on ({data}), which is not there")
    matrix, _ = content_matrix(data, item_ids, head.spec.modalities, head.spec.dims)
    return head, matrix
