"""Fine-tuning: ``setup()`` builds the pieces, ``fit()`` is the one training loop.

The loss on one screen (paper, Sec. 3)::

    ce    = masked next-token CE over conversation AND playlist-continuation sequences
    sim   = mean over modalities of E_ij |cos(c_i, c_j) - cos(e_i, e_j)|
    dense = InfoNCE of the dense head (optional, not in the paper; ``lm.dense_head``)
    loss  = ce + lambda * sim + dense_head * dense

Runs as one process or under ``accelerate launch`` (DDP: every process takes its own shard of
each global batch; gradients are averaged; losses are averaged over processes for logging).
A run resumes from ``RUN/checkpoints/last`` to the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object

from talkplay.config import Profile, asdict
from talkplay.data.dataset import read_dataset
from talkplay.io import read_json, write_json
from talkplay.lm.base import load_base
from talkplay.lm.checkpoint import (
    append_jsonl,
    has_checkpoint,
    load_checkpoint,
    record_best,
    save_checkpoint,
    save_model,
    save_run,
    set_rng_state,
    truncate_jsonl,
)
from talkplay.lm.dense_head import DenseHead, HeadSpec, content_matrix, content_modalities
from talkplay.lm.facts import facts_lookup
from talkplay.lm.grounding import INITS, cluster_texts, grounded_rows
from talkplay.lm.quantize import cpu_has_bf16
from talkplay.lm.vocab import MusicVocab, expand_vocabulary
from talkplay.tokenize import grammar
from talkplay.tokenize.codebook import Codebook
from talkplay.train.data import PLAYLIST, Renderer, TrainData, build_splits, collate, valid_batches
from talkplay.train.flops import TrainFlops, peak_flops
from talkplay.train.losses import (
    IGNORE,
    dense_contrastive_loss,
    music_self_similarity,
    selected_cross_entropy,
)

log = logging.getLogger(__name__)


@dataclass
class Setup:
    """The pieces ``fit`` works with."""

    prof: Profile
    run_dir: Path
    acc: Accelerator
    model: torch.nn.Module
    """Prepared (DDP-wrapped when distributed); ``acc.unwrap_model(model)`` is the HF model."""
    tokenizer: object
    codebook: Codebook
    vocab: MusicVocab
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data: TrainData
    valid: list
    centroids: list[torch.Tensor]
    """Per modality, K-means centroids [K_m, d_m] (constant targets of the self-sim loss)."""
    keep_logits: bool = True
    """The model's forward takes ``logits_to_keep`` (most HF causal LMs do)."""
    sim_available: bool = True
    """False under FSDP: the sharded embedding matrix is not readable outside forward."""
    step: int = 0
    best_val: float = math.inf
    stats: dict | None = None
    clock: dict | None = None
    """``{"time_frac": budget spent}``, read by the scheduler's lambda (``lr_lambda``)."""
    head: torch.nn.Module | None = None
    """The dense head (prepared like the model), when ``train.dense_head`` > 0."""
    content: torch.Tensor | None = None
    """float32 [n_tracks, d] unit-norm content embeddings in codebook order (the head's keys)."""


def build_head(data_dir: Path, model: torch.nn.Module, codebook: Codebook, temperature: float
               ) -> tuple[DenseHead, torch.Tensor]:
    """A new dense head for ``model`` and the content matrix it is trained against.

    Raises:
        ValueError: no content modality was tokenized (only the playlist one).
    """
    mods = content_modalities(codebook.k)
    if not mods:
        raise ValueError(f"{data_dir}: the dense head needs a content modality (semantic, "
                         "metadata, lyrics or audio) with K > 0; only the playlist modality is "
                         "tokenized. Use --dense-head 0, or tokenize a content modality")
    matrix, dims = content_matrix(data_dir, codebook.item_ids, mods)
    hidden = int(model.get_input_embeddings().weight.shape[1])
    head = DenseHead(HeadSpec(hidden=hidden, modalities=mods, dims=dims, temperature=temperature))
    return head, torch.from_numpy(matrix)


def lr_lambda(step: int, warmup: int, total: int, schedule: str, time_frac: float = 0.0) -> float:
    """Learning-rate multiplier: linear warmup, then cosine / linear decay to 10%, or constant.

    The decay runs over ``total`` steps or, when a wall-clock budget is set, over that budget:
    ``time_frac`` (budget spent, 0..1) counts when it is further along than the steps are, so a
    run stopped by ``max_minutes`` still ends at the low end of its schedule.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = min(1.0, max((step - warmup) / max(1, total - warmup), time_frac))
    if schedule == "linear":
        return 1.0 - 0.9 * frac
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * frac))


def check_same_model(run_dir: str | Path, prof: Profile) -> None:
    """Refuse to resume a checkpoint made with another model section (base, tiny sizes).

    Without this, a different ``--base``/``--profile`` loads another base model and
    ``load_state_dict`` fails with a shape-mismatch traceback (or, for equal shapes, silently
    mixes two models).

    Args:
        run_dir: the run directory (nothing to check when it holds no checkpoint).
        prof: the requested profile.
    Raises:
        ValueError: the saved ``RUN/config.json`` model section differs from ``prof.model``.
    """
    run_dir = Path(run_dir)
    if not has_checkpoint(run_dir) or not (run_dir / "config.json").exists():
        return
    saved = read_json(run_dir / "config.json").get("model", {})
    want = asdict(prof.model)
    diff = [f"{k}: {saved.get(k)!r} in the run, {v!r} requested" for k, v in want.items()
            if saved.get(k) != v]
    if diff:
        raise ValueError(f"{run_dir} holds a checkpoint of another model ({'; '.join(diff)}); "
                         f"resume with the run's model (--base {saved.get('base')} and its "
                         "--profile), or pass --fresh to start over")


def freeze_lower_layers(model: torch.nn.Module, top: int) -> int:
    """Freeze all but the top ``top`` decoder layers, the final norm and the embeddings.

    The input embeddings' output is detached, so backward stops at the lowest trained layer;
    the (tied) embedding matrix still learns through the LM head and the self-similarity loss.

    Returns:
        The number of trainable parameters.
    """
    decoder = model.get_decoder()
    layers = decoder.layers
    if not 0 < top <= len(layers):
        raise ValueError(f"train_top_layers must be in 1..{len(layers)}, got {top}")
    for p in model.parameters():
        p.requires_grad_(False)
    trained = [*layers[-top:], getattr(decoder, "norm", None), model.get_input_embeddings(),
               model.get_output_embeddings()]
    for module in filter(None, trained):
        for p in module.parameters():
            p.requires_grad_(True)
    model.get_input_embeddings().register_forward_hook(lambda _m, _i, out: out.detach())
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_precision(precision: str) -> str:
    """``TrainConfig.precision`` -> accelerate's ``mixed_precision``: "bf16" or "no".

    Raises:
        ValueError: an unknown setting, or "bf16" where neither GPU nor CPU supports it.
    """
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
    else:  # bfloat16 matrix units: AMX tiles (Sapphire Rapids and later) or AVX512-BF16
        supported = cpu_has_bf16()
    if precision == "bf16" and not supported:
        raise ValueError("precision bf16: this GPU/CPU has no bfloat16 support; use fp32")
    if precision == "fp32":
        return "no"
    return "bf16" if supported else "no"


def setup(data_dir: str | Path, run_dir: str | Path, prof: Profile, fresh: bool = False,
          acc: Accelerator | None = None) -> Setup:
    """Load data, codebook and base model; expand the vocabulary; restore a checkpoint if any.

    Args:
        data_dir: dataset directory with ``tokenizer/`` (from ``talkplay tokenize``).
        run_dir: run directory (created; resumed when it holds a checkpoint).
        prof: resolved profile (model + train sections are used).
        fresh: ignore an existing checkpoint.
        acc: an Accelerator (one is made when None, with ``resolve_precision``).
    Returns:
        ``Setup``.
    """
    tc, data_dir, run_dir = prof.train, Path(data_dir), Path(run_dir)
    if acc is None:
        # cpu=True without CUDA: lets torchrun / accelerate start several CPU processes (gloo).
        acc = Accelerator(mixed_precision=resolve_precision(tc.precision),
                          cpu=not torch.cuda.is_available())
    sharded = acc.distributed_type == DistributedType.FSDP
    if sharded and tc.self_sim_lambda > 0:
        raise ValueError("FSDP shards the embedding matrix that the self-similarity loss reads; "
                         "use --self-sim-lambda 0 with FSDP, or DDP / DeepSpeed ZeRO-2 "
                         "(docs/training.md)")
    if not fresh:
        check_same_model(run_dir, prof)  # before loading a base model that cannot match
    torch.manual_seed(tc.seed)
    ds = read_dataset(data_dir)
    codebook = Codebook.load(data_dir / "tokenizer")
    model, tok = load_base(prof.model)
    if tc.token_init not in INITS:
        raise ValueError(f"token_init must be one of {', '.join(INITS)}, got {tc.token_init!r}")
    rows = None
    if tc.token_init == "grounded":
        rows = grounded_rows(model.get_input_embeddings().weight, tok, cluster_texts(ds, codebook))
    vocab = expand_vocabulary(model, tok, grammar.vocabulary(codebook.k), seed=tc.seed, rows=rows)
    r = Renderer(tok, codebook, vocab, tc.context_length,
                 facts_lookup(ds.tracks) if tc.grounded_replies else None)
    train_split, valid_split = build_splits(ds, r, seed=tc.seed,
                                            playlist_dropout=tc.playlist_dropout)
    data = TrainData(train_split, r, batch_size=tc.batch_size, playlist_share=tc.playlist_share,
                     seed=tc.seed, world_size=acc.num_processes, rank=acc.process_index)
    valid = valid_batches(valid_split, r, tc.batch_size, tc.seed, tc.eval_batches * acc.num_processes)
    head = content = None
    if tc.dense_head > 0:
        head, content = build_head(data_dir, model, codebook, tc.dense_temperature)
        log.info("dense head: %d -> %d (%s), weight %g", head.spec.hidden, head.spec.dim,
                 "+".join(head.spec.modalities), tc.dense_head)
    if tc.train_top_layers:
        n = freeze_lower_layers(model, tc.train_top_layers)
        log.info("training the top %d layers + embeddings: %.1fM parameters", tc.train_top_layers,
                 n / 1e6)
    # Fused AdamW (one kernel for all parameters; CPU and CUDA) is what HF Trainer uses too.
    params = [p for p in model.parameters() if p.requires_grad]
    params += list(head.parameters()) if head is not None else []
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay,
                            betas=(0.9, 0.95), fused=True)
    clock = {"time_frac": 0.0}  # budget spent, set by fit() before each scheduler step
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_lambda(step, tc.warmup_steps, tc.max_steps, tc.schedule,
                                    clock["time_frac"]))
    s = Setup(prof, run_dir, acc, model, tok, codebook, vocab, opt, sched, data, valid,
              [torch.as_tensor(codebook.centroids[m], dtype=torch.float32)
               for m in grammar.MODALITIES],
              keep_logits="logits_to_keep" in inspect.signature(model.forward).parameters,
              sim_available=not sharded,
              stats={"train": train_split.stats, "valid": valid_split.stats}, clock=clock,
              head=head, content=content)
    ckpt = None if fresh else load_checkpoint(run_dir)
    if ckpt is not None:
        state, meta = ckpt
        model.load_state_dict(state["model"])
        if head is not None:
            if "dense_head" not in state:
                raise ValueError(f"{run_dir}: its checkpoint has no dense head; resume without "
                                 "--dense-head, or pass --fresh to start over")
            head.load_state_dict(state["dense_head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        data.restore(meta["data_position"])
        s.step, s.best_val = meta["step"], meta.get("best_val", math.inf)
        saved = read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else {}
        changed = {k for k in asdict(prof)["train"] if saved.get("train", {}).get(k) !=
                   asdict(prof)["train"][k]} - {"max_steps", "max_minutes"}
        if changed:
            log.warning("resuming with changed training settings: %s", sorted(changed))
        log.info("resumed %s at step %d", run_dir, s.step)
    if acc.is_main_process:
        if ckpt is None:
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
            save_run(run_dir, model=model, tokenizer=tok, codebook_dir=data_dir / "tokenizer", profile=prof,
                     data_dir=data_dir, data_stats=s.stats)
        else:
            truncate_jsonl(run_dir / "metrics.jsonl", s.step)
            write_json(run_dir / "config.json", asdict(prof))
    acc.wait_for_everyone()
    if head is not None:
        s.model, s.head, s.optimizer = acc.prepare(model, head, opt)
        s.content = content.to(acc.device)
    else:
        s.model, s.optimizer = acc.prepare(model, opt)
    s.centroids = [c.to(acc.device) for c in s.centroids]
    return s


def _losses(s: Setup, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CE per kept position, the self-similarity loss and the dense head's loss of one
    micro-batch.

    Only positions whose next token is labelled (in any row) go through the LM head: user text
    and markup need no logits, which saves the [B, T, V] tensor's memory and time.

    Returns:
        ``(ce [B, N] fp32, sim scalar, dense scalar (0 without a head), target [B, N])``;
        N = kept positions.
    """
    labels, keep = batch["labels"], batch["keep"]  # [B, T], [N] positions t
    target = labels[:, keep + 1]  # [B, N]: the token each kept position predicts
    extra = {"logits_to_keep": keep} if s.keep_logits else {}
    with s.acc.autocast():
        out = s.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      use_cache=False, output_hidden_states=s.head is not None, **extra)
    logits = out.logits  # [B, N, V] (or [B, T, V])
    if not s.keep_logits:
        logits = logits[:, keep]
    ce_tok = selected_cross_entropy(logits, target)  # fp32 [B, N]
    dense = ce_tok.new_zeros(())
    if s.head is not None:
        at = batch["music_at"]
        query = s.head(out.hidden_states[-1][at[:, 0], at[:, 1]])  # [M, d]
        keys, idx = _dense_keys(s, batch["music_row"])
        dense = dense_contrastive_loss(query, keys, idx, s.prof.train.dense_temperature)
    if not s.sim_available:
        return ce_tok, ce_tok.new_zeros(()), dense, target
    emb = s.acc.unwrap_model(s.model).get_input_embeddings().weight  # [V, h]
    ids = [s.vocab.code_ids(m).to(emb.device) for m in range(len(grammar.MODALITIES))]
    with contextlib.nullcontext() if s.prof.train.self_sim_lambda > 0 else torch.no_grad():
        sim = music_self_similarity(emb, s.centroids, ids)
    return ce_tok, sim, dense, target


def _dense_keys(s: Setup, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys one micro-batch's queries are contrasted with, and each query's index in them:
    the whole catalog when it is small enough, else the batch's tracks plus a sample seeded by
    (seed, step) (the same on every process and on resume)."""
    n, want = s.content.shape[0], s.prof.train.dense_negatives
    if n <= want:
        return s.content, rows
    g = torch.Generator().manual_seed(s.prof.train.seed * 1_000_003 + s.step)
    pick = torch.unique(torch.cat([rows.cpu(), torch.randint(n, (want,), generator=g)]))
    return s.content[pick.to(s.content.device)], torch.searchsorted(pick, rows.cpu()).to(rows.device)


def _batch(s: Setup, samples: list) -> tuple[dict, torch.Tensor, int]:
    """One micro-batch on the device, with ``keep`` (the positions whose next token is
    labelled in any row); and, from the host copy, each sequence's real length [B] and the
    count of real positions that go through the LM head. Everything that needs a value is
    computed on the host before the copy, so a training step waits for the device once, when
    its metrics are logged, not at every micro-batch."""
    b = collate(samples, s.tokenizer.pad_token_id)
    keep = b["keep"] = (b["labels"][:, 1:] != IGNORE).any(0).nonzero().flatten()
    lengths = b["attention_mask"].sum(1)
    head = int((keep[None, :] < lengths[:, None]).sum())
    pin = s.acc.device.type == "cuda"
    return ({k: (v.pin_memory() if pin else v).to(s.acc.device, non_blocking=pin)
             for k, v in b.items()}, lengths, head)


def _ce_sums(ce_tok: torch.Tensor, target: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """[conv CE sum, conv labels, playlist CE sum, playlist labels] of one micro-batch."""
    lab = (target != IGNORE).float()  # [B, N]
    pl = (kind == PLAYLIST).float()[:, None]  # [B, 1]
    ce = ce_tok.detach()
    return torch.stack([(ce * lab * (1 - pl)).sum(), (lab * (1 - pl)).sum(),
                        (ce * lab * pl).sum(), (lab * pl).sum()])


@torch.no_grad()
def evaluate(s: Setup) -> dict:
    """Validation CE (conversation, playlist, all) over this process's share of the batches."""
    s.model.eval()
    if s.head is not None:
        s.head.eval()
    sums = torch.zeros(6, device=s.acc.device)
    for batch in s.valid[s.acc.process_index::s.acc.num_processes]:
        b, _, _ = _batch(s, batch)
        ce_tok, _, dense, target = _losses(s, b)
        sums[:4] += _ce_sums(ce_tok, target, b["kind"])
        sums[4] += dense * len(b["music_row"])
        sums[5] += len(b["music_row"])
    sums = s.acc.reduce(sums, "sum")
    s.model.train()
    if s.head is not None:
        s.head.train()
    out = {"val_ce": (sums[0] + sums[2]).item() / max(1.0, (sums[1] + sums[3]).item()),
           "val_ce_conversation": sums[0].item() / max(1.0, sums[1].item()),
           "val_ce_playlist": sums[2].item() / max(1.0, sums[3].item())}
    if s.head is not None:
        out["val_dense"] = sums[4].item() / max(1.0, sums[5].item())
    return out


def fit(s: Setup, report: Callable[[dict], None] | None = None) -> dict:
    """Train until ``max_steps`` or ``max_minutes``; checkpoint, validate, keep the best model.

    Args:
        s: from ``setup``.
        report: called on the main process with each step's metrics row (progress display).
    Returns:
        Summary: last step, best validation CE, final metrics, weight checksum per process.
    """
    tc, acc, run = s.prof.train, s.acc, s.run_dir
    start, rows = time.time(), []
    peak = peak_flops(acc.device)  # None on CPUs and unlisted GPUs: no "mfu" then
    flops = TrainFlops(acc.unwrap_model(s.model)) if peak else None
    s.model.train()
    last_eval = None
    while s.step < tc.max_steps:
        t0 = time.time()
        # Metrics stay on the device until the step is logged (one host-device sync a step).
        sums = torch.zeros(6, device=acc.device)  # 4 CE sums, self-sim, dense
        tokens = padded = 0
        step_flops = 0.0
        for micro in range(tc.grad_accum):
            b, lengths, head_positions = _batch(s, s.data.next_batch())
            tokens += int(lengths.sum())
            padded += b["attention_mask"].numel()
            sync = micro == tc.grad_accum - 1  # DDP all-reduce only on the last micro-batch
            with contextlib.nullcontext() if sync else acc.no_sync(s.model):
                ce_tok, sim, dense, target = _losses(s, b)
                # Mean over this micro-batch's labels; micro-batches weigh equally (as in
                # litgpt/nanoGPT), so accumulation matches a larger batch only approximately.
                n_lab = (target != IGNORE).sum().clamp_min(1)
                ce = ce_tok.sum() / n_lab
                loss = ce + tc.self_sim_lambda * sim + tc.dense_head * dense
                acc.backward(loss / tc.grad_accum)
            sums[:4] += _ce_sums(ce_tok, target, b["kind"])
            sums[4] += sim.detach() / tc.grad_accum
            sums[5] += dense.detach() / tc.grad_accum
            if flops is not None:
                step_flops += flops.step(lengths, head_positions)
        grad_norm = acc.clip_grad_norm_(_trained(s), tc.clip_grad) if tc.clip_grad else None
        lr = s.scheduler.get_last_lr()[0]  # the rate this step uses
        s.optimizer.step()
        s.optimizer.zero_grad(set_to_none=True)
        s.step += 1

        host = torch.tensor([tokens, padded, step_flops], dtype=torch.float64)
        g = acc.reduce(torch.cat([sums.double(), host.to(acc.device)]), "sum").cpu()
        # g: 4 CE sums, self-sim, dense, real tokens, padded tokens, FLOPs (all processes)
        dt = time.time() - t0
        row = {"step": s.step, "train_ce": (g[0] + g[2]).item() / max(1.0, (g[1] + g[3]).item()),
               "train_ce_conversation": g[0].item() / max(1.0, g[1].item()) if g[1] else None,
               "train_ce_playlist": g[2].item() / max(1.0, g[3].item()) if g[3] else None,
               "self_sim": g[4].item() / acc.num_processes, "lr": lr,
               "grad_norm": float(grad_norm) if grad_norm is not None else None,
               "tokens_per_s": g[6].item() / dt, "fill": g[6].item() / g[7].item(),
               "seconds": round(dt, 4), "elapsed_s": round(time.time() - start, 3)}
        if peak:  # model FLOPs utilisation over every process's device
            row["mfu"] = g[8].item() / dt / (peak * acc.num_processes)
        if s.head is not None:
            row["dense"] = g[5].item() / acc.num_processes
        # Every process must agree on the budget spent (the learning rate depends on it) and on
        # stopping, or DDP hangs on the next all-reduce: use the processes' mean elapsed time.
        elapsed = acc.reduce(torch.tensor(time.time() - start, device=acc.device,
                                          dtype=torch.float64), "mean").item()
        spent = elapsed / (60 * tc.max_minutes) if tc.max_minutes else 0.0
        if s.clock is not None:
            s.clock["time_frac"] = min(1.0, spent)
        # After the clock: the next step's rate follows the budget spent by this one (stepped
        # before the clock, it lagged two steps, and a run whose last steps were slow ended
        # far above the low end of its schedule).
        s.scheduler.step()
        out_of_time = spent >= 1.0
        final = s.step >= tc.max_steps or out_of_time
        if s.step % tc.eval_every == 0 or final:
            last_eval = evaluate(s)
            row.update(last_eval)
            if last_eval["val_ce"] < s.best_val:
                s.best_val = last_eval["val_ce"]
                if acc.is_main_process:
                    save_model(run, acc.unwrap_model(s.model), s.tokenizer,
                               acc.unwrap_model(s.head) if s.head is not None else None)
                    record_best(run, s.step, s.best_val)  # RUN/model now holds trained weights
                row["best"] = True
        rows.append(row)
        if acc.is_main_process:
            append_jsonl(run / "metrics.jsonl", [row])
            if report:
                report(row)
        if s.step % tc.save_every == 0 or final:
            if acc.is_main_process:
                save_checkpoint(run, model=acc.unwrap_model(s.model), optimizer=s.optimizer,
                                scheduler=s.scheduler, step=s.step,
                                data_position=s.data.position, extra={"best_val": s.best_val},
                                modules={"dense_head": acc.unwrap_model(s.head)}
                                if s.head is not None else None)
            acc.wait_for_everyone()
        if out_of_time:
            log.info("time budget of %s minutes spent at step %d", tc.max_minutes, s.step)
            break
    return _finish(s, rows, last_eval)


def _trained(s: Setup) -> list[torch.nn.Parameter]:
    """Every parameter the optimizer updates (the model's and the dense head's)."""
    return [*s.model.parameters(), *(s.head.parameters() if s.head is not None else ())]


def weights_checksum(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters (to check that processes hold identical weights)."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _finish(s: Setup, rows: list[dict], last_eval: dict | None) -> dict:
    from talkplay.train.plot import plot_curves

    acc = s.acc
    digest = weights_checksum(acc.unwrap_model(s.model))
    digests = gather_object([digest]) if acc.num_processes > 1 else [digest]
    summary = {"step": s.step, "best_val_ce": s.best_val, "last": rows[-1] if rows else None,
               "last_eval": last_eval, "num_processes": acc.num_processes,
               "weights_sha256": list(digests), "data": s.stats}
    if acc.is_main_process:
        write_json(s.run_dir / "summary.json", summary)
        plot_curves(s.run_dir / "metrics.jsonl", s.run_dir / "curves.png")
    acc.wait_for_everyone()
    return summary


def train(data_dir: str | Path, run_dir: str | Path, prof: Profile, fresh: bool = False,
          report: Callable[[dict], None] | None = None) -> dict:
    """``setup`` + ``fit``: the whole of ``talkplay train``. Returns ``fit``'s summary."""
    return fit(setup(data_dir, run_dir, prof, fresh=fresh), report)
