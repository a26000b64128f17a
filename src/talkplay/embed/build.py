"""Dataset -> item embedding matrices, one per modality; cached, batched and resumable.

Each modality is rebuilt only when the fingerprint of its inputs (texts, audio paths and
sizes, or training playlists, plus the encoder spec) differs from the one in the manifest.
Content encoders write finished chunks to ``.partial/{m}/``; a rerun after an interruption
reuses them, and the final matrix is assembled into a temporary file and renamed into place.
Audio runs before the semantic modality because it may supply pseudo tags.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from talkplay.config import EmbedConfig
from talkplay.data.dataset import read_dataset, write_dataset
from talkplay.data.splits import training_playlists
from talkplay.embed import inputs
from talkplay.embed.registry import build_encoder, check_encoder, encoder_spec
from talkplay.embed.store import (
    AUDIO_TAGS,
    embeddings_dir,
    is_cached,
    load_modality,
    update_manifest,
    write_matrix,
)
from talkplay.io import MANIFEST, atomic_path, read_json, write_json

log = logging.getLogger(__name__)

ORDER: tuple[str, ...] = ("playlist", "audio", "semantic", "metadata", "lyrics")
"""Build order (audio before semantic: pseudo tags)."""
ProgressFactory = Callable[[str, int], Callable[[int], None]]
"""progress(label, total) -> advance(n): the CLI passes one that drives rich progress bars."""


@dataclass
class ModalityReport:
    """What happened to one modality."""

    modality: str
    encoder: str
    n: int
    """Tracks with a vector."""
    dim: int
    seconds: float
    """Wall time, model loading included."""
    cached: bool
    load_seconds: float = 0.0
    """Time spent loading the encoder."""

    @property
    def items_per_s(self) -> float:
        """Encoding throughput (model loading excluded); 0 for cached modalities."""
        busy = self.seconds - self.load_seconds
        return self.n / busy if busy > 0 and not self.cached else 0.0


def _no_progress(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def _tag_names(encoder: Any) -> list[str]:
    names = getattr(encoder, "tags", None) or getattr(sys.modules[type(encoder).__module__],
                                                      "TAGS", None)
    if not names:
        raise ValueError(f"{type(encoder).__name__} has encode_with_tags but no tag names")
    return list(names)


def _partial(emb_dir: Path, modality: str, meta: dict) -> Path:
    """The partial-work folder of ``modality``; wiped when it belongs to other inputs."""
    pdir = emb_dir / ".partial" / modality
    if pdir.exists() and (not (pdir / "meta.json").exists() or read_json(pdir / "meta.json") != meta):
        log.info("%s: discarding partial work from other inputs", modality)
        shutil.rmtree(pdir)
    pdir.mkdir(parents=True, exist_ok=True)
    write_json(pdir / "meta.json", meta)
    return pdir


def _assemble(chunks: list[Path], path: Path) -> int:
    """Concatenate chunk files into one .npy without holding them all in memory; returns dim."""
    first = np.load(chunks[0], mmap_mode="r")
    n = sum(np.load(c, mmap_mode="r").shape[0] for c in chunks)
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, first.shape[1]))
        row = 0
        for c in chunks:
            block = np.load(c, mmap_mode="r")
            out[row:row + len(block)] = block
            row += len(block)
        out.flush()
        del out
    return int(first.shape[1])


def encode_resumable(encoder: Any, items: Sequence[str], pdir: Path, *, batch_size: int,
                     chunk_size: int, advance: Callable[[int], None],
                     with_tags: bool = False) -> tuple[list[Path], list[Path]]:
    """Encode ``items`` chunk by chunk into ``pdir``, skipping chunks already there.

    Args:
        encoder: an ItemEncoder (or AudioTagger when ``with_tags``).
        items: texts or paths.
        pdir: partial folder (see ``_partial``).
        batch_size: items per encoder call.
        chunk_size: items per chunk file (the unit of resumption).
        advance: progress callback, called with items finished.
        with_tags: also store the tagger's probabilities per chunk.
    Returns:
        (embedding chunk files, tag chunk files) in row order.
    """
    embs, tags = [], []
    for start in range(0, len(items), chunk_size):
        stop = min(len(items), start + chunk_size)
        f, ft = pdir / f"{start:010d}.npy", pdir / f"{start:010d}.tags.npy"
        embs.append(f)
        if with_tags:
            tags.append(ft)
        if f.exists():  # the tag chunk is written first, so f implies ft
            advance(stop - start)
            continue
        parts, tparts = [], []
        for b in range(start, stop, batch_size):
            batch = list(items[b:min(stop, b + batch_size)])
            if with_tags:
                e, p = encoder.encode_with_tags(batch, batch_size)
                tparts.append(np.asarray(p, dtype=np.float32))
            else:
                e = encoder.encode(batch, batch_size)
            e = np.asarray(e, dtype=np.float32)  # [len(batch), dim]
            if e.shape != (len(batch), encoder.dim):
                raise ValueError(f"encoder {encoder.name!r} returned {e.shape}, "
                                 f"expected ({len(batch)}, {encoder.dim})")
            parts.append(e)
            advance(len(batch))
        if with_tags:
            with atomic_path(ft) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.concatenate(tparts))
        with atomic_path(f) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.concatenate(parts))
    return embs, tags


def _build_playlist(ds, emb_dir, cfg, name, fp, progress) -> int:
    encoder = build_encoder("playlist", name, cfg)
    pdir = _partial(emb_dir, "playlist", {"fingerprint": fp})
    advance = progress("playlist: item2vec epochs", cfg.item2vec_epochs)
    ids, vecs = encoder.fit(training_playlists(ds), progress=advance, workdir=pdir)
    row = {tid: i for i, tid in enumerate(ids)}
    # Dataset track order, like every other modality; tracks in no training playlist are absent.
    ordered = [t.id for t in ds.tracks if t.id in row]
    vecs = vecs[[row[t] for t in ordered]] if ordered else np.zeros((0, encoder.dim), np.float32)
    write_matrix(emb_dir, "playlist", ordered, vecs)
    return int(vecs.shape[1])


def _build_content(modality, emb_dir, cfg, name, fp, ids, items, encoders, progress,
                   chunk_size) -> tuple[int, bool, float]:
    """Encode a text or audio modality; returns (dim, whether tag probabilities were stored,
    seconds spent loading the encoder)."""
    if not items:
        write_matrix(emb_dir, modality, [], np.zeros((0, 0), np.float32))
        return 0, False, 0.0
    t0 = time.perf_counter()
    if name not in encoders:
        encoders[name] = build_encoder(modality, name, cfg)
    load_s = time.perf_counter() - t0
    encoder = encoders[name]
    with_tags = modality == "audio" and hasattr(encoder, "encode_with_tags")
    pdir = _partial(emb_dir, modality, {"fingerprint": fp, "chunk_size": chunk_size,
                                        "n": len(items)})
    advance = progress(f"{modality}: {name}", len(items))
    embs, tags = encode_resumable(encoder, items, pdir, batch_size=cfg.batch_size,
                                  chunk_size=chunk_size, advance=advance, with_tags=with_tags)
    if with_tags:
        _assemble(tags, emb_dir / f"{AUDIO_TAGS}.npy")
        write_json(emb_dir / f"{AUDIO_TAGS}.ids.json", ids)
        write_json(emb_dir / f"{AUDIO_TAGS}.names.json", _tag_names(encoder))
    dim = _assemble(embs, emb_dir / f"{modality}.npy")
    write_json(emb_dir / f"{modality}.ids.json", ids)
    return dim, with_tags, load_s


def _apply_pseudo_tags(root: Path, ds, cfg: EmbedConfig) -> int:
    """Set pseudo tags from stored audio tag probabilities; rewrite the dataset if any changed."""
    loaded = load_modality(root, AUDIO_TAGS, mmap=False)
    if loaded is None:
        return 0
    ids, probs = loaded
    names = read_json(embeddings_dir(root) / f"{AUDIO_TAGS}.names.json")
    changed = inputs.assign_pseudo_tags(ds, ids, probs, names, cfg.pseudo_tag_count)
    if changed:
        m = dict(ds.manifest)
        extra = {k: v for k, v in m.items() if k not in
                 ("kind", "format_version", "talkplay_version", "created", "source",
                  "split_rule", "counts")}
        extra["pseudo_tags"] = {"from": f"{AUDIO_TAGS} top {cfg.pseudo_tag_count}",
                                "tracks": sum(bool(t.pseudo_tags) and not t.tags
                                              for t in ds.tracks)}
        write_dataset(root, ds, source=m.get("source", "unknown"),
                      split_rule=m.get("split_rule", "unknown"), extra=extra)
    return changed


def build_embeddings(data_dir: str | Path, cfg: EmbedConfig | None = None, *,
                     modalities: Sequence[str] | None = None, force: bool = False,
                     progress: ProgressFactory | None = None,
                     chunk_size: int = 1024) -> list[ModalityReport]:
    """Embed every modality of the dataset in ``data_dir`` into ``data_dir/embeddings``.

    Args:
        data_dir: dataset directory (``talkplay.data.dataset``).
        cfg: encoders per modality and their settings (default ``EmbedConfig()``).
        modalities: build only these (default: all five, in ``ORDER``).
        force: rebuild even when the inputs' fingerprint is unchanged.
        progress: progress-bar factory (see ``ProgressFactory``); library code only logs.
        chunk_size: items per resumable chunk.
    Returns:
        One report per modality built or found cached, in ``ORDER``.
    """
    cfg = cfg or EmbedConfig()
    progress = progress or _no_progress
    root = Path(data_dir)
    ds = read_dataset(root)
    emb_dir = embeddings_dir(root)
    wanted = list(modalities) if modalities else list(ORDER)
    unknown = set(wanted) - set(ORDER)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; expected {ORDER}")
    for m in wanted:  # refuse a misfit encoder before any modality is built
        if cfg.encoders.get(m):
            check_encoder(m, cfg.encoders[m])
    encoders: dict[str, Any] = {}  # text models shared between modalities
    reports = []
    for m in ORDER:
        name = cfg.encoders.get(m)
        if m not in wanted or not name:
            continue
        spec = encoder_spec(m, name, cfg)
        if m == "playlist":
            ids, items = None, training_playlists(ds)
        elif m == "audio":
            ids, items, keys = inputs.audio_inputs(ds, root)
        else:
            ids, items = inputs.text_inputs(ds, m)
        fp = inputs.fingerprint(spec, keys if m == "audio" else items)
        t0 = time.perf_counter()
        cached = not force and is_cached(emb_dir, m, fp)
        entry = read_json(emb_dir / MANIFEST)["modalities"][m] if cached else None
        if cached:
            log.info("%s: inputs unchanged, using cached embeddings", m)
        elif m == "playlist":
            dim = _build_playlist(ds, emb_dir, cfg, name, fp, progress)
            entry = {"tags": False, "load_seconds": 0.0}
        else:
            dim, tags, load_s = _build_content(m, emb_dir, cfg, name, fp, ids, items,
                                               encoders, progress, chunk_size)
            entry = {"tags": tags, "load_seconds": round(load_s, 3)}
        if not cached:
            n = len(read_json(emb_dir / f"{m}.ids.json"))
            entry.update(encoder=name, spec=spec, fingerprint=fp, n=n, dim=dim,
                         seconds=round(time.perf_counter() - t0, 3))
            if m == "semantic":
                pseudo = [t.id for t in ds.tracks if not t.tags and t.pseudo_tags]
                write_json(emb_dir / "semantic.pseudo.json", pseudo)
                entry["from_pseudo_tags"] = len(pseudo)
            update_manifest(emb_dir, m, entry)
            shutil.rmtree(emb_dir / ".partial" / m, ignore_errors=True)
        reports.append(ModalityReport(m, name, entry["n"], entry["dim"], entry["seconds"],
                                      cached, entry.get("load_seconds", 0.0)))
        if m == "audio" and cfg.pseudo_tags and _apply_pseudo_tags(root, ds, cfg):
            log.info("dataset rewritten with pseudo tags")
    return reports
