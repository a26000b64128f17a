"""TalkPlay as a Recommender: chat history -> music block -> ranked catalog tracks + reply.

One turn:

1. ``fit_prompt`` (``render_prompt``) lays the history out exactly as in training and ``<start_of_music>`` is
   appended; the prompt is prefilled once (KV cache). In a conversation turn t's prompt extends
   turn t-1's (the previous prompt ends with ``<start_of_music>`` and the assistant turn starts
   with its music block), so a small LRU of prompt states (``cache_size``) lets the prompt reuse
   the longest common prefix of a recent one and run only the new tokens
   (``engine.continue_prompt``). Results are the same with and without it (the logits differ
   only by float rounding, so only an exact near-tie could resolve differently; none did in the
   fp32 tests (tests/test_recommender_cache.py) or the SmolLM2 benchmark; bf16 rounds coarser).
2. The music block is generated first (the paper's order):
   - ``paper`` mode samples five tokens (position i restricted to modality i; temperature,
     top-p, top-k and repetition penalty explicit) and maps the tuple back to tracks with the
     exact / weighted partial lookup (``CodeIndex.rank``).
   - ``beam`` mode runs beam search over the five positions restricted to tuples that exist in
     the catalog (``CatalogTrie``); the items of the beams, in order of model log-probability,
     head the ranking, and the partial lookup of the best beam fills the rest.
3. The reply is generated after the block, continuing the same cache, with music tokens banned.
   Without a reply nothing after the choice is run (the paper mode's last two tokens, the beam's
   chosen block); with one, the beam's chosen block is fed in one forward pass.

Tracks already in the history are excluded by default (``GenerateConfig.exclude_seen``).
"""

from __future__ import annotations

import copy
import logging
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from talkplay.config import GenerateConfig
from talkplay.data.errors import DataError
from talkplay.data.schema import Message
from talkplay.lm.facts import facts_lookup
from talkplay.lm.quantize import QUANTIZE
from talkplay.lm.quantize import quantize as quantize_model
from talkplay.lm.render import facts_ids, fit_prompt
from talkplay.lm.vocab import MusicVocab, music_token_table
from talkplay.recommend.constraints import CatalogTrie, scored_positions
from talkplay.recommend.engine import (
    DecodeState,
    beam_and_score,
    cast_state,
    common_prefix,
    continue_prompt,
    copy_state,
    extend,
    generate_text,
    generate_texts,
    prefill,
    sample_music_block,
    weights_dtype,
)
from talkplay.recommend.guard import ReplyGuard
from talkplay.recommend.protocol import Recommendation, ScoredTrack
from talkplay.tokenize.codebook import Codebook
from talkplay.tokenize.grammar import item_text
from talkplay.tokenize.lookup import CodeIndex

log = logging.getLogger(__name__)
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>")
MODES = ("paper", "beam")


def _stop_ids(tokenizer) -> list[int]:
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in _END_OF_TURN if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


class TalkPlayRecommender:
    """A fine-tuned TalkPlay model behind the ``Recommender`` protocol.

    Args:
        model: causal LM with the music vocabulary (eval mode).
        tokenizer: its tokenizer.
        codebook: the catalog's codes (the run's copy).
        cfg: decoding parameters; ``cfg.mode`` picks "paper" or "beam" unless ``mode`` is given.
        mode: overrides ``cfg.mode``.
        popularity: float [n_items] aligned with ``codebook.item_ids`` (lookup tie-break).
        context_length: the training context length (prompts are cut to fit).
        with_reply: generate the reply text (evaluation turns it off: ranking does not need it).
        cache_size: prompt states kept for prefix reuse (0 disables). Each holds one sequence's
            KV cache (SmolLM2-135M fp32: about 46 KB per token).
    """

    def __init__(self, model, tokenizer, codebook: Codebook, cfg: GenerateConfig | None = None,
                 mode: str | None = None, popularity: np.ndarray | None = None,
                 context_length: int = 1024, with_reply: bool = True,
                 cache_size: int = 8) -> None:
        self.cfg = cfg or GenerateConfig()
        self.mode = mode or self.cfg.mode
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        self.name = f"talkplay-{self.mode}"
        self.model, self.tokenizer, self.codebook = model, tokenizer, codebook
        self.vocab: MusicVocab = music_token_table(tokenizer, codebook.k)
        self.table = self.vocab.table.numpy()
        self.index = CodeIndex(codebook.codes, codebook.centroids, popularity)
        self.trie = CatalogTrie(codebook.codes) if self.mode == "beam" else None
        self.scored = scored_positions(codebook.codes)
        """Music positions the beam and the hybrid score; the rest hold one code in the whole
        catalog (``constraints.scored_positions``), completed without the model."""
        self.context_length = context_length
        self.with_reply = with_reply
        self.stop_ids = _stop_ids(tokenizer)
        music = self.table[self.table >= 0]
        self.banned = np.concatenate([music, [self.vocab.start, self.vocab.end]])
        self._pop = popularity if popularity is not None else np.zeros(len(codebook.item_ids))
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = cache_size
        self._states: OrderedDict[tuple[int, ...], DecodeState] = OrderedDict()
        self._lock = threading.Lock()
        self.cache_stats = {"hits": 0, "reused_tokens": 0, "prompt_tokens": 0}
        """Prompts that reused a cached prefix, and tokens reused / seen in all (benchmarks)."""
        self.run: str | None = None
        """The run directory (set by ``from_run``; named in errors)."""
        self.facts: Callable[[str], str] | None = None
        """Grounded replies (a run trained with them; set by ``from_run``): track id -> the facts
        line shown after its music block in prompts and before the reply (``lm.facts``)."""
        self.quantize = "none"
        """How the model's weights were quantised for inference (``lm.quantize``)."""
        self.reply_model = None
        """A second (int8) copy of the model that writes replies ("int8-reply"); None: the
        model itself. It continues the float model's cache, so rankings are unchanged."""
        self.guard: ReplyGuard | None = None
        """Bans claim words false of the recommended track while the reply is written (set by
        ``from_run`` with ``cfg.reply_guard`` and the run's dataset; ``recommend.guard``)."""

    @classmethod
    def from_run(cls, run: str | Path, cfg: GenerateConfig | None = None, mode: str | None = None,
                 device: str = "auto", with_reply: bool = True,
                 cache_size: int = 8, quantize: str = "none") -> TalkPlayRecommender:
        """Load a run directory written by ``talkplay train``.

        Args:
            run: the run directory.
            cfg: decoding parameters (default: the run's saved ``generate`` config).
            mode: "paper" or "beam" (default: ``cfg.mode``).
            device: "auto" (CUDA when available), "cpu" or "cuda".
            with_reply: generate reply text.
            cache_size: prompt states kept for prefix reuse (0 disables).
            quantize: "none"; "bf16" (bfloat16 weights); "int8" (CPU: dynamic int8 linear
                layers); "int8-reply" or "bf16-int8-reply" (the float32 or bfloat16 model
                ranks, an int8 copy writes the reply); see ``lm.quantize``.
        Returns:
            The recommender.
        """
        from talkplay.config import from_dict
        from talkplay.data.dataset import read_dataset
        from talkplay.io import read_json
        from talkplay.lm.checkpoint import load_run

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if quantize not in QUANTIZE:
            raise ValueError(f"unknown quantization {quantize!r}; expected one of {QUANTIZE}")
        model, tokenizer, codebook, manifest = load_run(run, device=device)
        writer = None
        if quantize.endswith("int8-reply"):  # replies from an int8 copy of the float weights
            writer = quantize_model(copy.deepcopy(model), "int8")
            model = quantize_model(model, quantize.removesuffix("int8-reply").rstrip("-") or None)
        else:
            model = quantize_model(model, quantize)
        saved = read_json(Path(run) / "config.json") if (Path(run) / "config.json").exists() else {}
        if cfg is None:
            cfg = from_dict(GenerateConfig, saved.get("generate", {}))
        context = int(saved.get("train", {}).get("context_length", 1024))
        popularity = tracks = None
        grounded = bool(saved.get("train", {}).get("grounded_replies", False))
        data = manifest.get("data")
        if data and Path(data, "manifest.json").exists():
            tracks = read_dataset(data).tracks
            pops = {t.id: t.popularity or 0.0 for t in tracks}
            popularity = np.array([pops.get(t, 0.0) for t in codebook.item_ids], dtype=np.float64)
        elif grounded:
            raise DataError(f"run {run} was trained with grounded replies, which need its "
                            f"dataset's track facts; the dataset {data} is not there")
        else:
            log.warning("run %s: dataset %s not found; lookup ties ignore popularity", run, data)
        rec = cls(model, tokenizer, codebook, cfg, mode=mode, popularity=popularity,
                  context_length=context, with_reply=with_reply, cache_size=cache_size)
        rec.run, rec.quantize, rec.reply_model = str(run), quantize, writer
        if grounded:
            rec.facts = facts_lookup(tracks)
        if cfg.reply_guard and tracks is not None:  # cheap: tokenizes words on first use
            rec.guard = ReplyGuard(tokenizer, tracks)
        return rec

    def prompt_ids(self, history: list[Message]) -> list[int]:
        """Token ids of the generation prompt, ending with ``<start_of_music>``.

        Raises:
            DataError: a music message names a track that is not in the run's codebook.
        """
        return self.prompt(history)[0]

    def prompt(self, history: list[Message]) -> tuple[list[int], dict]:
        """``prompt_ids`` and its diagnostics: ``{"prompt_tokens", "prompt_cut"}`` (True when
        the oldest turns were dropped to fit ``cfg.max_prompt_tokens``)."""
        for m in history:
            if m.role == "music" and m.content not in self.codebook.row:
                raise DataError(f"track {m.content!r} is not in this run's catalog (its codebook "
                                "has no codes for it; was the run trained on another dataset?)",
                                file=self.run)
        limit = self.cfg.max_prompt_tokens  # None: what training showed (context - reserve)
        budget = {"context_length": limit, "reserve": 0} if limit else {
            "context_length": self.context_length}
        ids, dropped = fit_prompt(history, self.tokenizer, self.codebook, self.vocab,
                                  facts=self.facts, **budget)
        return ids + [self.vocab.start], {"prompt_tokens": len(ids) + 1, "prompt_cut": dropped > 0}

    @torch.inference_mode()
    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        """Rank catalog tracks for the next assistant turn (see module docstring)."""
        rec, writing, _ = self._turn(history, k, exclude)
        if writing is not None:
            rec.reply = self._reply(*writing)
        return rec

    @torch.inference_mode()
    def rank_and_score(self, history: list[Message], k: int, exclude: set[str] | None,
                       codes: np.ndarray) -> tuple[Recommendation, np.ndarray]:
        """Beam mode: ``recommend``'s ranking (no reply) and the exact log-probability of each
        of ``codes``'s music blocks after this turn's prompt, scored in the beam's own forwards
        (``engine.beam_and_score``: what ``talkplay-hybrid`` asks for its pool).

        Args:
            history, k, exclude: as ``recommend``.
            codes: int [n, 5] blocks to score.
        Returns:
            (the ranking, float64 [n] log-probabilities over the ``scored`` positions).
        """
        if self.mode != "beam":
            raise ValueError(f"rank_and_score needs beam mode, not {self.mode!r}")
        rec, _, scores = self._turn(history, k, exclude, score=codes, reply=False)
        return rec, scores

    def recommend_batch(self, requests: Sequence[tuple[list[Message], int, set[str] | None]]
                        ) -> list[Recommendation]:
        """``recommend`` for several turns (of different chats) at once: each is ranked as
        ``recommend`` ranks it (same rankings), then their replies are written together in one
        batch (``engine.generate_texts``: a reply token costs one read of the weights for the
        whole batch). A reply is what ``recommend`` samples for it, up to the float rounding of
        a batched forward, except that prompt lookup is not used inside a batch.

        Args:
            requests: (history, k, exclude) per turn.
        """
        if len(requests) == 1 or not self.with_reply:
            return [self.recommend(*r) for r in requests]
        turns = [self._turn(*r)[:2] for r in requests]
        writing = [(i, w) for i, (_, w) in enumerate(turns) if w is not None]
        texts = generate_texts(
            self.writer, [w[0] for _, w in writing], self.cfg, self.stop_ids,
            self.cfg.max_reply_tokens, banned_ids=self.banned,
            generators=[w[1] for _, w in writing],
            guards=[self._guard(w[2]) for _, w in writing])
        for (i, _), ids in zip(writing, texts, strict=True):
            turns[i][0].reply = self._text(ids)
        return [rec for rec, _ in turns]

    def _turn(self, history: list[Message], k: int, exclude: set[str] | None,
              score: np.ndarray | None = None, reply: bool = True
              ) -> tuple[Recommendation, tuple[DecodeState, torch.Generator, str | None] | None,
                         np.ndarray | None]:
        """The ranked turn without its reply, what writes the reply (the state after the
        chosen block and facts line, the generator, the track) when replies are on and
        ``reply``, and (beam mode) the log-probabilities of the ``score`` blocks."""
        excluded = set(exclude or ())
        if self.cfg.exclude_seen:
            excluded |= {m.content for m in history if m.role == "music"}
        rows_out = np.array([self.codebook.row[t] for t in excluded if t in self.codebook.row],
                            dtype=np.int64)
        prompt, prompt_info = self.prompt(history)
        generator = self.generator(prompt)
        state = self._prompt_state(prompt)
        block_scores = None
        if self.mode == "paper":
            # Sampling advances its state in place: never hand it the cached one.
            sample = sample_music_block(self.model, copy_state(state) if self.cache_size else state,
                                        self.table, self.vocab.end, self.cfg,
                                        generator=generator, finish=self.with_reply)
            codes, after = sample.codes, sample.state
            rows, scores = self.index.rank(codes, k, exclude_rows=rows_out)
            ranked = list(zip(rows.tolist(), scores.tolist(), strict=True))
        else:
            # leaves ``state`` unchanged
            beams, block_scores = beam_and_score(self.model, state, self.trie, self.table,
                                                 max(self.cfg.num_beams, 1), score, self.scored)
            codes = beams[0][0]
            ranked = self._beam_ranking(beams, k, set(rows_out.tolist()))
            after = None  # the reply follows the chosen block (``reply_to_block``)
        exact = self.index.exact(codes)
        info = {**prompt_info, "codes": [list(codes)], "exact_match": [len(exact) > 0],
                "matched_ids": [self.codebook.item_ids[int(exact[0])] if len(exact) else None],
                "mode": self.mode}
        if self.mode == "beam":  # every beam's exact log-probability (the hybrid reuses them)
            info["beams"] = [[list(c), float(s)] for c, s in beams]
        tracks = [ScoredTrack(self.codebook.item_ids[r], float(s),
                              item_text(self.codebook.codes[r].tolist())) for r, s in ranked]
        rec = Recommendation(tracks=tracks[:k], reply="", info=info)
        if not (self.with_reply and reply):
            return rec, None, block_scores
        first = tracks[0].track_id if tracks else None
        if after is not None:  # paper mode: the sampled block is in ``after`` already
            cast_state(after, weights_dtype(self.writer))
            if self.facts is not None and first is not None:
                extend(self.writer, after, facts_ids(self.tokenizer, self.facts, first))
        else:
            after = self._block_state(state, codes, first)
        return rec, (after, generator, first), block_scores

    def generator(self, prompt: list[int]) -> torch.Generator:
        """Seeded per prompt: the same history gives the same answer whatever came before."""
        return torch.Generator().manual_seed(
            int(self.cfg.seed) + zlib.crc32(np.asarray(prompt, dtype=np.int64).tobytes()))

    def reply_to_block(self, state: DecodeState, codes, generator: torch.Generator,
                       track_id: str | None = None) -> str:
        """The reply after ``codes``' music block: the block and ``<end_of_music>`` go through
        the model in one forward from the prompt ``state`` (left unchanged), then the text.

        Args:
            state: the state after the prompt (may be the cached one).
            codes: the five codes of the chosen track.
            generator: the prompt's seeded generator (``generator``).
            track_id: the track the reply is about; with grounded replies its facts line
                follows ``<end_of_music>`` (in the same forward).
        """
        return self._reply(self._block_state(state, codes, track_id), generator, track_id)

    def _block_state(self, state: DecodeState, codes, track_id: str | None) -> DecodeState:
        """The writer's state after ``codes``' block and the track's facts line."""
        ids = self.vocab.ids(codes)[1:]
        if self.facts is not None and track_id is not None:
            ids += facts_ids(self.tokenizer, self.facts, track_id)
        writer = self.writer
        dtype = weights_dtype(writer)
        if self.cache_size or dtype != weights_dtype(self.model):
            state = cast_state(copy_state(state), dtype)
        return extend(writer, state, ids)

    @property
    def writer(self):
        """The model that writes replies: ``reply_model`` (an int8 copy) or the ranking model.
        It reads everything after the chosen block's first token: the block, the facts line,
        the reply."""
        return self.model if self.reply_model is None else self.reply_model

    def _prompt_state(self, prompt: list[int]) -> DecodeState:
        """The state after ``prompt``, reusing the cached state with the longest common prefix.

        The returned state may be the cached object itself: callers copy before advancing it.
        """
        if self.cache_size == 0:
            return prefill(self.model, prompt)
        key = tuple(prompt)
        with self._lock:
            self.cache_stats["prompt_tokens"] += len(prompt)
            if key in self._states:
                self._states.move_to_end(key)
                self.cache_stats["hits"] += 1
                self.cache_stats["reused_tokens"] += len(prompt)
                return self._states[key]
            best, best_n = None, 0
            for ids, st in self._states.items():
                n = common_prefix(ids, prompt)
                if n > best_n:
                    best, best_n = st, n
        if best is None:
            state = prefill(self.model, prompt)
        else:
            state = continue_prompt(self.model, best, prompt)
            with self._lock:
                self.cache_stats["hits"] += 1
                self.cache_stats["reused_tokens"] += min(best_n, len(prompt) - 1)
        with self._lock:
            self._states[key] = state
            self._states.move_to_end(key)
            while len(self._states) > self.cache_size:
                self._states.popitem(last=False)
        return state

    def clear_cache(self) -> None:
        """Forget every cached prompt state (and reset ``cache_stats``)."""
        with self._lock:
            self._states.clear()
            self.cache_stats = {"hits": 0, "reused_tokens": 0, "prompt_tokens": 0}

    def _beam_ranking(self, beams: list[tuple[tuple[int, ...], float]], k: int,
                      excluded: set[int]) -> list[tuple[int, float]]:
        """Items of each beam tuple (popular first) by beam log-prob; partial lookup fills."""
        out: list[tuple[int, float]] = []
        taken = set(excluded)
        for codes, logprob in beams:
            rows = sorted(self.index.exact(codes).tolist(), key=lambda r: (-self._pop[r], r))
            for r in rows:
                if r not in taken:
                    out.append((r, logprob))
                    taken.add(r)
            if len(out) >= k:
                return out[:k]
        floor = (beams[-1][1] if beams else 0.0) - 1.0
        rows, scores = self.index.rank(beams[0][0], k - len(out),
                                       exclude_rows=np.fromiter(taken, dtype=np.int64))
        # Fill scores stay below every beam score and keep the lookup's order.
        out += [(int(r), floor - i) for i, r in enumerate(rows.tolist())]
        return out

    def _guard(self, track_id: str | None):
        return self.guard.for_track(track_id) if self.guard and track_id is not None else None

    def _reply(self, state: DecodeState, generator: torch.Generator,
               track_id: str | None = None) -> str:
        ids = generate_text(self.writer, state, self.cfg, self.stop_ids,
                            self.cfg.max_reply_tokens, banned_ids=self.banned, generator=generator,
                            guard=self._guard(track_id), lookup=self.cfg.reply_lookup)
        return self._text(ids)

    def _text(self, ids: list[int]) -> str:
        """A reply's text from its generated token ids."""
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def load_talkplay(run: str | Path, *, mode: str | None = None, device: str = "auto",
                  with_reply: bool = True, cache_size: int = 8, quantize: str = "none",
                  **generate) -> TalkPlayRecommender:
    """``TalkPlayRecommender.from_run`` with the run's saved generate config, errors as DataError.

    The one loader behind ``talkplay evaluate``, ``talkplay serve/chat`` and the benchmarks.

    Args:
        run: the run directory.
        mode: "paper" or "beam" (default: the saved ``generate.mode``).
        device: "auto", "cpu" or "cuda".
        with_reply: generate reply text (evaluation passes False).
        cache_size: prompt states kept for prefix reuse.
        quantize: one of ``lm.quantize.QUANTIZE`` (inference weights).
        **generate: ``GenerateConfig`` fields that override the saved ones
            (e.g. ``exclude_seen=False``, ``max_reply_tokens=32``).
    Returns:
        The recommender.
    Raises:
        DataError: the run is missing or incomplete, or its config.json is corrupt or holds
            an unknown generate field.
    """
    from dataclasses import replace

    from talkplay.config import from_dict
    from talkplay.io import read_json

    run = Path(run)
    if not (run / "manifest.json").is_file() or not (run / "model").is_dir():
        raise DataError("not a TalkPlay run (expected manifest.json and model/); train one with "
                        "`talkplay train`", file=str(run))
    cfg_path = run / "config.json"
    try:
        saved = read_json(cfg_path).get("generate", {}) if cfg_path.is_file() else {}
        cfg = replace(from_dict(GenerateConfig, saved), **generate)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"unreadable generate config: {e}", file=str(cfg_path),
                        field="generate") from e
    try:
        return TalkPlayRecommender.from_run(run, cfg, mode=mode, device=device,
                                            with_reply=with_reply, cache_size=cache_size,
                                            quantize=quantize)
    except DataError:
        raise
    except (OSError, ValueError, KeyError) as e:  # missing/unreadable files, bad mode
        raise DataError(f"cannot load the run: {e}", file=str(run)) from e
