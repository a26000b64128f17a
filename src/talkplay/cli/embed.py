"""``talkplay embed`` (item embeddings per modality) and ``talkplay tokenize`` (K-means codebooks)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from talkplay.cli.app import app, console, fail, progress_bar, renamed
from talkplay.config import profile as get_profile
from talkplay.data.errors import DataError
from talkplay.tokenize.grammar import MODALITIES


@contextmanager
def _progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A progress-bar factory for the library: (label, total) -> advance(n)."""
    with progress_bar() as bars:
        def factory(label: str, total: int) -> Callable[[int], None]:
            task = bars.add_task(label, total=total)
            return lambda n: bars.advance(task, n)
        yield factory


def _diagnostics_table(data: Path, modalities: list[str]) -> None:
    from talkplay.data.dataset import read_dataset
    from talkplay.embed.diagnostics import genre_agreement

    tracks = read_dataset(data).tracks
    rows = [(m, genre_agreement(data, tracks, m)) for m in modalities]
    rows = [(m, r) for m, r in rows if r is not None]
    if not rows:
        return
    table = Table(title="nearest-neighbour genre agreement (cosine; genre = first genre tag)")
    for col in ("modality", "tracks", "genres", "agree@1", "agree@k", "chance", "lift@k"):
        table.add_column(col, justify="left" if col == "modality" else "right")
    for m, r in rows:
        table.add_row(m, str(r["n"]), str(r["labels"]), f"{r['at_1']:.3f}",
                      f"{r['at_k']:.3f} (k={r['k']})", f"{r['chance']:.3f}", f"{r['lift_at_k']:.2f}x")
    console.print(table)


@app.command("embed")
def embed(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory.")],
    profile: Annotated[str, typer.Option(help="tiny | small | paper.")] = "small",
    modality: Annotated[list[str] | None, typer.Option(
        "--modality", "-m", help="Build only this modality (repeatable).")] = None,
    encoder: Annotated[list[str] | None, typer.Option(
        "--encoder", help="MODALITY=NAME, e.g. semantic=nvidia/NV-Embed-v2 or audio=musicnn "
        "(repeatable).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Items per encoder batch.")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:1 ...")] = None,
    pseudo_tags: Annotated[bool | None, typer.Option(
        "--pseudo-tags/--no-pseudo-tags",
        help="Give untagged tracks with audio the audio tagger's top tags.")] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        help="Allow text models that ship their own code (NV-Embed-v2).")] = False,
    force: Annotated[bool, typer.Option(
        help="Recompute even when the inputs are unchanged.")] = False,
    chunk_size: Annotated[int, typer.Option(help="Items per resumable chunk.")] = 1024,
    item2vec_epochs: Annotated[int | None, typer.Option(
        min=1, help="item2vec passes over the training playlists (profile default: 20).")] = None,
    item2vec_workers: Annotated[int | None, typer.Option(
        min=1, help="item2vec worker threads; 1 (default) gives the same vectors on every run, "
        "more train faster on as many cores but depend on thread timing.")] = None,
    diagnose: Annotated[bool, typer.Option(
        help="Genre agreement of every modality, not only audio.")] = False,
) -> None:
    """Embed every track per modality into DATA/embeddings (cached by input fingerprint;
    an interrupted run resumes from its finished chunks)."""
    from talkplay.embed.build import ORDER, build_embeddings
    from talkplay.embed.registry import check_encoder

    try:
        cfg = get_profile(profile).embed
    except ValueError as e:
        fail(str(e))
    for spec in encoder or []:
        m, sep, name = spec.partition("=")
        if not sep or m not in ORDER or not name:
            fail(f"--encoder {spec!r}: expected MODALITY=NAME with MODALITY in {', '.join(ORDER)}")
        try:
            check_encoder(m, name)
        except ValueError as e:
            fail(f"--encoder {spec!r}: {e}")
        cfg.encoders[m] = name
    for key, value in (("batch_size", batch_size), ("device", device),
                       ("pseudo_tags", pseudo_tags), ("item2vec_epochs", item2vec_epochs),
                       ("item2vec_workers", item2vec_workers)):
        if value is not None:
            setattr(cfg, key, value)
    cfg.trust_remote_code = trust_remote_code
    try:
        with _progress() as factory:
            reports = build_embeddings(data, cfg, modalities=modality or None, force=force,
                                       progress=factory, chunk_size=chunk_size)
    except (DataError, ValueError, FileNotFoundError, ImportError) as e:
        fail(str(e))
    table = Table(title=f"embeddings in {data}/embeddings")
    for col in ("modality", "encoder", "tracks", "dim", "load s", "encode s", "tracks/s", ""):
        table.add_column(col, justify="left" if col in ("modality", "encoder", "") else "right")
    for r in reports:
        table.add_row(r.modality, r.encoder, str(r.n), str(r.dim), f"{r.load_seconds:.1f}",
                      f"{r.seconds - r.load_seconds:.1f}",
                      f"{r.items_per_s:.1f}" if r.items_per_s else "-",
                      "cached" if r.cached else "built")
    console.print(table)
    _diagnostics_table(data, list(ORDER) if diagnose else ["audio"])


def _stats_tables(stats: dict) -> None:
    mods = Table(title=f"codebooks: {stats['items']} tracks ({stats['warm']} warm, "
                       f"{stats['cold']} cold)")
    for col in ("modality", "K", "tracks", "coverage all/warm/cold", "empty", "min", "q10",
                "median", "q90", "max"):
        mods.add_column(col, justify="left" if col == "modality" else "right")
    for m in MODALITIES:
        s = stats["modalities"][m]
        cov = "/".join(f"{s['coverage'][g]:.2f}" for g in ("all", "warm", "cold"))
        if s["k"] == 0:
            mods.add_row(m, "0", "0", cov, "-", "-", "-", "-", "-", "-")
            continue
        mods.add_row(m, str(s["k"]), str(s["items"]), cov, str(s["empty"]), str(s["min"]),
                     f"{s['q10']:.0f}", f"{s['q50']:.0f}", f"{s['q90']:.0f}", str(s["max"]))
    console.print(mods)
    tuples = Table(title="full 5-token tuples (counts over the whole catalog)")
    for col in ("items", "tracks", "distinct tuples", "tracks/tuple", "collision rate",
                "max tracks/tuple"):
        tuples.add_column(col, justify="left" if col == "items" else "right")
    for g in ("all", "warm", "cold"):
        t = stats["tuples"][g]
        tuples.add_row(g, str(t["items"]), str(t["distinct_tuples"]), f"{t['items_per_tuple']:.3f}",
                       f"{t['collision_rate']:.3f}", str(t["max_items_per_tuple"]))
    console.print(tuples)


@app.command("tokenize")
def tokenize(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory with embeddings/.")],
    profile: Annotated[str, typer.Option(help="tiny | small | paper.")] = "small",
    clusters: Annotated[int | None, typer.Option(
        "--clusters", help="Clusters per modality (paper: 1024). Capped for small catalogs: "
        "K_m = min(clusters, max(2, n_m // min_items_per_cluster)), n_m = tracks with modality m "
        "(at most n_m; 0 when no track has it).")] = None,
    modality_clusters: Annotated[list[str] | None, typer.Option(
        "--modality-clusters", help="MODALITY=K: another cluster count for one modality "
        "(repeatable), e.g. playlist=32; the cap rule applies to it too.")] = None,
    min_items_per_cluster: Annotated[int | None, typer.Option(
        help="Divisor of the cap rule (see --clusters).")] = None,
    niter: Annotated[int | None, typer.Option(help="K-means iterations.")] = None,
    seed: Annotated[int | None, typer.Option(help="K-means seed.")] = None,
    old_k: Annotated[int | None, typer.Option("--k", hidden=True)] = None,
    old_k_modality: Annotated[list[str] | None, typer.Option("--k-modality", hidden=True)] = None,
) -> None:
    """Cluster each modality (spherical K-means, faiss) and give every track five codes;
    writes DATA/tokenizer and prints cluster-size and collision statistics."""
    from talkplay.tokenize.build import build_codebook
    from talkplay.tokenize.grammar import MODALITIES

    clusters = renamed(clusters, old_k, "--clusters", "--k")
    modality_clusters = renamed(modality_clusters, old_k_modality, "--modality-clusters",
                                "--k-modality")
    try:
        cfg = get_profile(profile).tokenizer
    except ValueError as e:
        fail(str(e))
    for key, value in (("k", clusters), ("min_items_per_cluster", min_items_per_cluster),
                       ("niter", niter), ("seed", seed)):
        if value is not None:
            setattr(cfg, key, value)
    for spec in modality_clusters or []:
        m, sep, value = spec.partition("=")
        if not sep or m not in MODALITIES or not value.isdigit() or int(value) < 1:
            fail(f"--modality-clusters {spec!r}: expected MODALITY=K with MODALITY in "
                 f"{', '.join(MODALITIES)} and K >= 1")
        cfg.k_per_modality[m] = int(value)
    try:
        with _progress() as factory:
            cb = build_codebook(data, cfg, progress=factory)
    except (DataError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    _stats_tables(cb.stats)
    console.print(f"codebook written to {data}/tokenizer")
