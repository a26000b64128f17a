"""Fine-tune the dense retriever's text encoder on the training conversations (``talkplay
fit-retriever``): the dual encoder CPCD's authors fine-tune on CPCD dialogs, which beats BM25
there, where the off-the-shelf encoder does not.

1. **Pairs** come from the training split's targets under the dataset's protocol (CPCD: each
   turn, its gold the rest of the goal playlist; paper: each next track). A target's anchors
   are what ``dense`` embeds to build its query (``common.query_parts``): its latest user
   message, and each accepted track already in the conversation (as its ``track_text``); an
   anchor is paired with one gold track of its target, drawn afresh every epoch
   (``positives`` draws per anchor). An anchor repeated within a conversation (a seed track in
   every later turn) counts once, with the gold of the turn where it first appears.
2. **Loss**: the in-batch softmax of cosine similarities times ``scale`` (multiple-negatives
   ranking); a column whose track is also a gold track of the row's target (the same cluster,
   for CPCD) is not a negative and is masked out.
3. **Choice on validation**: before training and after every epoch, the encoder ranks the
   validation split exactly as the ``dense`` baseline ranks (the same weighted query, the whole
   catalog, excluded tracks out, the evaluation's cluster-aware metric); the best epoch is kept
   (epoch 0, the base encoder, included) and training stops after ``patience`` epochs without a
   gain. Each new best is written to the output folder at once, so an interrupted fit leaves
   the best encoder so far (its record says ``"finished": false``).

The encoder is saved as a sentence-transformers folder (``--text-model DIR`` of ``talkplay
evaluate``), written atomically, with ``retriever_fit.json`` (valid MRR per epoch, pairs,
seconds) inside. Nothing here reads the test split.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from talkplay.data.errors import DataError
from talkplay.data.schema import REJECTED
from talkplay.evaluate.baselines.common import BaselineOptions, track_text
from talkplay.evaluate.metrics import target_metrics
from talkplay.io import atomic_dir, write_json

log = logging.getLogger(__name__)
FIT_FILE = "retriever_fit.json"
LOG_EVERY = 25
"""Batches between two progress lines in the log (the progress bar is off when the output is
not a terminal, and an epoch on a large dataset takes tens of minutes on a CPU)."""


@dataclass
class RetrieverFitConfig:
    """How ``fit_retriever`` trains (the CPCD run used these defaults with ``max_epochs`` 3,
    chosen on its valid curve: 0.3017 / 0.3480 / 0.3969 / 0.4018, then 0.3786)."""

    base: str = "minilm"
    """The encoder to start from: "minilm" (packaged) or a sentence-transformers name / path."""
    max_epochs: int = 6
    patience: int = 2
    """Epochs without a validation gain before training stops."""
    lr: float = 2e-5
    warmup: float = 0.1
    """Share of the first epoch's steps over which the learning rate rises from 0."""
    batch_size: int = 64
    scale: float = 20.0
    """Cosine similarities are multiplied by this before the softmax (sentence-transformers'
    default for the multiple-negatives ranking loss)."""
    positives: int = 2
    """Gold tracks drawn per anchor per epoch."""
    max_seq_length: int = 64
    """Word pieces per text in training and after (user turns and track texts are short)."""
    seed: int = 0
    device: str = "cpu"


@dataclass
class Pair:
    anchor: str
    gold: list[str]
    """The target's gold tracks; one is drawn as the positive, all are masked as negatives."""
    exclude: set[str]


def training_pairs(ds, targets) -> list[Pair]:
    """The anchors of ``targets`` (see the module docstring), once per conversation each."""
    tracks = ds.track_index()
    seen: set[tuple[str, str]] = set()
    out: list[Pair] = []
    for t in targets:
        gold = [g for g in t.gold if g in tracks]
        if not gold:
            continue
        anchors = []
        users = [m.content for m in t.history if m.role == "user" and m.content.strip()]
        if users:
            anchors.append(users[-1])
        anchors += [track_text(tracks[m.content]) for m in t.history
                    if m.role == "music" and m.feedback != REJECTED and m.content in tracks]
        for a in anchors:
            if (t.conversation_id, a) in seen:
                continue
            seen.add((t.conversation_id, a))
            out.append(Pair(a, gold, t.exclude))
    return out


def valid_mrr(model, ds, targets, cluster_of, options: BaselineOptions, batch_size: int) -> float:
    """Mean MRR@100 over ``targets`` of the ``dense`` baseline with encoder ``model``."""
    from talkplay.evaluate.baselines.dense import DenseRecommender
    from talkplay.evaluate.baselines.encoders import TextEmbedder

    if not targets:
        return 0.0
    model.eval()
    ids = [t.id for t in ds.tracks]
    vectors = model.encode([track_text(t) for t in ds.tracks], batch_size=batch_size,
                           show_progress_bar=False, convert_to_numpy=True)
    rec = DenseRecommender(ids, vectors, TextEmbedder(model, batch_size), options)
    total = 0.0
    for t in targets:
        ranked = rec.recommend(t.history, k=100, exclude=t.exclude)
        total += target_metrics(predictions=[s.track_id for s in ranked.tracks], gold=t.gold,
                                ks=(1, 10, 100), cluster_of=cluster_of or None)["mrr"]
    return total / len(targets)


def _batches(pairs: list[Pair], cfg: RetrieverFitConfig, rng: random.Random):
    """One epoch of batches, shuffled: each a list of (pair, the gold track id drawn as its
    positive), ``cfg.positives`` draws per pair."""
    rows = [(p, rng.choice(p.gold)) for p in pairs for _ in range(cfg.positives)]
    rng.shuffle(rows)
    for i in range(0, len(rows), cfg.batch_size):
        chunk = rows[i:i + cfg.batch_size]
        if len(chunk) > 1:  # a lone row has no negative
            yield chunk


def fit_retriever(ds, out: str | Path, cfg: RetrieverFitConfig | None = None,
                  options: BaselineOptions | None = None, progress=None) -> dict:
    """Fine-tune ``cfg.base`` on ``ds``'s training conversations and save the best epoch's
    encoder (on the validation split) to ``out``.

    Args:
        ds: the dataset (train and valid splits both needed).
        out: the folder to write (replaced atomically).
        cfg: training options.
        options: the dense baseline's query options (``decay``, ``track_weight``) the
            validation ranking uses.
        progress: called with (epoch, step, steps) while training.
    Returns:
        The record written to ``out/retriever_fit.json``.
    Raises:
        DataError: no training pairs or no validation targets.
    """
    import torch
    import torch.nn.functional as F

    from talkplay.evaluate.baselines.encoders import load_text_encoder
    from talkplay.evaluate.protocols import build_targets, cluster_map, resolve_protocol

    cfg = cfg or RetrieverFitConfig()
    options = options or BaselineOptions()
    t0 = time.perf_counter()
    protocol = resolve_protocol(ds, "auto")
    train = build_targets(ds, protocol, split="train")
    valid = build_targets(ds, protocol, split="valid")
    pairs = training_pairs(ds, train)
    if not pairs:
        raise DataError("no training pairs for the retriever (the train split has no targets "
                        "with a gold track in the catalog)", file=str(ds.root))
    if not valid:
        raise DataError("fitting the retriever needs a validation split to choose the epoch "
                        "on (import with --valid-fraction)", file=str(ds.root))
    clusters = cluster_map(ds)
    tracks = ds.track_index()
    text_of = {tid: track_text(tr) for tid, tr in tracks.items()}
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = load_text_encoder(cfg.base, cfg.device)
    model.max_seq_length = min(int(model.max_seq_length), cfg.max_seq_length)

    def embed(texts: list[str]):
        prep = getattr(model, "preprocess", None) or model.tokenize  # renamed in v6
        feats = {k: v.to(cfg.device) if isinstance(v, torch.Tensor) else v
                 for k, v in prep(texts).items()}
        return F.normalize(model(feats)["sentence_embedding"], dim=-1)

    def record(done: bool) -> dict:
        return {"base": cfg.base, "protocol": protocol, "best_epoch": best_epoch,
                "valid_mrr": round(best, 4), "valid_mrr_base": history[0][1],
                "history": history, "train_loss": losses, "finished": done,
                "pairs": len(pairs), "train_targets": len(train), "valid_targets": len(valid),
                "config": asdict(cfg), "query": {"decay": options.decay,
                                                 "track_weight": options.track_weight},
                "data": str(ds.root), "seconds": round(time.perf_counter() - t0, 1)}

    def save_best() -> None:
        """The best encoder so far goes to ``out`` at once: an interrupted fit keeps it."""
        with atomic_dir(out) as tmp:
            model.save(str(tmp))
            write_json(Path(tmp) / FIT_FILE, record(False))

    best = valid_mrr(model, ds, valid, clusters, options, cfg.batch_size)
    best_epoch, since = 0, 0
    history = [(0, round(best, 4))]
    losses: list[float] = []
    save_best()
    log.info("retriever: base %s valid MRR %.4f on %d targets; %d pairs", cfg.base, best,
             len(valid), len(pairs))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    steps_per_epoch = max(1, (len(pairs) * cfg.positives) // cfg.batch_size)
    warm = max(1, int(cfg.warmup * steps_per_epoch))
    step = 0
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        total, batches = 0.0, 0
        started = time.perf_counter()
        for n, chunk in enumerate(_batches(pairs, cfg, rng)):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * min(1.0, (step + 1) / warm)
            anchors = embed([p.anchor for p, _ in chunk])  # [B, d]
            positives = embed([text_of[g] for _, g in chunk])  # [B, d]
            logits = cfg.scale * anchors @ positives.T  # [B, B]
            mask = torch.zeros_like(logits, dtype=torch.bool)
            for i, (p, _) in enumerate(chunk):
                gold = {clusters.get(g, g) for g in p.gold}
                for j, (_, g) in enumerate(chunk):
                    if j != i and (clusters.get(g, g) in gold or g in p.exclude):
                        mask[i, j] = True
            loss = F.cross_entropy(logits.masked_fill(mask, float("-inf")),
                                   torch.arange(len(chunk), device=logits.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total, batches = total + loss.item(), batches + 1
            if progress:
                progress(epoch, n + 1, steps_per_epoch)
            if batches % LOG_EVERY == 0 and batches < steps_per_epoch:
                per = (time.perf_counter() - started) / batches
                log.info("retriever: epoch %d batch %d/%d, loss %.3f, %.2f s a batch, about "
                         "%.0f s left in the epoch", epoch, batches, steps_per_epoch,
                         total / batches, per, per * (steps_per_epoch - batches))
        m = valid_mrr(model, ds, valid, clusters, options, cfg.batch_size)
        history.append((epoch, round(m, 4)))
        losses.append(round(total / max(batches, 1), 4))
        log.info("retriever: epoch %d valid MRR %.4f (train loss %.3f)", epoch, m, losses[-1])
        if m > best + 1e-9:
            best, best_epoch, since = m, epoch, 0
            save_best()
        else:  # the folder keeps the best encoder; its record gains this epoch at once
            write_json(Path(out) / FIT_FILE, record(False))
            since += 1
            if since >= cfg.patience:
                break
    final = record(True)
    write_json(Path(out) / FIT_FILE, final)
    return final
