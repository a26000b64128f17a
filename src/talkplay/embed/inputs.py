"""What each modality encodes for a track, and the pseudo tags drawn from the audio tagger.

A track lacking a modality's input (no tags, no lyrics, no audio, not in a training
playlist) is simply left out of that modality: absence, never a made-up vector.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from talkplay.data.dataset import Dataset
from talkplay.data.errors import DataError
from talkplay.data.schema import Track

log = logging.getLogger(__name__)


def metadata_text(t: Track) -> str:
    """The paper's metadata text, "{Title} by {Artist} from {Album} ({Year})"; absent parts dropped."""
    text = t.title
    if t.artists:
        text += f" by {t.artist}"
    if t.album:
        text += f" from {t.album}"
    if t.year is not None:
        text += f" ({t.year})"
    return text


def semantic_text(t: Track) -> tuple[str | None, bool]:
    """Tags joined by ", "; pseudo tags only when the track has no real tags.

    Returns:
        (text or None when the track has neither, True when the text came from pseudo tags).
    """
    if t.tags:
        return ", ".join(t.tags), False
    if t.pseudo_tags:
        return ", ".join(t.pseudo_tags), True
    return None, False


def audio_path(root: Path, t: Track) -> str:
    """The audio file of ``t``, resolved against the dataset directory ``root``."""
    assert t.audio is not None
    p = Path(t.audio)
    return str(p if p.is_absolute() else root / p)


def text_inputs(ds: Dataset, modality: str) -> tuple[list[str], list[str]]:
    """(track ids, texts) for a text modality, in the dataset's track order."""
    ids, texts = [], []
    for t in ds.tracks:
        if modality == "metadata":
            text = metadata_text(t)
        elif modality == "semantic":
            text = semantic_text(t)[0]
        elif modality == "lyrics":
            text = t.lyrics.strip() if t.lyrics and t.lyrics.strip() else None
        else:
            raise ValueError(f"{modality!r} is not a text modality")
        if text:
            ids.append(t.id)
            texts.append(text)
    return ids, texts


def audio_inputs(ds: Dataset, root: Path) -> tuple[list[str], list[str], list[str]]:
    """(track ids, resolved paths, fingerprint keys "path:size") of tracks with audio.

    Raises:
        DataError: an audio file is missing or is a remote URI.
    """
    ids, paths, keys = [], [], []
    for line, t in enumerate(ds.tracks):
        if not t.audio:
            continue
        if "://" in t.audio:
            raise DataError(f"track {t.id!r}: remote audio {t.audio!r} is not supported; "
                            "download it and store a local path", file=str(root / "tracks.parquet"),
                            line=line, field="audio")
        path = audio_path(root, t)
        if not Path(path).is_file():
            raise DataError(f"track {t.id!r}: audio file not found: {path}",
                            file=str(root / "tracks.parquet"), line=line, field="audio")
        ids.append(t.id)
        paths.append(path)
        keys.append(f"{t.audio}:{Path(path).stat().st_size}")
    return ids, paths, keys




def fingerprint(spec: dict, items: list) -> str:
    """sha256 of the encoder spec and the inputs (texts, path keys or playlists), in order."""
    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for item in items:
        h.update(b"\x00")
        h.update(json.dumps(item).encode() if not isinstance(item, str) else item.encode())
    return h.hexdigest()


def assign_pseudo_tags(ds: Dataset, tag_ids: list[str], probs: np.ndarray, names: list[str],
                       count: int) -> int:
    """Give tracks with audio but no real tags the tagger's top ``count`` tags as pseudo tags.

    Args:
        ds: dataset, changed in place.
        tag_ids: track ids, row order of ``probs``.
        probs: float32 [n, len(names)] tag probabilities.
        names: tag names.
        count: tags per track.
    Returns:
        How many tracks' pseudo tags changed.
    """
    row = {tid: i for i, tid in enumerate(tag_ids)}
    changed = 0
    for t in ds.tracks:
        if t.tags or t.id not in row:
            continue
        p = probs[row[t.id]]
        top = np.argsort(-p, kind="stable")[:count]  # highest probability first
        new = [names[j] for j in top]
        if new != t.pseudo_tags:
            t.pseudo_tags = new
            changed += 1
    log.info("pseudo tags: %d tracks updated", changed)
    return changed
