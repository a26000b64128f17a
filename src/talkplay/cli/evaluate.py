"""``talkplay evaluate``: baselines (and TalkPlay runs) under the paper or CPCD protocol."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markdown import Markdown

from talkplay.cli.app import app, console, fail, progress_bar, quiet_libraries
from talkplay.data.dataset import Dataset, read_dataset
from talkplay.data.errors import DataError
from talkplay.io import MANIFEST, make_manifest, write_json

# Baselines import faiss / bm25s: their names (talkplay.evaluate.baselines.SYSTEMS) are read
# inside the command so `talkplay --help` stays fast.
KS = "1,5,10,20,100"
TALKPLAY_MODES = {"talkplay": None, "talkplay-paper": "paper", "talkplay-beam": "beam"}


def build_talkplay(run: Path | None, name: str, keep_history: bool = False):
    """TalkPlayRecommender from a run directory, ranking only (no reply text).

    Args:
        run: the fine-tuned run directory.
        name: "talkplay" (the run's saved mode), "talkplay-paper" or "talkplay-beam".
        keep_history: allow recommending tracks already played (``exclude_seen=False``), as
            ``--keep-history`` does for the baselines.
    Returns:
        The recommender, named ``name``.
    Raises:
        DataError: no run given, or the run does not load.
    """
    if run is None:
        raise DataError(f"system {name!r} needs --run RUN (a fine-tuned run directory)")
    from talkplay.recommend.recommender import load_talkplay

    # Evaluation ranks tracks only: a reply per target would cost most of the time, unused.
    rec = load_talkplay(run, mode=TALKPLAY_MODES[name], with_reply=False,
                        exclude_seen=not keep_history)
    rec.name = name
    return rec


def build_systems(ds: Dataset, names: list[str], run: Path | None, options,
                  keep_history: bool = False) -> tuple[dict, dict[str, float]]:
    """Build each named system; returns (systems, build seconds per system)."""
    from talkplay.evaluate.baselines import SYSTEMS

    systems, seconds = {}, {}
    for name in names:
        started = time.perf_counter()
        with console.status(f"building {name} ..."):
            if name in TALKPLAY_MODES:
                systems[name] = build_talkplay(run, name, keep_history)
            else:
                systems[name] = SYSTEMS[name](ds, options)
        seconds[name] = round(time.perf_counter() - started, 2)
    return systems, seconds


def write_manifest(out: Path, *, data: Path, run: Path | None, systems: dict, protocol: str,
                   resolved: str, split: str, limit: int | None, ks: tuple[int, ...], options,
                   keep_history: bool) -> None:
    """OUT/manifest.json: what was evaluated, on what, with which settings."""
    talkplay = {name: {"mode": rec.mode, "with_reply": rec.with_reply, "generate": asdict(rec.cfg)}
                for name, rec in systems.items() if name in TALKPLAY_MODES}
    write_json(out / MANIFEST, make_manifest(
        "evaluation", 1, data=str(data.resolve()), run=str(run.resolve()) if run else None,
        systems=list(systems), protocol=protocol, resolved_protocol=resolved, split=split,
        limit=limit, ks=list(ks), keep_history=keep_history, baseline_options=asdict(options),
        talkplay=talkplay))


@app.command("evaluate")
def evaluate(
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for results and predictions.")],
    systems: Annotated[str, typer.Option(
        help="Comma-separated: bm25, dense, cooc, clap, popularity, talkplay, talkplay-paper, "
             "talkplay-beam.")] = "bm25,dense,cooc,clap,popularity",
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
    quiet_libraries()  # before the imports too: faiss logs while it is imported
    from talkplay.evaluate.baselines import SYSTEMS, BaselineOptions
    from talkplay.evaluate.report import comparison_table, main_table, turn_table
    from talkplay.evaluate.run import evaluate as run_evaluate

    quiet_libraries()  # after the baselines import: bm25s sets its log level on import
    names = [s.strip() for s in systems.split(",") if s.strip()]
    unknown = [n for n in names if n not in SYSTEMS and n not in TALKPLAY_MODES]
    if unknown or not names:
        fail(f"unknown system(s) {unknown}; choose from {list(SYSTEMS) + list(TALKPLAY_MODES)}")
    try:
        cutoffs = tuple(int(k) for k in ks.split(","))
        if min(cutoffs) < 1:
            raise ValueError
    except ValueError:
        fail(f"--ks must be positive integers separated by commas, got {ks!r}")
    try:
        ds = read_dataset(data)
        options = BaselineOptions(decay=decay, track_weight=track_weight, text_model=text_model,
                                  clap_model=clap_model)
        built, build_seconds = build_systems(ds, names, run, options, keep_history)
        with progress_bar() as bar:
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
        write_manifest(out, data=data, run=run, systems=built, protocol=protocol,
                       resolved=results["protocol"], split=split, limit=limit, ks=cutoffs,
                       options=options, keep_history=keep_history)
    except (DataError, ValueError) as e:
        fail(str(e))
    console.print(Markdown(f"**{results['protocol']} protocol**, {results['targets']} targets "
                           f"in {results['conversations']} conversations (micro average)"))
    console.print(Markdown(main_table(results, "micro")))
    console.print(Markdown("MRR by turn index"))
    console.print(Markdown(turn_table(results)))
    if results.get("comparisons"):
        console.print(Markdown("Paired bootstrap over conversations (first system minus each other)"))
        console.print(Markdown(comparison_table(results)))
    console.print(f"wrote {out}/results.json, results.md, manifest.json, mrr_by_turn.png and "
                  "predictions")
