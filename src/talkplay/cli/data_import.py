"""``talkplay data import mpd|cpcd|talkplay``: third-party data into a TalkPlay dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from talkplay.cli.app import console, data_app, fail, progress_bar, renamed
from talkplay.cli.data import print_counts
from talkplay.data.cpcd import import_cpcd
from talkplay.data.errors import DataError
from talkplay.data.importing import ImportResult
from talkplay.data.mpd import find_slices, import_mpd
from talkplay.data.talkplay_db import import_talkplay

import_app = typer.Typer(help="Import MPD, CPCD or TalkPlay conversation files.",
                         no_args_is_help=True)
data_app.add_typer(import_app, name="import")

Out = Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")]
SkipInvalid = Annotated[bool, typer.Option(
    "--skip-invalid", help="Drop bad records and report counts instead of stopping at the first.")]


def _report(result: ImportResult, title: str, started: float) -> None:
    print_counts(result.dataset, title)
    if result.dropped.total:
        table = Table(title=f"dropped under --skip-invalid ({result.dropped.total})")
        table.add_column("what: why")
        table.add_column("count", justify="right")
        for reason, n in result.dropped.counts.most_common():
            table.add_row(reason, str(n))
        console.print(table)
        for example in result.dropped.examples[:5]:
            console.print(f"  e.g. {example}", highlight=False)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"wrote {result.path} in {time.perf_counter() - started:.2f} s")


@import_app.command("mpd")
def mpd(
    paths: Annotated[list[Path], typer.Argument(help="mpd.slice.*.json files or directories of them.")],
    out: Out,
    test_size: Annotated[int, typer.Option(
        min=0, help="Test playlists, sampled from the latest modified_at dates.")] = 1000,
    valid_size: Annotated[int, typer.Option(
        min=0, help="Valid playlists, sampled from the next latest dates.")] = 1000,
    seed: Annotated[int, typer.Option(help="Sampling seed of the split.")] = 0,
    skip_invalid: SkipInvalid = False,
) -> None:
    """Import Million Playlist Dataset slices with the paper's chronological split."""
    started = time.perf_counter()
    try:
        files = find_slices(paths)
        with progress_bar(remaining=False, transient=True) as progress:
            task = progress.add_task("reading slices", total=len(files))
            result = import_mpd(files, out, test_size=test_size, valid_size=valid_size, seed=seed,
                                skip_invalid=skip_invalid,
                                on_file=lambda _path, _n: progress.advance(task))
    except DataError as e:
        fail(str(e))
    _report(result, f"{out} (MPD, {len(files)} slice files)", started)


@import_app.command("cpcd")
def cpcd(
    train: Annotated[Path, typer.Option(
        "--train", help="CPCD dialogs JSONL (train; or all of them, with the fractions).")],
    out: Out,
    test: Annotated[Path | None, typer.Option(
        "--test", help="CPCD dialogs JSONL whose dialogs are all test.")] = None,
    test_fraction: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of --train dialogs held out as test (e.g. 0.25).")] = 0.0,
    valid_fraction: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of --train dialogs held out as valid.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the random hold-out.")] = 0,
    tracks: Annotated[Path | None, typer.Option(
        "--track-corpus", help="CPCD track corpus JSONL (cpcd_v1.tracks.jsonl): rank the whole corpus "
                         "instead of the dialogs' own track lists.")] = None,
    skip_invalid: SkipInvalid = False,
) -> None:
    """Import Conversational Playlist Curation Dataset dialogs (both schema versions)."""
    started = time.perf_counter()
    try:
        result = import_cpcd(train, out, test=test, test_fraction=test_fraction,
                             valid_fraction=valid_fraction, seed=seed, skip_invalid=skip_invalid,
                             tracks=tracks)
    except DataError as e:
        fail(str(e))
    _report(result, f"{out} (CPCD)", started)


@import_app.command("talkplay")
def talkplay(
    files: Annotated[list[Path], typer.Argument(help="talkplay-db JSON or JSONL conversation files.")],
    catalog: Annotated[Path, typer.Option(
        "--catalog", help="Existing TalkPlay dataset directory (e.g. an MPD import).")],
    out: Out,
    default_split: Annotated[str | None, typer.Option(
        help="Split for conversations whose pid is not a playlist of the catalog "
             "(train, valid or test).")] = None,
    skip_invalid: SkipInvalid = False,
    old_split: Annotated[str | None, typer.Option("--split", hidden=True)] = None,
) -> None:
    """Import TalkPlay (talkplay-db-v1) conversations joined to a catalog dataset by track id."""
    split = renamed(default_split, old_split, "--default-split", "--split")
    started = time.perf_counter()
    try:
        result = import_talkplay(files, catalog, out, split=split, skip_invalid=skip_invalid)
    except DataError as e:
        fail(str(e))
    _report(result, f"{out} (TalkPlay conversations on {catalog})", started)
