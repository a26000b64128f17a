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
