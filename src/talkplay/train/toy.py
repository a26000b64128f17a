"""A small synthetic dataset with a random codebook, for smoke tests and benchmarks.

Not a model of music: tracks, playlists and conversations with random content, enough to
exercise rendering, training, resume and multi-process runs in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from talkplay.data.dataset import Dataset, write_dataset
from talkplay.data.schema import Conversation, Message, Playlist, Track
from talkplay.tokenize.codebook import Codebook
from talkplay.tokenize.grammar import MODALITIES

_WORDS = ("calm jazz piano upbeat rock guitar sad indie night drive summer dance slow vocal "
          "electronic acoustic loud soft older newer more less something like that please").split()


def toy_dataset(path: str | Path, *, n_tracks: int = 60, n_playlists: int = 24,
                n_conversations: int = 24, turns: int = 3, k: int = 8, dim: int = 6,
                seed: int = 0) -> Path:
    """Write a toy dataset and its codebook (``path/tokenizer``).

    Args:
        path: dataset directory.
        n_tracks, n_playlists, n_conversations: sizes; a sixth of playlists and conversations
            go to the valid split.
        turns: user/music/assistant exchanges per conversation; the first music turn of every
            third conversation is marked rejected.
        k: clusters per modality; dim: centroid dimension.
        seed: everything is a function of it.
    Returns:
        ``path``.
    """
    rng = np.random.default_rng(seed)
    tracks = [Track(id=f"t{i}", title=f"Song {i}", artists=[f"Artist {i % 7}"]) for i in range(n_tracks)]
    ids = [t.id for t in tracks]

    def words(n: int) -> str:
        return " ".join(rng.choice(_WORDS, n))

    playlists = [Playlist(id=f"p{i}", track_ids=list(rng.choice(ids, int(rng.integers(3, 12)),
                                                                replace=False)),
                          split="valid" if i % 6 == 5 else "train") for i in range(n_playlists)]
    convs = []
    for i in range(n_conversations):
        msgs, meta = [], {}
        for _ in range(turns):
            msgs.append(Message("user", words(int(rng.integers(3, 12)))))
            msgs.append(Message("music", str(rng.choice(ids))))
            msgs.append(Message("assistant", words(int(rng.integers(3, 12)))))
        if i % 3 == 0:
            meta["rejected"] = [1]
        convs.append(Conversation(id=f"c{i}", messages=msgs, meta=meta,
                                  split="valid" if i % 6 == 5 else "train"))
    path = Path(path)
    write_dataset(path, Dataset(tracks, playlists, convs), source=f"toy(seed={seed})",
                  split_rule="every sixth playlist/conversation is valid")
    codes = rng.integers(0, k, (n_tracks, len(MODALITIES))).astype(np.int32)
    codes[::5, 3] = -1  # some tracks without lyrics
    Codebook(ids, codes, {m: rng.normal(size=(k, dim)).astype(np.float32) for m in MODALITIES}
             ).save(path / "tokenizer")
    return path
