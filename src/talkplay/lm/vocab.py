"""Vocabulary surgery: add the music tokens to an LLM and initialise their embeddings.

The music tokens (``grammar.vocabulary(codebook.k)``: 5*K codes + 5 ``none`` tokens + 2 markers)
are registered as *special* added tokens. That matters for safety: the renderer encodes text
typed by people with ``split_special_tokens=True``, so a user who types ``<|audio-5|>`` (or
``<|im_start|>``) gets plain text pieces, never a music or control token. Music tokens only ever
enter a sequence as ids built from the codebook. One consequence: ``decode(...,
skip_special_tokens=True)`` drops music tokens (handy for the reply text); decode with
``skip_special_tokens=False`` to see them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from talkplay.tokenize import grammar

log = logging.getLogger(__name__)


@dataclass
class MusicVocab:
    """Token ids of the music vocabulary inside one tokenizer."""

    table: torch.Tensor
    """int64 [5, K_max + 1]: ``table[m, c]`` = id of code c of modality m; column K_max holds the
    ``none`` token; entries c >= K_m (modalities with fewer clusters) are -1."""
    start: int
    """Id of ``<start_of_music>``."""
    end: int
    """Id of ``<end_of_music>``."""
    k: dict[str, int]
    _rows: list[list[int]] | None = field(default=None, init=False, repr=False, compare=False)
    """``table`` as Python lists (indexing a tensor element by element costs microseconds: most
    of the time of rendering a playlist sample)."""

    def ids(self, codes: tuple[int, ...] | list[int]) -> list[int]:
        """Five codes (MISSING allowed) -> the 7 ids of the wrapped music block."""
        if self._rows is None:
            self._rows = self.table.tolist()
        rows, kmax = self._rows, self.table.shape[1] - 1
        return [self.start, *(rows[m][kmax if c == grammar.MISSING else c]
                              for m, c in enumerate(codes)), self.end]

    def code_ids(self, modality: int) -> torch.Tensor:
        """Ids of codes 0..K_m-1 of one modality (no ``none``), int64 [K_m]."""
        return self.table[modality, : self.k[grammar.MODALITIES[modality]]]


def music_token_table(tokenizer: PreTrainedTokenizerBase, k: int | Mapping[str, int]) -> MusicVocab:
    """Look up every music token's id in ``tokenizer``.

    Args:
        tokenizer: a tokenizer that went through ``expand_vocabulary``.
        k: clusters per modality (``codebook.k``) or one int for all.
    Returns:
        The id table (see ``MusicVocab``). Raises KeyError if a token is missing.
    """
    ks = {m: k for m in grammar.MODALITIES} if isinstance(k, int) else dict(k)
    kmax = max(ks.values())
    vocab = tokenizer.get_vocab()

    def tid(text: str) -> int:
        if text not in vocab:
            raise KeyError(f"music token {text} is not in the tokenizer; expand it first")
        return vocab[text]

    table = torch.full((len(grammar.MODALITIES), kmax + 1), -1, dtype=torch.int64)
    for m, name in enumerate(grammar.MODALITIES):
        for c in range(ks[name]):
            table[m, c] = tid(grammar.token(name, c))
        table[m, kmax] = tid(grammar.token(name, grammar.MISSING))
    return MusicVocab(table=table, start=tid(grammar.START), end=tid(grammar.END), k=ks)


@torch.no_grad()
def _sample_like(old: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n rows from N(mu, Sigma) fitted to ``old`` [V, h] (Hewitt 2021); returns [n, h]."""
    x = old.detach().to(torch.float64)
    mu = x.mean(0)
    xc = x - mu
    cov = xc.T @ xc / max(1, x.shape[0] - 1)  # [h, h]
    # A tiny jitter keeps the Cholesky factor defined when the embeddings are rank deficient.
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    jitter = 1e-8 * cov.diagonal().mean().clamp_min(1e-12)
    chol = torch.linalg.cholesky(cov + jitter * eye)
    z = torch.randn(n, cov.shape[0], generator=generator, dtype=torch.float64)
    return (mu + z @ chol.T).to(old.dtype)


def expand_vocabulary(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      music_tokens: list[str], seed: int = 0,
                      rows: Mapping[str, torch.Tensor] | None = None) -> MusicVocab:
    """Add music tokens to ``tokenizer`` and ``model``; initialise new rows like the old ones.

    New input-embedding rows are sampled from N(mu, Sigma), the mean and covariance of the
    existing rows (Hewitt 2021), so new tokens look like ordinary tokens to the network. Tied
    input/output embeddings stay tied (one matrix); an untied output matrix gets its new rows
    sampled the same way from its own statistics. Calling it again with the same tokens is a
    no-op apart from returning the table.

    Args:
        model: causal LM, modified in place (embedding matrices resized).
        tokenizer: its tokenizer, modified in place (special added tokens).
        music_tokens: ``grammar.vocabulary(codebook.k)``.
        seed: seed of the sampled rows.
        rows: starting input rows for some of the new tokens (``lm.grounding``); they replace
            the sampled rows of those tokens (and, when tied, their output rows).
    Returns:
        The music-token id table (``MusicVocab``).
    """
    old_vocab = tokenizer.get_vocab()
    new = [t for t in music_tokens if t not in old_vocab]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
        new_ids = torch.tensor(tokenizer.convert_tokens_to_ids(new), dtype=torch.int64)
        # Some models pad their matrix beyond len(tokenizer): new ids may land inside it.
        n_rows = model.get_input_embeddings().weight.shape[0]
        old_rows = torch.arange(min(n_rows, len(old_vocab)))
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        old_in = model.get_input_embeddings().weight[old_rows].detach().clone()
        out_emb = model.get_output_embeddings()
        old_out = None if tied or out_emb is None else out_emb.weight[old_rows].detach().clone()
        if len(tokenizer) > n_rows:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            emb[new_ids.to(emb.device)] = _sample_like(old_in, len(new), g).to(emb.device)
            for t, i in zip(new, new_ids.tolist(), strict=True):
                if rows and t in rows:
                    emb[i] = rows[t].to(emb.device, emb.dtype)
            if old_out is not None:
                w = model.get_output_embeddings().weight
                w[new_ids.to(w.device)] = _sample_like(old_out, len(new), g).to(w.device)
        if tied:
            model.tie_weights()
        log.info("added %d music tokens (embedding rows %d -> %d, tied=%s)", len(new), n_rows,
                 model.get_input_embeddings().weight.shape[0], tied)
    ks = _k_from_tokens(music_tokens)
    return music_token_table(tokenizer, ks)


def _k_from_tokens(music_tokens: list[str]) -> dict[str, int]:
    """Clusters per modality implied by a token list (largest code + 1)."""
    ks = {m: 0 for m in grammar.MODALITIES}
    for t in music_tokens:
        parsed = grammar.parse_token(t)
        if parsed and parsed[1] != grammar.MISSING:
            name = grammar.MODALITIES[parsed[0]]
            ks[name] = max(ks[name], parsed[1] + 1)
    return ks
