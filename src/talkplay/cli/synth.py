"""``talkplay data synth``: build the embedded music world (the offline default dataset)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from talkplay.cli.app import console, data_app, fail, progress_bar
from talkplay.cli.data import print_counts
from talkplay.data.world import WorldConfig, synth_world
from talkplay.io import MANIFEST


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")],
    tracks: int = typer.Option(WorldConfig.n_tracks, help="Catalog size (new releases included)."),
    artists: int = typer.Option(WorldConfig.n_artists, help="Number of artists."),
    playlists: int = typer.Option(WorldConfig.n_playlists, help="Number of playlists."),
    scenes: int = typer.Option(WorldConfig.n_scenes, help="Hidden listener scenes."),
    seed: int = typer.Option(WorldConfig.seed, help="Random seed; the world is a function of it."),
    new_releases: float = typer.Option(WorldConfig.new_release_fraction,
                                       help="Share of tracks released in the test window (cold)."),
    audio: bool = typer.Option(WorldConfig.audio, "--audio/--no-audio", help="Render audio clips."),
    seconds: float = typer.Option(WorldConfig.audio_seconds, help="Clip length in seconds."),
    audio_format: str = typer.Option(WorldConfig.audio_format, "--format", help="ogg or flac."),
    workers: int = typer.Option(min(4, os.cpu_count() or 1), help="Audio rendering processes."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset in --out."),
) -> None:
    """Generate the embedded music world: tracks with tags, lyrics and audio, and playlists."""
    if audio_format not in ("ogg", "flac"):
        fail(f"--format must be ogg or flac, not {audio_format!r}")
    if out.exists() and not out.is_dir():
        fail(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST).exists():
            fail(f"{out} is not empty and holds no dataset; choose an empty or new directory")
        if not overwrite:
            fail(f"{out} already holds a dataset; pass --overwrite to replace it")
    cfg = WorldConfig(seed=seed, n_tracks=tracks, n_artists=artists, n_playlists=playlists,
                      n_scenes=scenes, new_release_fraction=new_releases, audio=audio,
                      audio_seconds=seconds, audio_format=audio_format)
    start = time.perf_counter()
    try:
        with progress_bar(remaining=False, disable=not audio) as progress:
            task = progress.add_task("rendering audio", total=tracks)
            world = synth_world(out, cfg, workers=workers,
                                on_progress=lambda k: progress.advance(task, k))
    except ValueError as e:
        fail(str(e))
    elapsed = time.perf_counter() - start
    print_counts(world.dataset, f"{out} (world, seed={seed})")
    console.print(f"split rule: {world.split_rule}")
    console.print(f"done in {elapsed:.1f} s")


@data_app.command("synth-mpd")
def synth_mpd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the slice files in.")],
    playlists: Annotated[int, typer.Option(min=1, help="Number of playlists.")] = 10_000,
    tracks: Annotated[int | None, typer.Option(
        min=1, help="Catalog size (default: 2.3 per playlist, as MPD).")] = None,
    slice_size: Annotated[int, typer.Option(min=1, help="Playlists per slice file.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed; every field is a function of it.")] = 0,
) -> None:
    """Write MPD-shaped slice files (the Million Playlist Dataset's JSON layout and skew, text
    only) for scale tests: import them with `talkplay data import mpd OUT`."""
    from talkplay.data.mpd_synth import write_mpd_slices

    start = time.perf_counter()
    n_files = -(-playlists // slice_size)
    with progress_bar() as progress:
        task = progress.add_task("writing slices", total=n_files)
        files = write_mpd_slices(out, playlists, slice_size=slice_size, tracks=tracks, seed=seed,
                                 on_slice=lambda _: progress.advance(task))
    console.print(f"{len(files)} slice files, {playlists:,} playlists in {out} "
                  f"({time.perf_counter() - start:.1f} s)")
