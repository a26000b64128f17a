"""``talkplay-hybrid``: one TalkPlay model that ranks any catalog track, new tracks included.

Generative retrieval alone cannot reach a track that the model's music tokens do not single
out (most wanted tracks in real conversations are new to the catalog). The hybrid keeps the
model as the judge and widens what it judges:

1. **Pool.** The union of the top ``pool`` tracks of the catalog-constrained beam (the model's
   own proposals), BM25, dense retrieval, item co-occurrence (``cooc``) and the model's dense
   head when the run has one. New tracks enter through text and content, not only through
   tokens.
2. **Model scores.** Every pooled track's music block is scored by the model: its exact
   log-probability given the conversation. A hybrid with its own beam scores the pool inside
   the beam's forwards (``engine.beam_and_score``: each step also feeds the pool's prefixes
   that no beam holds); one whose beam is shared through a ``fusion.Memo`` (``talkplay
   evaluate``) takes the beam's scores where it reached the block and packs the rest into one
   forward after the shared prompt cache (``engine.score_blocks``). Positions where every
   catalog track has the same code (the none tokens of modalities a catalog lacks) are fixed
   by the catalog and not scored. The dense head (``lm.dense_head``, trained with ``talkplay
   train --dense-head W``) scores every catalog track, cold ones included: the cosine between
   the projected hidden state at ``<start_of_music>`` and the track's content embedding.
   The model also scores each candidate's **name** in text (``evaluate.text_scores``): the
   log-probability of "Title by Artist" as the assistant's first words given the conversation,
   minus the same after a null request (its prior); tracks that share music codes (new ones
   do) differ by name, and what the model knows of songs and artists from pretraining lives in
   text. ``named`` (``evaluate.named``) marks the tracks whose artist the conversation names,
   by how recently; its tracks also join the pool.
3. **Combination.** ``score = sum_c w_c * f_c`` over the components' per-query normalised
   scores (``FEATURES``): the model's log-probabilities (block and name) relative to the
   pool's best, BM25 and cooc divided by their best score over the whole catalog, the dense
   retriever's and the dense head's cosines, and ``named``'s recency weight (1 when the latest
   request names the artist). The weights are fit on the **validation** split (a listwise
   softmax fit, ``evaluate.listwise``; coordinate ascent on MRR as an option: ``fit_weights``),
   never on test, and saved in the run (``RUN/hybrid.json``). A weight may be negative (a
   source whose candidates are usually wrong).
   Each returned track carries its per-component contributions in
   ``Recommendation.info["why"]``.
4. **What the model scores** (``lm_top``, also chosen on validation): the model's scores
   (block and name) are used for the beam's own candidates (the block free: the search scored
   it) and for the ``lm_top`` best of the rest by the other components; every other candidate
   gets the lowest model score among those. The model then runs only on the prefixes of a
   few blocks the search did not hold and on those candidates' names (its cost beside beam
   mode), and the rule is applied when ranking, so a pool scored in full ranks the same way.

Ablations drop components (``without``): the pool then lacks that source and the weights are
refit without it. Hybrids evaluated together share each query's full pool (``shared``), so the
model scores it once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from talkplay.data.errors import DataError
from talkplay.data.schema import Message
from talkplay.evaluate.fusion import history_key
from talkplay.evaluate.listwise import fit_listwise
from talkplay.evaluate.metrics import collapse_to_clusters, target_metrics
from talkplay.evaluate.text_scores import TextScorer
from talkplay.io import write_json
from talkplay.lm.dense_head import head_checksum, load_dense_head
from talkplay.recommend.engine import last_hidden, score_blocks
from talkplay.recommend.protocol import Recommendation, ScoredTrack

log = logging.getLogger(__name__)
FEATURES: tuple[str, ...] = ("lm", "text", "bm25", "dense", "cooc", "head", "named")
"""Score components, in the order of a feature row."""
MODEL_FEATURES: tuple[str, ...] = ("lm", "text")
"""The components the model computes per candidate (the first columns of a feature row), only
for the candidates ``lm_mask`` picks."""
_M = len(MODEL_FEATURES)
SOURCES: tuple[str, ...] = ("beam", "bm25", "dense", "cooc", "head", "named")
"""Where pool candidates come from."""
HYBRID_RETRIEVERS: tuple[str, ...] = ("bm25", "dense", "cooc", "named")
"""The retrieval components a hybrid is built with (``retrievers`` keys)."""
DEFAULT_TEXT_MODEL = "minilm"
"""The dense retriever's encoder when none is recorded (``BaselineOptions.text_model``)."""
HYBRID_FILE = "hybrid.json"

BEAM_DEPTH = 200
"""Tracks asked of the beam (the pool takes its first ``pool``; the rest serve a Memo)."""
FIT_METHODS: tuple[str, ...] = ("softmax", "ascent")
"""How ``fit_weights`` chooses the weights (the first is the default)."""
GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
"""Values coordinate ascent tries for each weight."""
LM_TOPS = (5, 10, 20, 30, 50)
"""``lm_top`` values ``fit_weights`` tries (the smallest within ``LM_TOP_TOLERANCE`` wins)."""
LM_TOP_TOLERANCE = 0.001
"""What an ``lm_top`` may lose against the model scoring every candidate, on valid, in each
of ``LM_TOP_METRICS``."""
LM_TOP_METRICS = ("mrr", "hit@1", "hit@10")
"""The metrics an ``lm_top`` must keep: a top-10 the model cannot reorder is a different
system even when MRR barely moves."""


def build_retriever(key: str, ds, options=None):
    """One retrieval component of a hybrid (``HYBRID_RETRIEVERS``) over dataset ``ds``: the
    baseline of that name, or ``named`` (not a system alone). ``options``: a
    ``BaselineOptions``, default ones when None."""
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.named import build_named

    options = options or BaselineOptions()
    return build_named(ds, options) if key == "named" else SYSTEMS[key](ds, options)


def build_retrievers(ds, options=None) -> dict:
    """Every retrieval component of a hybrid over ``ds`` (``build_retriever``)."""
    return {k: build_retriever(k, ds, options) for k in HYBRID_RETRIEVERS}


@dataclass
class HybridConfig:
    """What the hybrid combines and how (the weights come from ``fit_weights``)."""

    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 1.0))
    pool: int = 20
    """Candidates taken from each source."""
    without: list[str] = field(default_factory=list)
    """Components left out (ablation): any of FEATURES; "lm" also drops the beam's proposals."""
    lm_top: int | None = None
    """The model scores the beam's candidates and the ``lm_top`` best of the others by the
    other components (``lm_mask``); None: every candidate."""
    fitted: dict = field(default_factory=dict)
    """How the weights were chosen: split, targets, valid MRR, seconds."""

    def __post_init__(self) -> None:
        if self.lm_top is not None and self.lm_top < 1:
            raise ValueError(f"hybrid lm_top must be >= 1 or None, got {self.lm_top}")


@dataclass
class Pool:
    """One query's candidates: catalog rows, where each came from, and their features."""

    rows: np.ndarray
    """int64 [n] catalog rows."""
    features: np.ndarray
    """float64 [n, len(FEATURES)], normalised per query (see the module docstring)."""
    sources: np.ndarray
    """bool [n, len(SOURCES)]: which sources proposed each candidate."""
    fill: np.ndarray | None = None
    """int64 catalog rows by BM25 score, to continue a ranking past the pool."""
    text_scored: bool = False
    """Whether the "text" column holds the model's name scores (computed only for a hybrid
    that combines them; a shared pool gets them when the first such hybrid asks)."""

    def without(self, left_out: list[str]) -> Pool:
        """The pool an ablation sees: candidates only the left-out sources proposed are gone
        ("lm" also removes the beam's proposals)."""
        drop = {"beam" if f == "lm" else f for f in left_out}
        keep_cols = [j for j, src in enumerate(SOURCES) if src not in drop]
        keep = self.sources[:, keep_cols].any(axis=1) if keep_cols else np.zeros(len(self.rows), bool)
        fill = None if "bm25" in drop else self.fill  # the tail past the pool is BM25's order
        return Pool(self.rows[keep], self.features[keep], self.sources[keep], fill, self.text_scored)


def _scale_max(x: np.ndarray, top: float) -> np.ndarray:
    return x / top if top > 0 else np.zeros_like(x)


def _weight_vector(weights: dict[str, float], active: list[str]) -> np.ndarray:
    return np.array([weights.get(f, 0.0) if f in active else 0.0 for f in FEATURES])


def lm_mask(rows: np.ndarray, features: np.ndarray, from_beam: np.ndarray, weights: np.ndarray,
            lm_top: int | None) -> np.ndarray:
    """bool [n]: the candidates whose model scores (``MODEL_FEATURES``) a hybrid uses: all
    when ``lm_top`` is None, else the beam's own (``from_beam``) and the ``lm_top`` best by
    the retrieval components' weighted sum (``weights``: float [len(FEATURES)]; ties by
    catalog row)."""
    if lm_top is None:
        return np.ones(len(rows), dtype=bool)
    rest = features[:, _M:] @ weights[_M:]
    mask = from_beam.copy()
    mask[np.lexsort((rows, -rest))[:lm_top]] = True
    return mask


class HybridRecommender:
    """TalkPlay's model scores a pool drawn from its beam and the retrieval baselines."""

    def __init__(self, talkplay, retrievers: dict, cfg: HybridConfig, name: str = "talkplay-hybrid",
                 beam=None, shared: dict | None = None, head=None, tracks: list | None = None):
        """Args:
            talkplay: a ``TalkPlayRecommender`` (beam mode; ranking only is fine).
            retrievers: "bm25" / "dense" / "cooc" / "named" -> objects with
                ``scores(history)`` giving float [n_items] in their ``ids`` order (the
                dataset's tracks).
            cfg: weights, pool size, left-out components.
            name: system name (ablations get their own).
            beam: what proposes the model's candidates (default ``talkplay``; a ``fusion.Memo``
                around it shares the work with the talkplay-beam system).
            shared: a dict shared by hybrids evaluated together: each query's full pool is
                computed once and every ablation filters it (``Pool.without``).
            head: ``(DenseHead, content matrix [n_items, d] in codebook order)``; default: the
                run's own (``load_dense_head``), None when the run was trained without one.
            tracks: the catalog's ``Track`` list: the model's text score of each candidate's
                name (``evaluate.text_scores``); None: no "text" component (nor when ``cfg``
                leaves it out, so a hybrid without it builds nothing for it).
        """
        self.tp = talkplay
        self.beam = beam or talkplay
        self.cfg = cfg
        self.name = name
        self.shared = shared
        self.ids = talkplay.codebook.item_ids
        self.row = talkplay.codebook.row
        if head is None and getattr(talkplay, "run", None):
            head = load_dense_head(talkplay.run, self.ids)
        self.head = head
        self.text = (TextScorer(talkplay, tracks) if tracks is not None
                     and "text" not in cfg.without else None)
        self.active = [f for f in FEATURES if f not in cfg.without
                       and (f == "lm" or f in retrievers or (f == "head" and head is not None)
                            or (f == "text" and self.text is not None))]
        """The components this hybrid combines (a run without a dense head has no "head", a
        hybrid given no ``named`` retriever no "named", one given no tracks no "text")."""
        self.retrievers = {}
        for key, r in retrievers.items():
            # Retriever order -> codebook order (the same dataset; usually the identity).
            perm = np.array([self.row[t] for t in r.ids], dtype=np.int64)
            self.retrievers[key] = (r, perm)
        self.used = [s for s in SOURCES if (s == "beam" and "lm" not in cfg.without)
                     or (s == "head" and head is not None and "head" not in cfg.without)
                     or (s in retrievers and s not in cfg.without)]
        """The sources its pool draws from."""

    @property
    def description(self) -> str:
        """Sources, features and the current weights (after ``fit_weights``, the fitted ones)."""
        top = self.cfg.lm_top
        scored = ("no model log-prob of every candidate" if "lm" not in self.active else
                  "model log-prob of every candidate" if top is None else
                  f"model log-prob of the beam's and the {top} best of the rest")
        head = "; dense head" if "head" in self.active else ""
        head += "; the model's text score of names" if "text" in self.active else ""
        weights = ", ".join(f"{k} {self.cfg.weights.get(k, 0.0):g}" for k in self.active)
        return (f"TalkPlay hybrid: pool of {self.cfg.pool} per source from "
                f"{', '.join(self.used)}; {scored}{head}; weights {weights} "
                f"fit on {self.cfg.fitted.get('split', 'nothing')}")

    def pool(self, history: list[Message], exclude: set[str] | None = None) -> Pool:
        """The candidates of one query and their features (see the module docstring)."""
        if self.shared is None:
            return self._full_pool(history, exclude, self.cfg.without).without(self.cfg.without)
        key = history_key(history, exclude)
        if key not in self.shared:
            self.shared[key] = self._full_pool(history, exclude, [])
        full = self.shared[key]
        if "text" in self.active and not full.text_scored:  # first hybrid that combines it
            self._score_text(history, full, None)
        return full.without(self.cfg.without)

    def _full_pool(self, history: list[Message], exclude: set[str] | None,
                   skip: list[str]) -> Pool:
        n = len(self.ids)
        banned = {self.row[t] for t in (exclude or ()) if t in self.row}
        if self.tp.cfg.exclude_seen:
            banned |= {self.row[m.content] for m in history
                       if m.role == "music" and m.content in self.row}
        full: dict[str, np.ndarray] = {}
        for key, (r, perm) in self.retrievers.items():
            if key in skip:
                continue
            s = np.zeros(n)
            s[perm] = r.scores(history)
            full[key] = s
        state = None
        if self.head is not None and "head" not in skip:
            state = self._state(history)
            full["head"] = self._head_scores(state)
        proposed: dict[int, set[str]] = {}
        use_lm = "lm" not in skip
        known: dict[tuple[int, ...], float] = {}
        for key, s in full.items():
            taken = 0
            if key == "named" and "bm25" in full:  # an artist's tracks: BM25 orders them
                ranked = np.lexsort((-full["bm25"], -s))
            else:
                ranked = np.argsort(-s, kind="stable")
            for r_ in ranked:
                if taken >= self.cfg.pool or (key in ("bm25", "cooc", "named") and s[r_] <= 0):
                    break  # BM25 / cooc / named: a zero score is no evidence
                if int(r_) not in banned:
                    proposed.setdefault(int(r_), set()).add(key)
                    taken += 1
        wanted: np.ndarray | None = None  # rows the model must score (None: every row)
        if use_lm:
            if self.beam is self.tp and getattr(self.tp, "mode", None) == "beam":
                # One search scores the retrieved candidates too, in the beam's own forwards:
                # with lm_top, only those a ranking can use (a pool of this hybrid's own: the
                # rest of ``lm_mask`` is the beam's, and a beam candidate can only push a
                # retrieved one out of the top, never in).
                retrieved = np.fromiter(proposed, dtype=np.int64, count=len(proposed))
                if self.shared is None and self.cfg.lm_top is not None and len(retrieved):
                    feats = self._retrieval_features(full, retrieved)
                    vec = _weight_vector(self.cfg.weights, self.active)
                    none = np.zeros(len(retrieved), dtype=bool)
                    wanted = retrieved = retrieved[lm_mask(retrieved, feats, none, vec,
                                                           self.cfg.lm_top)]
                codes = np.unique(self.tp.codebook.codes[retrieved].reshape(-1, 5), axis=0)
                rec, got = self.tp.rank_and_score(history, BEAM_DEPTH, exclude, codes)
                known = {tuple(int(x) for x in c): float(v) for c, v in zip(codes, got, strict=True)}
            else:
                # Ask as deep as the evaluation and rrf do, so a Memo'd beam runs once per query.
                rec = self.beam.recommend(history, k=BEAM_DEPTH, exclude=exclude)
            known.update({tuple(c): s for c, s in rec.info.get("beams", [])})
            for t in rec.tracks[:self.cfg.pool]:
                if t.track_id in self.row and self.row[t.track_id] not in banned:
                    proposed.setdefault(self.row[t.track_id], set()).add("beam")
        rows = np.fromiter(proposed, dtype=np.int64, count=len(proposed))
        sources = np.array([[src in proposed[int(r_)] for src in SOURCES] for r_ in rows],
                           dtype=bool).reshape(len(rows), len(SOURCES))
        feats = self._retrieval_features(full, rows)
        fill = np.argsort(-full["bm25"], kind="stable") if "bm25" in full else None
        need = (None if wanted is None
                else np.isin(rows, wanted) | sources[:, SOURCES.index("beam")])
        if len(rows) and use_lm:
            feats[:, 0] = self._lm_scores(state or self._state(history), rows, known, need)
        pool = Pool(rows, feats, sources, fill)
        if "text" in self.active and "text" not in skip:
            self._score_text(history, pool, need)
        return pool

    def _score_text(self, history: list[Message], pool: Pool, need: np.ndarray | None) -> None:
        """Fill ``pool``'s "text" column (in place) with the model's name scores of the rows in
        ``need`` (bool [n]; None: every row); the others are NaN (a ranking does not use them:
        ``lm_mask``)."""
        pool.features[:, 1] = np.nan
        scored = np.ones(len(pool.rows), dtype=bool) if need is None else need
        if scored.any():
            pool.features[scored, 1] = self.text.scores(history, pool.rows[scored])
        pool.text_scored = True

    @staticmethod
    def _retrieval_features(full: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        """float [n, len(FEATURES)]: the retrieval components' features of ``rows`` (the
        model's columns left 0): dense / head the cosine itself, named its recency weight, bm25
        / cooc relative to the catalog's best."""
        feats = np.zeros((len(rows), len(FEATURES)))
        for j, key in enumerate(FEATURES[_M:], start=_M):
            if key in full and len(rows):
                vals = full[key][rows]
                feats[:, j] = (vals if key in ("dense", "head", "named")
                               else _scale_max(vals, float(full[key].max())))
        return feats

    def _state(self, history: list[Message]):
        """The model's state after the conversation's prompt (the recommender's cached one)."""
        prompt, _ = self.tp.prompt(history)
        return self.tp._prompt_state(prompt)

    def _head_scores(self, state) -> np.ndarray:
        """The dense head's cosine for every catalog track, float64 [n_items]."""
        head, content = self.head
        with torch.inference_mode():
            query = head(last_hidden(self.tp.model, state)[None])[0].numpy()
        return content @ query.astype(content.dtype)

    def _lm_scores(self, state, rows: np.ndarray,
                   known: dict[tuple[int, ...], float] | None = None,
                   need: np.ndarray | None = None) -> np.ndarray:
        """Log-probability of each row's music block, minus the best one (<= 0; a shift
        common to every candidate of a query leaves the ranking unchanged). Blocks in ``known``
        (the beam's own exact scores) are not scored again; rows outside ``need`` (bool [n];
        None: all rows) whose block is not known are left NaN (a ranking does not use them:
        ``lm_mask``)."""
        known = known or {}
        codes = self.tp.codebook.codes[rows]  # [n, 5]
        uniq, inverse = np.unique(codes, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).ravel()
        keys = [tuple(int(x) for x in u) for u in uniq]
        needed = np.ones(len(uniq), dtype=bool)
        if need is not None:
            needed[:] = False
            needed[inverse[need]] = True
        todo = np.array([i for i, key in enumerate(keys) if key not in known and needed[i]],
                        dtype=np.int64)
        per = np.array([known.get(key, 0.0 if needed[i] else np.nan) for i, key in enumerate(keys)])
        if len(todo):
            per[todo] = score_blocks(self.tp.model, state, uniq[todo], self.tp.table,
                                     scored=self.tp.scored)
        out = per[inverse]
        return out - np.nanmax(out)

    def effective(self, pool: Pool, weights: dict[str, float] | None = None,
                  lm_top: int | None | str = "cfg") -> np.ndarray:
        """The features a ranking combines, float [n, len(FEATURES)]: the pool's, with each
        model score (``MODEL_FEATURES``) relative to the best used one, and the lowest used one
        for candidates outside ``lm_mask`` (``lm_top``: default ``cfg.lm_top``) and for tracks
        without a name to score (``text_scores.NO_TEXT``); a model column this hybrid does not
        combine is 0."""
        feats = pool.features.copy()
        model = [j for j, f in enumerate(MODEL_FEATURES) if f in self.active]
        feats[:, [j for j in range(_M) if j not in model]] = 0.0
        if not model or not len(pool.rows):
            return feats
        top = self.cfg.lm_top if lm_top == "cfg" else lm_top
        vec = _weight_vector(weights or self.cfg.weights, self.active)
        from_beam = pool.sources[:, SOURCES.index("beam")] & ("lm" in self.active)
        mask = lm_mask(pool.rows, feats, from_beam, vec, top)
        for j in model:
            used = feats[mask, j]
            if np.isnan(used).any():
                raise ValueError("this pool was scored for the hybrid's own weights and lm_top "
                                 f"({self.cfg.lm_top}); other weights or a larger lm_top need a "
                                 "pool scored in full (a hybrid with shared=... or lm_top None)")
            finite = used[np.isfinite(used)]
            if not len(finite):
                feats[:, j] = 0.0
                continue
            keep = mask & np.isfinite(feats[:, j])
            feats[:, j] = np.where(keep, feats[:, j], finite.min()) - finite.max()
        return feats

    def rank(self, pool: Pool, weights: dict[str, float] | None = None,
             lm_top: int | None | str = "cfg") -> np.ndarray:
        """Combined scores float [n] of a pool's candidates (``lm_top``: as ``effective``)."""
        w = weights or self.cfg.weights
        return self.effective(pool, w, lm_top) @ _weight_vector(w, self.active)

    def order(self, pool: Pool, weights: dict[str, float] | None = None,
              lm_top: int | None | str = "cfg") -> tuple[np.ndarray, np.ndarray]:
        """(indices into the pool best first, combined scores); ties by catalog row."""
        score = self.rank(pool, weights, lm_top)
        return np.lexsort((pool.rows, -score)), score

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        pool = self.pool(history, exclude)
        order, score = self.order(pool)
        feats = self.effective(pool)
        tracks, why = [], {}
        for i in order[:k]:
            tid = self.ids[int(pool.rows[i])]
            tracks.append(ScoredTrack(tid, float(score[i])))
            why[tid] = {f: round(float(self.cfg.weights.get(f, 0.0) * feats[i, j]), 4)
                        for j, f in enumerate(FEATURES) if f in self.active}
        if len(tracks) < k and pool.fill is not None:  # past the pool: BM25 order, scored lower
            floor = (min(t.score for t in tracks) if tracks else 0.0) - 1.0
            taken = set(pool.rows.tolist()) | {self.row[t] for t in (exclude or ()) if t in self.row}
            for r_ in pool.fill:
                if len(tracks) >= k:
                    break
                if int(r_) not in taken:
                    tracks.append(ScoredTrack(self.ids[int(r_)], floor))
        reply = self._reply(history, tracks[0].track_id) if tracks and self.tp.with_reply else ""
        return Recommendation(tracks, reply=reply, info={"why": why, "pool": int(len(pool.rows))})

    def _reply(self, history: list[Message], track_id: str) -> str:
        """The model's reply after the music block of the hybrid's first track."""
        prompt, _ = self.tp.prompt(history)
        return self.tp.reply_to_block(self.tp._prompt_state(prompt),
                                      self.tp.codebook.codes_of(track_id), self.tp.generator(prompt),
                                      track_id)


def fit_weights(hybrid: HybridRecommender, targets, cluster_of: dict[str, str],
                rounds: int = 3, progress=None, lm_tops: tuple[int, ...] = LM_TOPS,
                method: str = "softmax") -> dict:
    """Choose the hybrid's weights on ``targets`` (valid split), then how many candidates the
    model scores (``lm_top``).

    Features are computed once per target (the model scoring is the expensive part). Then:

    - ``method="softmax"`` (default): the listwise fit of ``evaluate.listwise`` (the weights
      that maximise the softmax probability of each target's gold tracks in its pool, every
      candidate's model scores used). Smooth and with one optimum; chosen over ascent by
      5-fold cross-validation over the valid dialogs of the CPCD run (README), where ascent
      also fit the retrieval-only hybrid to a ranking left mostly to ties (catalog order).
    - ``method="ascent"``: coordinate ascent on MRR: every weight is tried at each ``GRID``
      value with the others fixed, for up to ``rounds`` passes (a weight may go to 0, so a
      useless component drops out), from several starts (equal weights, each component left
      out, each component alone); the best valid MRR wins.

    With the weights fixed, each of ``lm_tops`` is tried (``HybridConfig.lm_top``), and the
    smallest whose MRR, Hit@1 and Hit@10 are each within ``LM_TOP_TOLERANCE`` of the model
    scoring every candidate is kept (None when none is): the model's cost beside beam mode is
    the blocks it scores.

    Args:
        hybrid: the recommender (its ``cfg.weights`` are updated in place).
        targets: ``evaluate.protocols.Target`` list of the validation split.
        cluster_of: track id -> cluster id (CPCD), or empty.
        rounds: coordinate-ascent passes.
        progress: called with (done, total) while features are computed.
        lm_tops: ``lm_top`` values to try; empty: the model scores every candidate.
        method: "softmax" or "ascent" (``FIT_METHODS``).
    Returns:
        The fit record (split, targets, method, MRR with equal and with the fitted weights,
        seconds), also stored in ``cfg.fitted``.
    Raises:
        ValueError: an unknown ``method``.
    """
    if method not in FIT_METHODS:
        raise ValueError(f"unknown hybrid fit method {method!r}; one of {', '.join(FIT_METHODS)}")
    t0 = time.perf_counter()
    pools = []
    for n, t in enumerate(targets, start=1):
        pools.append(hybrid.pool(t.history, set(t.exclude)))
        if progress:
            progress(n, len(targets))
    ids = hybrid.ids

    def metrics(w: dict[str, float], lm_top: int | None = None) -> dict[str, float]:
        total = dict.fromkeys(LM_TOP_METRICS, 0.0)
        for pool, t in zip(pools, targets, strict=True):
            if len(pool.rows) == 0:
                continue
            order, _ = hybrid.order(pool, w, lm_top)
            ranking = [ids[int(pool.rows[i])] for i in order[:100]]
            got = target_metrics(predictions=ranking, gold=t.gold, ks=(1, 10, 100),
                                 cluster_of=cluster_of or None)
            for key in total:
                total[key] += got[key]
        return {key: v / max(len(targets), 1) for key, v in total.items()}

    def mrr(w: dict[str, float]) -> float:
        return metrics(w)["mrr"]

    def ascend(w: dict[str, float]) -> tuple[dict[str, float], float]:
        best = mrr(w)
        for _ in range(rounds):
            improved = False
            for f in active:
                for v in GRID:
                    if v == w[f]:
                        continue
                    trial = {**w, f: v}
                    m = mrr(trial)
                    if m > best + 1e-9:
                        best, w, improved = m, trial, True
            if not improved:
                break
        return w, best

    active = hybrid.active
    equal = {f: (1.0 if f in active else 0.0) for f in FEATURES}
    start = mrr(equal)
    record: dict = {}
    if method == "softmax":
        w = _listwise_weights(hybrid, pools, targets, cluster_of)
    else:
        # Coordinate ascent stops at local optima: start it from equal weights, from each
        # leave-one-out setting (where each ablation starts) and from each component alone.
        starts = [equal, *({**equal, f: 0.0} for f in active if len(active) > 1),
                  *({g: float(g == f) for g in FEATURES} for f in active if len(active) > 1)]
        w, best = equal, -1.0
        for s0 in starts:
            cand, m = ascend(dict(s0))
            if m > best + 1e-9:
                w, best = cand, m
        record["starts"] = len(starts)
    hybrid.cfg.weights = w
    full = metrics(w)  # every candidate scored by the model
    best = full["mrr"]
    tried = ({m: metrics(w, m) for m in sorted(lm_tops)}
             if any(f in active for f in MODEL_FEATURES) else {})
    hybrid.cfg.lm_top = choose_lm_top(tried, full)
    hybrid.cfg.fitted = {"split": "valid", "targets": len(targets), "method": method,
                         "mrr_equal_weights": round(start, 4), "mrr_fitted": round(best, 4),
                         **record,
                         "by_lm_top": {str(m): {k: round(v, 4) for k, v in got.items()}
                                       for m, got in {**tried, "all": full}.items()},
                         "seconds": round(time.perf_counter() - t0, 1)}
    log.info("hybrid weights %s, lm_top %s: valid MRR %.4f (equal weights %.4f)", w,
             hybrid.cfg.lm_top, best, start)
    return hybrid.cfg.fitted


def _listwise_weights(hybrid: HybridRecommender, pools: list[Pool], targets,
                      cluster_of: dict[str, str]) -> dict[str, float]:
    """``evaluate.listwise`` weights of the hybrid's active components over ``pools`` (every
    candidate's model scores used); the others 0."""
    cols = [FEATURES.index(f) for f in hybrid.active]
    feats, gold = [], []
    for pool, t in zip(pools, targets, strict=True):
        want = set(collapse_to_clusters(t.gold, cluster_of))
        feats.append(hybrid.effective(pool, None, None)[:, cols])
        gold.append(np.array([cluster_of.get(hybrid.ids[int(r)], hybrid.ids[int(r)]) in want
                              for r in pool.rows], dtype=bool))
    w = fit_listwise(feats, gold)
    fitted = dict(zip(hybrid.active, (round(float(v), 4) for v in w), strict=True))
    return {f: fitted.get(f, 0.0) for f in FEATURES}


def choose_lm_top(tried: dict[int, dict[str, float]], full: dict[str, float]) -> int | None:
    """The smallest ``lm_top`` of ``tried`` (value -> valid metrics) that keeps every one of
    ``LM_TOP_METRICS`` within ``LM_TOP_TOLERANCE`` of ``full`` (every candidate scored); None
    when none does."""
    return next((m for m in sorted(tried) if all(
        tried[m][key] >= full[key] - LM_TOP_TOLERANCE for key in LM_TOP_METRICS)), None)


def run_weights(run: str | Path) -> list[str] | None:
    """The checksums of the run's trained weights (RUN/summary.json), or None without them."""
    path = Path(run) / "summary.json"
    return json.loads(path.read_text()).get("weights_sha256") if path.exists() else None


class StaleFit(DataError):
    """RUN/hybrid.json holds weights fit on other model weights than the run's (retrained),
    another dense head, or another dense retriever encoder than the one asked for."""


def save_config(run: str | Path, name: str, cfg: HybridConfig,
                text_model: str = DEFAULT_TEXT_MODEL) -> None:
    """Store ``cfg`` under ``name`` in RUN/hybrid.json (other systems' entries are kept),
    with the checksums of the model weights and the dense head it was fit on
    (``fitted["weights_sha256"]``, ``fitted["head_sha256"]``) and the dense retriever's text
    encoder (``fitted["text_model"]``, an absolute path for a local folder, and
    ``fitted["text_model_id"]``, ``encoders.weights_fingerprint``)."""
    from talkplay.evaluate.baselines.encoders import weights_fingerprint

    path = Path(run) / HYBRID_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    entry = asdict(cfg)
    entry["fitted"]["weights_sha256"] = run_weights(run)
    entry["fitted"]["head_sha256"] = head_checksum(run)
    local = Path(text_model).is_dir()
    entry["fitted"]["text_model"] = str(Path(text_model).resolve()) if local else text_model
    entry["fitted"]["text_model_id"] = weights_fingerprint(text_model)
    data[name] = entry
    write_json(path, data)


def fitted_text_model(cfg: HybridConfig) -> str:
    """The dense retriever's text encoder ``cfg`` was fit with (entries saved before it was
    recorded were fit with the default)."""
    return cfg.fitted.get("text_model", DEFAULT_TEXT_MODEL)


def load_config(run: str | Path, name: str, text_model: str | None = None) -> HybridConfig | None:
    """The saved config of system ``name`` in RUN/hybrid.json, or None.

    Args:
        text_model: the dense retriever's encoder the caller ranks with; None: the one the
            weights were fit with (``fitted_text_model``), checked to be unchanged.
    Raises:
        StaleFit: the weights were fit on model weights the run no longer has (it was
            trained further or again since), or with a dense head it no longer has (``talkplay
            fit-head`` since), or with another dense retriever (``talkplay fit-retriever``
            since, or ``--text-model`` changed), so they would rank with another model's scale.
        DataError: the fine-tuned encoder the weights were fit with is gone.
    """
    path = Path(run) / HYBRID_FILE
    if not path.exists():
        return None
    entry = json.loads(path.read_text()).get(name)
    if not entry:
        return None
    fit_on, now = entry.get("fitted", {}).get("weights_sha256"), run_weights(run)
    if fit_on and now and fit_on != now:
        raise StaleFit(f"{name}: its weights were fit on other model weights than the run has "
                       f"now (sha256 {fit_on[0][:12]}..., now {now[0][:12]}...: trained again "
                       f"since); refit them with `talkplay evaluate --run {run} --systems {name} "
                       "--refit`", file=str(path))
    head_on, head_now = entry.get("fitted", {}).get("head_sha256"), head_checksum(run)
    if head_on and head_on != head_now:
        raise StaleFit(f"{name}: its weights were fit with another dense head than the run has "
                       f"now (refit since: RUN/head_fit.json); refit them with `talkplay "
                       f"evaluate --run {run} --systems {name} --refit`", file=str(path))
    from talkplay.evaluate.baselines.encoders import weights_fingerprint

    cfg = HybridConfig(**entry)
    fit_with = fitted_text_model(cfg)
    fit_id = cfg.fitted.get("text_model_id", fit_with)
    use = fit_with if text_model is None else text_model
    if text_model is None and Path(fit_with).is_absolute() and not Path(fit_with).exists():
        raise DataError(f"{name}: its weights were fit with the text encoder {fit_with}, which "
                        "is gone; refit them with `talkplay evaluate --refit`", file=str(path))
    use_id = weights_fingerprint(use)
    if use_id != fit_id:
        raise StaleFit(f"{name}: its weights were fit with the dense retriever's encoder "
                       f"{fit_with} ({fit_id}), not {use} ({use_id}); refit them with `talkplay "
                       f"evaluate --run {run} --systems {name} --text-model {use} --refit`",
                       file=str(path))
    # A component newer than the fit (no weight saved for it) stays out, so a saved hybrid
    # ranks as it did when it was fit.
    cfg.without += [f for f in FEATURES if f not in cfg.weights and f not in cfg.without]
    return cfg
