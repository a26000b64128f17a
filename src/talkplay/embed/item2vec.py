"""item2vec: skip-gram word2vec over playlists, a playlist being a sentence of track ids.

Trained on training playlists only (the paper's setup): a track that never occurs in a
training playlist gets no vector, and the tokenizer gives it ``<|playlist-none|>``.
Deterministic by default: one worker thread and a fixed seed (gensim's multi-threaded training
interleaves updates in a thread-timing dependent order); ``workers`` > 1 trades that for speed
at MPD's size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from talkplay.embed.protocol import Progress
from talkplay.io import atomic_path

log = logging.getLogger(__name__)

_MAX_SENTENCE = 10_000
"""gensim silently truncates sentences longer than this; longer playlists are split."""
_ALPHA, _MIN_ALPHA = 0.025, 0.0001
"""gensim's default learning-rate schedule (start, end), decayed linearly over all epochs."""


class Sentences:
    """The playlists as gensim sentences, read again on every pass instead of copied (a corpus
    iterable: MPD's 66M entries held twice would cost GB); playlists longer than gensim's limit
    come in pieces, empty ones not at all."""

    def __init__(self, playlists: Sequence[Sequence[str]]):
        self.playlists = playlists

    def __iter__(self):
        for p in self.playlists:
            if len(p) <= _MAX_SENTENCE:
                if len(p):
                    yield p if isinstance(p, list) else list(p)
                continue
            for i in range(0, len(p), _MAX_SENTENCE):
                yield list(p[i:i + _MAX_SENTENCE])

    def __len__(self) -> int:
        return sum(-(-len(p) // _MAX_SENTENCE) for p in self.playlists)


class Item2Vec:
    """A ``PlaylistEncoder`` built on gensim's Word2Vec (sg=1).

    Args:
        dim: vector width (paper: 128).
        window: context window in tracks.
        epochs: passes over the playlists.
        min_count: tracks seen fewer times get no vector.
        seed: random seed.
        negative: negative samples per positive pair.
        workers: gensim worker threads (1: reproducible bit for bit).
    """

    name = "item2vec"

    def __init__(self, dim: int = 128, window: int = 20, epochs: int = 20, min_count: int = 1,
                 seed: int = 0, negative: int = 5, workers: int = 1):
        if workers < 1:
            raise ValueError(f"item2vec workers must be >= 1, got {workers}")
        self.dim, self.window, self.epochs = dim, window, epochs
        self.min_count, self.seed, self.negative, self.workers = min_count, seed, negative, workers

    def config(self) -> dict:
        return {"model": f"gensim.Word2Vec(sg=1, workers={self.workers})", "dim": self.dim,
                "window": self.window, "epochs": self.epochs, "min_count": self.min_count,
                "negative": self.negative, "seed": self.seed}

    def fit(self, playlists: Sequence[Sequence[str]], progress: Progress | None = None,
            workdir: Path | None = None) -> tuple[list[str], np.ndarray]:
        """Train on ordered track-id sequences, one epoch per ``train`` call.

        Training epoch by epoch (learning rate decayed linearly across epochs, as gensim does
        in one call) lets an interrupted run resume from the last finished epoch and give
        the same vectors as an uninterrupted one.

        Args:
            playlists: training playlists (lists of track ids).
            progress: called with 1 after every epoch.
            workdir: where to keep the model after each epoch for resuming (None: don't).
        Returns:
            (track ids with a vector, float32 [n_ids, dim]); ids in gensim's vocabulary order.
        """
        from gensim.models import Word2Vec

        # gensim logs every epoch and save at INFO (with full lifecycle dicts); keep ours only.
        logging.getLogger("gensim").setLevel(max(logging.WARNING, log.getEffectiveLevel()))

        sentences = Sentences(playlists)
        if not len(sentences):
            return [], np.zeros((0, self.dim), dtype=np.float32)
        ckpt = Path(workdir) / "item2vec.model" if workdir is not None else None
        if ckpt is not None and ckpt.exists():
            model = Word2Vec.load(str(ckpt))
            log.info("item2vec: resuming after epoch %d", model.talkplay_epochs)
        else:
            model = Word2Vec(vector_size=self.dim, window=self.window, sg=1,
                             min_count=self.min_count, negative=self.negative, seed=self.seed,
                             alpha=_ALPHA, min_alpha=_MIN_ALPHA, workers=self.workers)
            model.build_vocab(sentences)
            model.talkplay_epochs = 0
        log.info("item2vec: %d playlists, %d entries, %d tracks in vocabulary, dim=%d",
                 len(sentences), sum(map(len, playlists)), len(model.wv), self.dim)
        # gensim overwrites model.alpha on every train call, so the schedule uses constants.
        a0, a1 = _ALPHA, _MIN_ALPHA
        for epoch in range(model.talkplay_epochs, self.epochs):
            model.train(sentences, total_examples=model.corpus_count, epochs=1,
                        start_alpha=a0 - (a0 - a1) * epoch / self.epochs,
                        end_alpha=a0 - (a0 - a1) * (epoch + 1) / self.epochs)
            model.talkplay_epochs = epoch + 1
            if ckpt is not None:
                with atomic_path(ckpt) as tmp:
                    model.save(str(tmp), separately=[])  # one file, so the rename is atomic
            if progress is not None:
                progress(1)
        ids = list(model.wv.index_to_key)
        return ids, np.asarray(model.wv.vectors, dtype=np.float32)
