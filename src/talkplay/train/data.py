"""Training and validation sequences: rendered conversations mixed with playlist continuation.

Each epoch is a fixed function of (seed, epoch): which playlists are sampled, where they are
cut, the order of the batches. So a position ``(epoch, index)`` restores the data stream
exactly, on any number of processes. Batches are length-bucketed (sequences of similar length
share a batch, padded to the batch's longest), which keeps most of each step real tokens;
``fill`` reports the share.

Memory stays proportional to the number of sequences, not their tokens, where it can: an
epoch's playlist samples are ``PlaylistCut`` records (playlist, cut, length from
``Renderer.playlist_length``) rendered only when their batch is drawn, and conversations are
rendered once into compact arrays (4 bytes a token id, 1 a label flag; a Python list of ints
costs about 44 bytes a token). At MPD's size (1M playlists a pass, about 380 tokens each) an
epoch of rendered playlist samples would otherwise hold about 16 GB.
"""

from __future__ import annotations

import logging
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from talkplay.data.dataset import Dataset
from talkplay.lm.render import (
    Rendered,
    playlist_fit,
    render_conversation,
    render_playlist,
    shown_codes,
)
from talkplay.lm.vocab import MusicVocab
from talkplay.tokenize.codebook import Codebook
from talkplay.tokenize.grammar import MISSING
from talkplay.train.losses import IGNORE

log = logging.getLogger(__name__)
CONVERSATION, PLAYLIST = 0, 1
PLAYLIST_TARGET = 16
"""Tracks a playlist sample predicts at most (``render_playlist``'s ``max_target``)."""
BUCKET_BATCHES = 50
"""Batches per sorting chunk: larger fills better, smaller shuffles better."""


@dataclass
class Sample:
    ids: Sequence[int]
    """Token ids (a list, or ``array("i")`` for stored conversation samples)."""
    mask: Sequence[int]
    """1 where the token is a label (a list, or ``array("b")``)."""
    kind: int
    """CONVERSATION or PLAYLIST (for separate logging of the two cross-entropies)."""
    music: list[tuple[int, int]] = field(default_factory=list)
    """(position of a trained ``<start_of_music>``, catalog row of its track): where the
    dense head reads the hidden state, and which track it should score highest."""


@dataclass
class Renderer:
    """Everything rendering needs, bundled."""

    tokenizer: PreTrainedTokenizerBase
    codebook: Codebook
    vocab: MusicVocab
    context_length: int
    facts: Callable[[str], str] | None = None
    """Grounded replies: track id -> facts line shown after its music block (``lm.facts``)."""
    _playlist_base: tuple[int, int] | None = field(default=None, init=False, repr=False)
    """(tokens of a playlist sample besides its music blocks, tokens per block), once known."""

    def conversation(self, conv, playlist_dropout: float = 0.0, seed: int = 0) -> list[Sample]:
        """Render one conversation; ``playlist_dropout`` hides the playlist code of that share of
        its warm tracks' music blocks (seeded by ``seed`` and the conversation id)."""
        hide = hidden_playlist_codes(conv, self.codebook, playlist_dropout, seed)
        rejected = {int(i) for i in conv.meta.get("rejected", [])}
        blocks = [(self._block(m.content, i in hide), self.codebook.row[m.content])
                  for i, m in enumerate(conv.messages)
                  if m.role == "music" and i not in rejected and m.content in self.codebook.row]
        out, j = [], 0
        for r in render_conversation(conv, self.tokenizer, self.codebook, self.vocab,
                                     context_length=self.context_length, hide_playlist=hide,
                                     facts=self.facts):
            music, j = music_positions(r, blocks, j)
            out.append(Sample(array("i", r.ids), array("b", r.mask), CONVERSATION, music))
        return out

    def playlist_length(self, n_tracks: int, cut: int) -> int:
        """Tokens of ``playlist(track_ids, cut)`` for a playlist of ``n_tracks``, without
        rendering it (as ``render_playlist`` lays it out; a test holds the two together)."""
        if self._playlist_base is None:  # the layout's fixed part, from a two-track render
            one = self.codebook.item_ids[0]
            block = len(self.vocab.ids(self.codebook.codes_of(one)))
            two = render_playlist([one, one], 1, self.tokenizer, self.codebook, self.vocab,
                                  context_length=10**9)
            self._playlist_base = (len(two.ids) - 2 * block, block)
        base, block = self._playlist_base
        n_in, n_target = playlist_fit(cut, min(n_tracks - cut, PLAYLIST_TARGET),
                                      self.context_length - base, block)
        return min(base + block * (n_in + n_target), self.context_length)

    def playlist(self, track_ids: list[str], cut: int) -> Sample:
        r: Rendered = render_playlist(track_ids, cut, self.tokenizer, self.codebook, self.vocab,
                                      context_length=self.context_length,
                                      max_target=PLAYLIST_TARGET)
        blocks = [(self._block(t), self.codebook.row[t]) for t in track_ids[cut:]]
        return Sample(r.ids, r.mask, PLAYLIST, music_positions(r, blocks, 0)[0])

    def _block(self, track_id: str, hide_playlist: bool = False) -> tuple[int, ...]:
        codes = shown_codes(self.codebook, track_id, hide_playlist)
        return tuple(self.vocab.ids(codes)[:-1])  # <start_of_music> and the five tokens


def music_positions(r: Rendered, blocks: list[tuple[tuple[int, ...], int]], j: int
                    ) -> tuple[list[tuple[int, int]], int]:
    """Match the trained music blocks of a rendering to the tracks they stand for.

    Args:
        r: a rendered sequence.
        blocks: (the block's ids from ``<start_of_music>`` on, catalog row), in the order the
            conversation (or playlist target) plays them.
        j: the first entry of ``blocks`` not matched yet (windows of one conversation come in
            order, so matching continues where the previous window stopped).
    Returns:
        ((position of ``<start_of_music>``, row) per matched block, the next ``j``). A block
        cut off by the context, or dropped from the window, is skipped.
    """
    out = []
    if not blocks:
        return out, j
    start, width = blocks[0][0][0], len(blocks[0][0])
    for p in (i for i, t in enumerate(r.ids) if t == start):
        if p + width > len(r.ids) or not r.mask[p + 1]:
            continue  # truncated, or an input block (not trained)
        seen = tuple(r.ids[p:p + width])
        k = next((k for k in range(j, len(blocks)) if blocks[k][0] == seen), None)
        if k is not None:
            out.append((p, blocks[k][1]))
            j = k + 1
    return out, j


def hidden_playlist_codes(conv, codebook: Codebook, share: float, seed: int) -> frozenset[int]:
    """Message indices of ``conv`` whose playlist code is hidden (modality dropout).

    Each music message of a track that has a playlist code is picked with probability
    ``share``; the draw depends only on (seed, conversation id), so it is the same on every
    process and every run.
    """
    if share <= 0:
        return frozenset()
    rng = np.random.default_rng([seed, zlib.crc32(conv.id.encode())])
    out = set()
    for i, m in enumerate(conv.messages):
        if m.role == "music" and m.content in codebook.row and rng.random() < share \
                and codebook.codes_of(m.content)[0] != MISSING:
            out.add(i)
    return frozenset(out)


@dataclass
class Split:
    """Conversations (pre-rendered) and playlists (rendered per epoch) of one split."""

    conversations: list[Sample] = field(default_factory=list)
    playlists: list[list[str]] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def build_splits(ds: Dataset, r: Renderer, holdout: float = 0.05, seed: int = 0,
                 playlist_dropout: float = 0.0) -> tuple[Split, Split]:
    """Render the train and validation splits.

    Validation = the ``valid`` split; when it has no conversations, a seeded ``holdout`` share
    (at least one) of train conversations is held out instead. Playlists with tracks missing
    from the codebook or fewer than 2 tracks are skipped (counted in ``stats``).

    ``playlist_dropout`` applies to train conversations only (see ``hidden_playlist_codes``).

    Returns:
        ``(train, valid)``.
    """
    conv = {s: [c for c in ds.conversations if c.split == s] for s in ("train", "valid")}
    if not conv["valid"] and len(conv["train"]) > 1:
        rng = np.random.default_rng(seed)
        n = max(1, int(round(holdout * len(conv["train"]))))
        held = set(rng.permutation(len(conv["train"]))[:n].tolist())
        conv["valid"] = [c for i, c in enumerate(conv["train"]) if i in held]
        conv["train"] = [c for i, c in enumerate(conv["train"]) if i not in held]
        log.info("no valid conversations: holding out %d train conversations", n)
    out = []
    for s in ("train", "valid"):
        split = Split()
        truncated = 0
        for c in conv[s]:
            samples = r.conversation(c, playlist_dropout if s == "train" else 0.0, seed)
            truncated += len(samples) > 1 or any(len(x.ids) >= r.context_length for x in samples)
            split.conversations += samples
        usable = [p.track_ids for p in ds.playlists if p.split == s and len(p.track_ids) >= 2]
        split.playlists = [p for p in usable if all(t in r.codebook.row for t in p)]
        split.stats = {"conversations": len(conv[s]), "sequences": len(split.conversations),
                       "truncated_conversations": int(truncated),
                       "playlists": len(split.playlists),
                       "playlists_skipped": len(usable) - len(split.playlists)}
        out.append(split)
    return out[0], out[1]


class PlaylistCut:
    """A playlist sample not rendered yet: ``Split.playlists[playlist]`` cut at ``cut``."""

    __slots__ = ("playlist", "cut", "length")
    kind = PLAYLIST

    def __init__(self, playlist: int, cut: int, length: int):
        self.playlist, self.cut, self.length = playlist, cut, length


def _length(x: Sample | PlaylistCut) -> int:
    return x.length if isinstance(x, PlaylistCut) else len(x.ids)


def _bucket(samples: list, batch_size: int, rng: np.random.Generator) -> list[list]:
    order = rng.permutation(len(samples))
    chunk = batch_size * BUCKET_BATCHES
    batches = []
    for lo in range(0, len(order), chunk):
        part = sorted(order[lo:lo + chunk], key=lambda i: _length(samples[i]))
        batches += [[samples[i] for i in part[j:j + batch_size]]
                    for j in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def playlist_samples(split: Split, n: int, r: Renderer, rng: np.random.Generator) -> list[PlaylistCut]:
    """``n`` continuation samples: playlists in seeded order (cycling), cut at random offsets;
    not rendered (``render``)."""
    if not split.playlists or n <= 0:
        return []
    order = rng.permutation(len(split.playlists))
    out = []
    for j in range(n):
        k = int(order[j % len(order)])
        size = len(split.playlists[k])
        cut = int(rng.integers(1, size))
        out.append(PlaylistCut(k, cut, r.playlist_length(size, cut)))
    return out


def render(split: Split, r: Renderer, batch: list) -> list[Sample]:
    """A batch's samples, each ``PlaylistCut`` rendered now."""
    return [r.playlist(split.playlists[x.playlist], x.cut) if isinstance(x, PlaylistCut) else x
            for x in batch]


class TrainData:
    """The training stream: epochs of bucketed batches, sharded over processes."""

    def __init__(self, split: Split, r: Renderer, *, batch_size: int, playlist_share: float,
                 seed: int, world_size: int = 1, rank: int = 0):
        self.split, self.r, self.batch_size = split, r, batch_size
        self.share, self.seed, self.world, self.rank = playlist_share, seed, world_size, rank
        self.epoch, self.index = 0, 0
        self._cache: tuple[int, list[list[Sample | PlaylistCut]]] | None = None

    def epoch_batches(self, epoch: int) -> list[list[Sample | PlaylistCut]]:
        """All batches of one epoch (same on every process), a multiple of world_size long;
        playlist samples not rendered yet (``next_batch`` renders them)."""
        if self._cache and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        n_conv = len(self.split.conversations)
        n_pl = round(self.share * n_conv) if n_conv else len(self.split.playlists)
        samples = self.split.conversations + playlist_samples(self.split, n_pl, self.r, rng)
        batches = _bucket(samples, self.batch_size, rng)
        batches = batches[: len(batches) - len(batches) % self.world]
        if not batches:
            raise ValueError(f"not enough training sequences ({len(samples)}) for "
                             f"{self.world} process(es)")
        self._cache = (epoch, batches)
        return batches

    @property
    def position(self) -> dict:
        """Where the next batch comes from (JSON-able; see ``restore``)."""
        return {"epoch": self.epoch, "index": self.index}

    def restore(self, position: dict) -> None:
        self.epoch, self.index = int(position["epoch"]), int(position["index"])

    def next_batch(self) -> list[Sample]:
        """This process's next micro-batch; all processes advance together."""
        batches = self.epoch_batches(self.epoch)
        if (self.index + 1) * self.world > len(batches):
            self.epoch, self.index = self.epoch + 1, 0
            batches = self.epoch_batches(self.epoch)
        batch = batches[self.index * self.world + self.rank]
        self.index += 1
        return render(self.split, self.r, batch)


def valid_batches(split: Split, r: Renderer, batch_size: int, seed: int, limit: int
                  ) -> list[list[Sample]]:
    """Fixed validation batches: conversations plus one seeded cut per valid playlist, at most
    ``limit`` batches (conversations and playlists share them in proportion)."""
    rng = np.random.default_rng([seed, 10_007])
    n_pl = min(len(split.playlists), max(len(split.conversations), batch_size))
    samples = split.conversations + playlist_samples(split, n_pl, r, rng)
    return [render(split, r, b) for b in _bucket(samples, batch_size, rng)[:limit]]


def collate(batch: list[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence. Returns input_ids, attention_mask, labels ([B, T]),
    kind ([B]), and the trained music blocks: music_at ([M, 2]: sequence, position of
    ``<start_of_music>``) and music_row ([M]: catalog row of the track)."""
    t = max(len(s.ids) for s in batch)
    ids = torch.full((len(batch), t), pad_id, dtype=torch.int64)
    labels = torch.full((len(batch), t), IGNORE, dtype=torch.int64)
    att = torch.zeros((len(batch), t), dtype=torch.int64)
    for i, s in enumerate(batch):
        n = len(s.ids)
        ids[i, :n] = torch.as_tensor(np.asarray(s.ids, dtype=np.int64))
        att[i, :n] = 1
        m = torch.as_tensor(np.asarray(s.mask, dtype=np.bool_))
        labels[i, :n] = torch.where(m, ids[i, :n], IGNORE)
    music = [(i, p, row) for i, s in enumerate(batch) for p, row in s.music]
    return {"input_ids": ids, "attention_mask": att, "labels": labels,
            "kind": torch.tensor([s.kind for s in batch]),
            "music_at": torch.tensor([(i, p) for i, p, _ in music], dtype=torch.int64).view(-1, 2),
            "music_row": torch.tensor([row for *_, row in music], dtype=torch.int64)}
