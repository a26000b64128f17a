"""The seams between the embedding build and the encoders: small Protocols, no base classes.

Text encoders take strings, audio encoders take file paths; both return float32 [n, dim].
The playlist modality is different in kind: item2vec learns vectors from co-occurrence, so
its encoder is fitted on playlists and returns the ids it has vectors for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

Progress = Callable[[int], None]
"""Called with the number of items just finished (the CLI advances a progress bar)."""


@runtime_checkable
class ItemEncoder(Protocol):
    """One encoder for one content modality (tags, metadata, lyrics: texts; audio: paths)."""

    name: str
    """Registry name or model path; recorded in the embeddings manifest."""
    dim: int
    """Width of the vectors ``encode`` returns."""

    def encode(self, items: Sequence[str], batch_size: int) -> np.ndarray:
        """Encode texts or audio paths.

        Args:
            items: n texts or file paths.
            batch_size: items per forward pass.
        Returns:
            float32 [n, dim].
        """
        ...


@runtime_checkable
class AudioTagger(Protocol):
    """An audio encoder that also predicts tag probabilities (musicnn's MSD tagger)."""

    tags: list[str]
    """Tag names, column order of the probabilities."""

    def encode_with_tags(self, items: Sequence[str],
                         batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (embeddings float32 [n, dim], tag probabilities float32 [n, len(tags)])."""
        ...


@runtime_checkable
class PlaylistEncoder(Protocol):
    """Learns item vectors from playlists (item2vec)."""

    name: str
    dim: int

    def fit(self, playlists: Sequence[Sequence[str]], progress: Progress | None = None,
            workdir: Path | None = None) -> tuple[list[str], np.ndarray]:
        """Learn vectors from ordered track-id sequences.

        Args:
            playlists: training playlists only (test playlists would leak into cold items).
            progress: called with 1 after each epoch.
            workdir: a folder for resumable state (None: no resume).
        Returns:
            (track ids with a vector, float32 [n_ids, dim]) in the same order.
        """
        ...

    def config(self) -> dict:
        """Everything that changes the result (for the input fingerprint)."""
        ...
