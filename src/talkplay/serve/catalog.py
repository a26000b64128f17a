"""The catalog as the server shows it: track metadata and the audio files it may serve.

Audio is served by track id only: the id is looked up in the catalog, the track's ``audio``
field is resolved against the dataset directory, and the file is served only when the resolved
path (symlinks followed) lies under an allowed root (the dataset directory by default). A URI,
a missing file or a path outside the roots means "no audio"; an id is never used as a path.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from talkplay.data.dataset import Dataset
from talkplay.data.schema import Track

log = logging.getLogger(__name__)

AUDIO_TYPES = {".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
               ".flac": "audio/flac", ".wav": "audio/wav", ".m4a": "audio/mp4", ".mp4": "audio/mp4",
               ".webm": "audio/webm", ".aac": "audio/aac"}


class Catalog:
    """Track lookup and safe audio resolution over one dataset."""

    def __init__(self, ds: Dataset, audio_roots: list[Path] | None = None):
        """Args:
            ds: the dataset (``ds.root`` is where relative audio paths live).
            audio_roots: directories audio may be served from (default: the dataset directory).
        """
        self.tracks: dict[str, Track] = ds.track_index()
        self.root = Path(ds.root).resolve() if ds.root is not None else None
        roots = audio_roots if audio_roots is not None else ([self.root] if self.root else [])
        self.audio_roots = [Path(r).resolve() for r in roots]
        self.audio_path = lru_cache(maxsize=65_536)(self._audio_path)

    def __len__(self) -> int:
        return len(self.tracks)

    def get(self, track_id: str) -> Track | None:
        return self.tracks.get(track_id)

    def _audio_path(self, track_id: str) -> Path | None:
        """The servable audio file of a track, or None (unknown track, no file, not allowed)."""
        track = self.tracks.get(track_id)
        if track is None or not track.audio or "://" in track.audio:
            return None
        path = Path(track.audio)
        if not path.is_absolute():
            if self.root is None:
                return None
            path = self.root / path
        try:
            path = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if path.suffix.lower() not in AUDIO_TYPES or not path.is_file():
            return None
        if not any(path.is_relative_to(root) for root in self.audio_roots):
            log.warning("audio of track %r resolves outside the allowed roots; not served", track_id)
            return None
        return path

    def card(self, track_id: str) -> dict:
        """A track's metadata as the API returns it (``has_audio`` says whether audio is served).

        Args:
            track_id: a catalog id (an unknown id gives a card with only the id).
        Returns:
            A JSON-ready dict.
        """
        t = self.tracks.get(track_id)
        if t is None:
            return {"id": track_id, "title": track_id, "artists": [], "album": None, "year": None,
                    "tags": [], "has_audio": False, "duration_ms": None}
        return {"id": t.id, "title": t.title, "artists": list(t.artists), "album": t.album,
                "year": t.year, "tags": list(t.tags or t.pseudo_tags)[:8],
                "has_audio": self.audio_path(t.id) is not None, "duration_ms": t.duration_ms}


def media_type(path: Path) -> str:
    """The audio MIME type of a served file."""
    return AUDIO_TYPES.get(path.suffix.lower(), "application/octet-stream")
