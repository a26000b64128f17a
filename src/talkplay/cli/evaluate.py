"""``talkplay evaluate``: baselines (and TalkPlay runs) under the paper or CPCD protocol."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from talkplay.cli.app import app, console, fail
from talkplay.data.dataset import Dataset, read_dataset
from talkplay.data.errors import DataError

# Baselines import faiss / bm25s: loaded inside the command so `talkplay --help` stays fast.
BASELINES = ("bm25", "dense", "clap", "popularity")
KS = "1,5,10,20,100"
TALKPLAY_MODES = {"talkplay": None, "talkplay-paper": "paper", "talkplay-beam": "beam"}


def _quiet_libraries() -> None:
    """Keep third-party INFO chatter (faiss loading, bm25s, model loading bars) off the table."""
    if logging.getLogger().level <= logging.DEBUG:
        return
    for name in ("faiss", "faiss.loader", "bm25s", "sentence_transformers", "matplotlib", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def build_talkplay(run: Path | None, name: str):
    """TalkPlayRecommender from a run directory; ``name`` picks the ranking mode.

    Raises:
        DataError: no run given, or the recommender module is not available.
    """
    if run is None:
        raise DataError(f"system {name!r} needs --run RUN (a fine-tuned run directory)")
    try:
        from talkplay.recommend.recommender import TalkPlayRecommender
    except ImportError as e:
        raise DataError(f"system {name!r} is unavailable: cannot import "
                        f"talkplay.recommend.recommender.TalkPlayRecommender ({e})") from e
    from talkplay.config import GenerateConfig, from_dict
    from talkplay.io import read_json

    cfg_path = run / "config.json"
    gen = GenerateConfig()
    if cfg_path.exists():
        gen = from_dict(GenerateConfig, read_json(cfg_path).get("generate", {}))
    mode = TALKPLAY_MODES[name] or gen.mode
    try:
        rec = TalkPlayRecommender.from_run(run, gen, mode=mode)
    except OSError as e:  # missing or unreadable run files
        raise DataError(f"cannot load the run for {name!r}: {e}", file=str(run)) from e
    rec.name = name
    return rec


def build_systems(ds: Dataset, names: list[str], run: Path | None,
                  options) -> tuple[dict, dict[str, float]]:
    """Build each named system; returns (systems, build seconds per system)."""
    from talkplay.evaluate.baselines import SYSTEMS

    systems, seconds = {}, {}
    for name in names:
        started = time.perf_counter()
        with console.status(f"building {name} ..."):
            if name in TALKPLAY_MODES:
                systems[name] = build_talkplay(run, name)
            else:
                systems[name] = SYSTEMS[name](ds, options)
        seconds[name] = round(time.perf_counter() - started, 2)
    return systems, seconds


@app.command("evaluate")
def evaluate(
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for results and predictions.")],
    systems: Annotated[str, typer.Option(
        help="Comma-separated: bm25, dense, clap, popularity, talkplay, talkplay-paper, "
             "talkplay-beam.")] = "bm25,dense,clap,popularity",
    run: Annotated[Path | None, typer.Option(help="Fine-tuned run directory (talkplay systems).")] = None,
    protocol: Annotated[str, typer.Option(help="auto, paper or cpcd (auto: cpcd for CPCD imports).")] = "auto",
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many test conversations.")] = None,
    ks: Annotated[str, typer.Option(help="Hit@K cut-offs, comma-separated.")] = KS,
    split: Annotated[str, typer.Option(help="Conversation split to evaluate.")] = "test",
    text_model: Annotated[str, typer.Option(
        help="Text encoder of dense / tagclap: minilm or a sentence-transformers name.")] = "minilm",
    clap_model: Annotated[str, typer.Option(
        help="tagclap (offline substitute) or a transformers ClapModel name/path.")] = "tagclap",
    decay: Annotated[float, typer.Option(help="Query weight decay per user turn of age.")] = 0.5,
    track_weight: Annotated[float, typer.Option(help="Query weight of tracks in the history.")] = 0.5,
    keep_history: Annotated[bool, typer.Option(
        help="(paper protocol) allow recommending tracks already in the history.")] = False,
) -> None:
    """Evaluate systems on the test conversations; write results.json/.md, a plot and predictions."""
    names = [s.strip() for s in systems.split(",") if s.strip()]
    unknown = [n for n in names if n not in BASELINES and n not in TALKPLAY_MODES]
    if unknown or not names:
        fail(f"unknown system(s) {unknown}; choose from {list(BASELINES) + list(TALKPLAY_MODES)}")
    try:
        cutoffs = tuple(int(k) for k in ks.split(","))
        if min(cutoffs) < 1:
            raise ValueError
    except ValueError:
        fail(f"--ks must be positive integers separated by commas, got {ks!r}")
    _quiet_libraries()
    from talkplay.evaluate.baselines import BaselineOptions
    from talkplay.evaluate.report import main_table, turn_table
    from talkplay.evaluate.run import evaluate as run_evaluate

    try:
        ds = read_dataset(data)
        options = BaselineOptions(decay=decay, track_weight=track_weight, text_model=text_model,
                                  clap_model=clap_model)
        built, build_seconds = build_systems(ds, names, run, options)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as bar:
            tasks: dict[str, int] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done)

            results = run_evaluate(ds, built, protocol=protocol, ks=cutoffs, limit=limit,
                                   out_dir=out, progress=progress, split=split,
                                   exclude_history=not keep_history,
                                   system_info={n: {"build_seconds": s}
                                                for n, s in build_seconds.items()})
    except (DataError, ValueError) as e:
        fail(str(e))
    console.print(Markdown(f"**{results['protocol']} protocol**, {results['targets']} targets "
                           f"in {results['conversations']} conversations (micro average)"))
    console.print(Markdown(main_table(results, "micro")))
    console.print(Markdown("MRR by turn index"))
    console.print(Markdown(turn_table(results)))
    console.print(f"wrote {out}/results.json, results.md, mrr_by_turn.png and predictions")
