"""``talkplay train``: fine-tune the recommender LLM (works under ``accelerate launch`` too)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import TextColumn

from talkplay.cli.app import app, console, fail, progress_bar, task_per_key
from talkplay.config import profile as get_profile
from talkplay.data.errors import DataError


@app.command("train")
def train(
    data: Annotated[Path, typer.Option(
        "--data", help="Dataset directory (with tokenizer/ from `talkplay tokenize`).")],
    run: Annotated[Path, typer.Option(
        "--run", "--run-dir", help="Run directory (resumed if it has a checkpoint). `--run-dir` "
        "is an alias that torchrun does not mistake for its own `--run-path`.")],
    profile: Annotated[str, typer.Option(help="tiny | small | paper.")] = "small",
    base: Annotated[str | None, typer.Option(help="Base model: smollm2, tiny, or a HF name/path.")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Optimizer steps.")] = None,
    max_minutes: Annotated[float | None, typer.Option(
        min=0, help="Wall-clock budget (> 0); saves at the end.")] = None,
    lr: Annotated[float | None, typer.Option(min=0, help="AdamW learning rate (> 0).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Sequences per micro-batch per process.")] = None,
    grad_accum: Annotated[int | None, typer.Option(
        min=1, help="Micro-batches per optimizer step.")] = None,
    context_length: Annotated[int | None, typer.Option(
        min=32, help="Tokens per sequence (paper: 1024).")] = None,
    self_sim_lambda: Annotated[float | None, typer.Option(
        min=0, help="Self-similarity weight (0: off).")] = None,
    playlist_share: Annotated[float | None, typer.Option(
        min=0, help="Playlist sequences per conversation.")] = None,
    playlist_dropout: Annotated[float | None, typer.Option(
        min=0, max=1, help="Share of warm tracks' blocks in training conversations shown with "
                           "<|playlist-none|> (modality dropout for cold tracks; 0: paper).")] = None,
    grounded_replies: Annotated[bool | None, typer.Option(
        "--grounded-replies/--no-grounded-replies",
        help="Show each music block's track facts (title, artist, album, year, tags) after it, "
             "so replies are written with the track in view (not in the paper).")] = None,
    dense_head: Annotated[float | None, typer.Option(
        min=0, help="Weight of the dense head's contrastive loss: the hidden state at "
                    "<start_of_music> learns to pick its track's content embedding, so "
                    "talkplay-hybrid can score tracks new to the catalog (0: no head, the paper).")] = None,
    warmup_steps: Annotated[int | None, typer.Option(min=0)] = None,
    eval_every: Annotated[int | None, typer.Option(min=1, help="Validate every N steps.")] = None,
    save_every: Annotated[int | None, typer.Option(min=1, help="Checkpoint every N steps.")] = None,
    seed: Annotated[int | None, typer.Option(
        min=0, help="Random seed (token init, data order, sampling).")] = None,
    train_top_layers: Annotated[int | None, typer.Option(
        min=1, help="Train only the top N layers + embeddings (no backward below them; default: all).")] = None,
    token_init: Annotated[str | None, typer.Option(
        help="Music-token embeddings start as hewitt (paper: sampled like existing rows) or "
        "grounded (mean embedding of each cluster's words).")] = None,
    precision: Annotated[str | None, typer.Option(
        help="auto (bf16 where the GPU or CPU has bfloat16 units, else fp32) | bf16 | fp32.")] = None,
    fit_head: Annotated[bool, typer.Option(
        "--fit-head/--no-fit-head",
        help="With --dense-head: after training, refit the head on the trained model's frozen "
             "hidden states, early-stopped on the valid split (`talkplay fit-head`; off by "
             "default: on CPCD it doubled the head's valid MRR but lowered the hybrid's test MRR, "
             "docs/training.md).")] = False,
    fresh: Annotated[bool, typer.Option(help="Start over even if RUN has a checkpoint.")] = False,
) -> None:
    """Fine-tune the LLM on conversations + playlist continuation + self-similarity loss."""
    from transformers.utils import logging as hf_logging

    from talkplay.train.loop import fit, setup

    hf_logging.disable_progress_bar()  # our own progress bar is the one to watch

    try:
        prof = get_profile(profile)
    except ValueError as e:
        fail(str(e))
    if base is not None:
        prof.model.base = base
    for name, value in (("--lr", lr), ("--max-minutes", max_minutes)):
        if value is not None and value <= 0:  # typer's min is inclusive; these must be > 0
            fail(f"{name} must be > 0, got {value}")
    overrides = {"max_steps": max_steps, "max_minutes": max_minutes, "lr": lr,
                 "batch_size": batch_size, "grad_accum": grad_accum,
                 "context_length": context_length, "self_sim_lambda": self_sim_lambda,
                 "playlist_share": playlist_share, "playlist_dropout": playlist_dropout,
                 "dense_head": dense_head, "grounded_replies": grounded_replies,
                 "warmup_steps": warmup_steps,
                 "eval_every": eval_every, "save_every": save_every, "seed": seed,
                 "train_top_layers": train_top_layers, "precision": precision,
                 "token_init": token_init}
    for k, v in overrides.items():
        if v is not None:
            setattr(prof.train, k, v)
    if not (data / "tokenizer" / "manifest.json").exists():
        fail(f"{data}/tokenizer: no codebook (run `talkplay tokenize --data {data}` first)")
    try:
        s = setup(data, run, prof, fresh=fresh)
    except (DataError, FileNotFoundError, KeyError, ValueError) as e:
        fail(str(e))
    main = s.acc.is_main_process
    if main:
        st = s.stats
        console.print(f"[bold]train[/] {prof.model.base} on {data}: "
                      f"{st['train']['sequences']} conversation sequences "
                      f"({st['train']['truncated_conversations']} conversations split/truncated), "
                      f"{st['train']['playlists']} playlists; valid {st['valid']['sequences']} "
                      f"sequences; {s.acc.num_processes} process(es) on {s.acc.device}")
        if s.step:
            console.print(f"resuming at step {s.step}")
    with progress_bar(TextColumn("{task.fields[info]}"), disable=not main) as bar:
        task = bar.add_task("training", total=prof.train.max_steps, completed=s.step, info="")

        def report(row: dict) -> None:
            info = f"ce {row['train_ce']:.3f} sim {row['self_sim']:.3f} {row['tokens_per_s']:.0f} tok/s"
            if "dense" in row:
                info += f" dense {row['dense']:.3f}"
            if "val_ce" in row:
                info += f" val {row['val_ce']:.3f}"
                console.log(f"step {row['step']}: train ce {row['train_ce']:.4f}, "
                            f"val ce {row['val_ce']:.4f}{' (best)' if row.get('best') else ''}")
            bar.update(task, completed=row["step"], info=info)

        try:
            summary = fit(s, report)
        except (DataError, FileNotFoundError, KeyError, ValueError) as e:
            fail(str(e))
    if main:
        console.print(f"done at step {summary['step']}: best val ce {summary['best_val_ce']:.4f}; "
                      f"model in {run / 'model'}, curves in {run / 'curves.png'}")
        if fit_head and s.head is not None and summary["step"] > 0:
            _refit_head(run)


def _refit_head(run: Path) -> None:
    """``talkplay fit-head``'s work, with progress and a one-line result."""
    from talkplay.evaluate.head_fit import refit_run_head

    with progress_bar() as bar:
        try:
            rec = refit_run_head(run, progress=task_per_key(
                bar, lambda stage: f"dense head: {stage} states"))
        except (DataError, FileNotFoundError, ValueError) as e:
            fail(str(e))
    if rec is None:
        fail(f"{run}: the run has no dense head (train with --dense-head W)")
    scores = ", ".join(f"{k} {v:.4f}" for k, v in rec["valid_mrr"].items())
    console.print(f"dense head: kept {rec['kept']} (valid MRR of the head alone: {scores}; "
                  f"{rec['train_targets']} train targets, {rec['seconds']:.0f} s); "
                  f"{run / 'head_fit.json'}")


@app.command("fit-head")
def fit_head_command(
    run: Annotated[Path, typer.Option("--run", help="Run directory trained with --dense-head.")],
) -> None:
    """Refit a run's dense head on the trained model's frozen hidden states (train split),
    keeping whichever head ranks the valid split best (`talkplay train --fit-head` does this
    after training)."""
    if not (run / "manifest.json").is_file():
        fail(f"{run}: not a TalkPlay run (expected manifest.json; train one with `talkplay train`)")
    _refit_head(run)


@app.command("fit-retriever")
def fit_retriever_command(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory with train and valid "
                                                      "conversations.")],
    out: Annotated[Path | None, typer.Option(
        help="Folder to write the fine-tuned encoder to (default DATA/retriever; replaced "
             "atomically).")] = None,
    base: Annotated[str, typer.Option(
        help="Text encoder to start from: minilm or a sentence-transformers name / path.")] = "minilm",
    max_epochs: Annotated[int, typer.Option(min=1, help="Epochs at most.")] = 6,
    patience: Annotated[int, typer.Option(
        min=1, help="Epochs without a validation gain before training stops.")] = 2,
    lr: Annotated[float, typer.Option(min=0, help="AdamW learning rate of the encoder.")] = 2e-5,
    batch_size: Annotated[int, typer.Option(min=2, help="Pairs per batch (the negatives).")] = 64,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:1 ...")] = "cpu",
    decay: Annotated[float, typer.Option(
        help="Query weight decay per user turn (as `talkplay evaluate --decay`).")] = 0.5,
    track_weight: Annotated[float, typer.Option(
        help="Query weight of tracks in the history (as `talkplay evaluate --track-weight`).")] = 0.5,
) -> None:
    """Fine-tune the dense retriever's text encoder on the training conversations (a dual
    encoder, CPCD's strong baseline), keeping the epoch that ranks the valid split best; use
    it with `talkplay evaluate --text-model DIR` (dense, rrf and the hybrids)."""
    from talkplay.data.dataset import read_dataset
    from talkplay.evaluate.baselines.common import BaselineOptions
    from talkplay.evaluate.baselines.retriever_fit import (
        FIT_FILE,
        RetrieverFitConfig,
        fit_retriever,
    )

    out = out or data / "retriever"
    cfg = RetrieverFitConfig(base=base, max_epochs=max_epochs, patience=patience, lr=lr,
                             batch_size=batch_size, device=device)
    try:
        ds = read_dataset(data)
        with progress_bar() as bar:
            rec = fit_retriever(ds, out, cfg, BaselineOptions(decay=decay, track_weight=track_weight),
                                progress=task_per_key(bar, lambda epoch: f"epoch {epoch}"))
    except (DataError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    epochs = ", ".join(f"{e}: {m:.4f}" for e, m in rec["history"])
    console.print(f"retriever: kept epoch {rec['best_epoch']} (valid MRR of dense alone by epoch: "
                  f"{epochs}; {rec['pairs']} pairs from {rec['train_targets']} train targets, "
                  f"{rec['seconds']:.0f} s); {out} ({FIT_FILE} inside). Use it with "
                  f"`talkplay evaluate --text-model {out}`.")
