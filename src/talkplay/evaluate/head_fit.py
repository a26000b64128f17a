"""Refit the dense head on the trained model's frozen hidden states (``talkplay fit-head``, or
``talkplay train --dense-head W --fit-head`` as its last stage).

Trained beside the language-model loss, the dense head sees each training example once per
epoch through an in-batch contrastive loss, and a CPU budget of 30 minutes is a few hundred
steps: on the shared CPCD file its validation InfoNCE ended barely below chance. The head is a
single linear map, so it can be fit far better and far more cheaply on its own once the model
is trained:

1. the model's hidden state at ``<start_of_music>`` is computed once for every target of the
   training split (the same prompt ``talkplay-hybrid`` builds at inference: the protocol's
   history, cut to the prompt budget) and for every target of the validation split;
2. the projection is fit by AdamW on a softmax over the **whole catalog** (every track's
   content embedding; above ``MAX_FULL_CATALOG`` tracks, a fresh random sample of negatives per
   batch) with every gold track of a target a positive (CPCD: the rest of the goal playlist)
   and the target's excluded tracks (seeds, tracks already played) out of the softmax;
3. the head alone ranks the catalog for each validation target every ``eval_every`` epochs,
   scored with the evaluation's own metric (cluster-aware for CPCD); the epoch with the best
   validation MRR is kept, and training stops after ``patience`` evaluations without a gain;
4. each start (``inits``: the jointly trained projection, and a fresh one) is fit this way and
   the best on validation wins; the jointly trained head stays when no refit beats it.

The choice is recorded in ``RUN/head_fit.json`` (valid MRR of every candidate, targets, epochs,
seconds); the head is written atomically into ``RUN/model``. Nothing here reads the test split.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from talkplay.evaluate.baselines.common import top_k
from talkplay.evaluate.metrics import target_metrics
from talkplay.io import write_json
from talkplay.lm.dense_head import DenseHead, content_matrix, head_checksum, load_head, save_head

log = logging.getLogger(__name__)
FIT_FILE = "head_fit.json"
MAX_FULL_CATALOG = 50_000
"""Catalogs up to this size are the softmax's candidates in full; larger ones are sampled."""


@dataclass
class HeadFitConfig:
    """How ``fit_head`` trains (defaults: the values used for the CPCD and world runs)."""

    max_epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    eval_every: int = 10
    """Epochs between validation rankings."""
    patience: int = 5
    """Validation rankings without a gain before a start stops."""
    max_targets: int = 6000
    """Training targets used at most (a seeded sample above it): the hidden states are the cost."""
    inits: tuple[str, ...] = ("joint", "fresh")
    """Starts: the jointly trained projection, a freshly initialised one."""
    negatives: int = 16_384
    """Sampled negatives per batch when the catalog exceeds ``MAX_FULL_CATALOG``."""
    seed: int = 0


def prompt_states(tp, targets, progress=None) -> np.ndarray:
    """float32 [len(targets), hidden]: the model's last hidden state after each target's
    prompt (which ends with ``<start_of_music>``), computed as ``talkplay-hybrid`` computes it
    (``tp._prompt_state``): a target whose prompt extends an earlier one's (the next turn of
    the same conversation) runs only its new tokens when ``tp`` keeps a prompt cache."""
    from talkplay.recommend.engine import last_hidden

    hidden = int(tp.model.config.hidden_size)
    out = np.zeros((len(targets), hidden), dtype=np.float32)
    with torch.inference_mode():
        for n, t in enumerate(targets):
            state = tp._prompt_state(tp.prompt(t.history)[0])
            out[n] = last_hidden(tp.model, state).float().cpu().numpy()
            if progress:
                progress(n + 1, len(targets))
    return out


def head_mrr(head: DenseHead, states: np.ndarray, targets, content: np.ndarray,
             item_ids: list[str], cluster_of: dict[str, str] | None) -> float:
    """Mean MRR@100 of the head alone over ``targets`` (excluded tracks never ranked; ties by
    catalog order, as every baseline ranks: ``baselines.common.top_k``)."""
    if not len(targets):
        return 0.0
    with torch.no_grad():
        query = head(torch.from_numpy(states)).numpy()
    total = 0.0
    for q, t in zip(query, targets, strict=True):
        ranked = top_k(content @ q.astype(content.dtype), item_ids, 100, t.exclude)
        total += target_metrics(predictions=[s.track_id for s in ranked.tracks], gold=t.gold,
                                ks=(1, 10, 100), cluster_of=cluster_of or None)["mrr"]
    return total / len(targets)


def fit_head(head: DenseHead, train_states: np.ndarray, train_targets, valid_states: np.ndarray,
             valid_targets, content: np.ndarray, item_ids: list[str],
             cluster_of: dict[str, str] | None, cfg: HeadFitConfig) -> tuple[DenseHead, dict]:
    """Fit ``head`` (a copy is trained; ``head`` is untouched) and return the best epoch's.

    Returns:
        (head at its best validation epoch, record: valid MRR per evaluation, best epoch).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    row = {t: i for i, t in enumerate(item_ids)}
    n_items = len(item_ids)
    keep = [i for i, t in enumerate(train_targets) if any(g in row for g in t.gold)]
    X = torch.from_numpy(train_states[keep])
    gold = [[row[g] for g in train_targets[i].gold if g in row] for i in keep]
    banned = [[row[e] for e in train_targets[i].exclude if e in row] for i in keep]
    C = torch.from_numpy(np.ascontiguousarray(content, dtype=np.float32))
    work = DenseHead(head.spec)
    work.load_state_dict(head.state_dict())
    opt = torch.optim.AdamW(work.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    temp = head.spec.temperature
    best_state = {k: v.clone() for k, v in work.state_dict().items()}
    best = head_mrr(work.eval(), valid_states, valid_targets, content, item_ids, cluster_of)
    history, best_epoch, since = [(0, round(best, 4))], 0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        work.train()
        for b in torch.randperm(len(keep), generator=gen).split(cfg.batch_size):
            if n_items > MAX_FULL_CATALOG:
                pos = sorted({r for i in b.tolist() for r in gold[i]})
                cand = torch.unique(torch.cat([torch.tensor(pos, dtype=torch.long), torch.randint(
                    n_items, (cfg.negatives,), generator=gen)]))
            else:
                cand = torch.arange(n_items)
            col = torch.full((n_items,), -1, dtype=torch.long)
            col[cand] = torch.arange(len(cand))
            logits = work(X[b]) @ C[cand].T / temp  # [B, candidates]
            is_gold = torch.zeros_like(logits, dtype=torch.bool)
            out = torch.zeros_like(logits, dtype=torch.bool)
            for j, i in enumerate(b.tolist()):
                is_gold[j, col[gold[i]]] = True
                c = col[banned[i]]
                out[j, c[c >= 0]] = True
            logits = logits.masked_fill(out, float("-inf"))
            loss = (logits.logsumexp(-1) - logits.masked_fill(~is_gold, float("-inf")).logsumexp(-1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if epoch % cfg.eval_every == 0:
            m = head_mrr(work.eval(), valid_states, valid_targets, content, item_ids, cluster_of)
            history.append((epoch, round(m, 4)))
            if m > best + 1e-9:
                best, best_epoch, since = m, epoch, 0
                best_state = {k: v.clone() for k, v in work.state_dict().items()}
            else:
                since += 1
                if since >= cfg.patience:
                    break
    work.load_state_dict(best_state)
    return work.eval(), {"valid_mrr": round(best, 4), "best_epoch": best_epoch, "history": history}


def refit_run_head(run: str | Path, cfg: HeadFitConfig | None = None, tp=None,
                   progress=None) -> dict | None:
    """Refit the dense head of ``run`` (see the module docstring); None when it has none.

    Args:
        run: a run directory trained with ``--dense-head``.
        cfg: fitting options.
        tp: the run's loaded ``TalkPlayRecommender`` (loaded here when None).
        progress: called with (stage, done, total) while hidden states are computed.
    Returns:
        The record written to ``RUN/head_fit.json``.
    Raises:
        FileNotFoundError: the run's dataset or its embeddings are gone.
    """
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.protocols import build_targets, cluster_map, resolve_protocol
    from talkplay.io import read_json
    from talkplay.recommend.recommender import load_talkplay

    cfg = cfg or HeadFitConfig()
    run = Path(run)
    head = load_head(run / "model")
    if head is None:
        return None
    t0 = time.perf_counter()
    data = read_json(run / "manifest.json").get("data")
    if not data or not Path(data).exists():
        raise FileNotFoundError(f"{run}: refitting its dense head needs the dataset it was "
                                f"trained on ({data}), which is not there")
    ds = read_dataset(data)
    protocol = resolve_protocol(ds, "auto")
    train = build_targets(ds, protocol, split="train")
    valid = build_targets(ds, protocol, split="valid")
    if not train or not valid:
        raise ValueError(f"{data}: refitting the dense head needs train and valid targets "
                         f"(found {len(train)} and {len(valid)})")
    if len(train) > cfg.max_targets:
        pick = np.random.default_rng(cfg.seed).choice(len(train), cfg.max_targets, replace=False)
        train = [train[i] for i in sorted(pick)]
    tp = tp or load_talkplay(run, with_reply=False, cache_size=4)
    item_ids = tp.codebook.item_ids
    content, _ = content_matrix(data, item_ids, head.spec.modalities, head.spec.dims)
    clusters = cluster_map(ds)
    states_t = prompt_states(tp, train, progress and (lambda d, n: progress("train", d, n)))
    states_v = prompt_states(tp, valid, progress and (lambda d, n: progress("valid", d, n)))
    t_states = time.perf_counter() - t0
    joint = head_mrr(head, states_v, valid, content, item_ids, clusters)
    fits, best_head, best_name, best_mrr = {}, head, "joint", joint
    for init in cfg.inits:
        start = head
        if init == "fresh":
            torch.manual_seed(cfg.seed)
            start = DenseHead(head.spec)
        elif init != "joint":
            raise ValueError(f"unknown dense-head init {init!r}; expected joint or fresh")
        fitted, rec = fit_head(start, states_t, train, states_v, valid, content, item_ids,
                               clusters, cfg)
        fits[init] = rec
        if rec["valid_mrr"] > best_mrr + 1e-9:
            best_head, best_name, best_mrr = fitted, f"refit-{init}", rec["valid_mrr"]
    if best_head is not head:
        save_head(run / "model", best_head)
    record = {"kept": best_name, "valid_mrr": {"joint": round(joint, 4),
                                               **{f"refit-{k}": v["valid_mrr"] for k, v in fits.items()}},
              "fits": fits, "protocol": protocol, "train_targets": len(train),
              "valid_targets": len(valid), "config": asdict(cfg),
              "seconds_states": round(t_states, 1),
              "seconds": round(time.perf_counter() - t0, 1), "head_sha256": head_checksum(run)}
    write_json(run / FIT_FILE, record)
    log.info("dense head: kept %s (valid MRR %.4f; joint %.4f)", best_name, best_mrr, joint)
    return record
