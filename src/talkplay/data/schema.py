"""Typed records of a TalkPlay dataset.

A dataset has three kinds of record: tracks (the catalog), playlists (ordered track ids)
and conversations (ordered messages; a ``music`` message's content is a track id).
Every field but ``Track.id`` and ``Track.title`` is optional so that any catalog fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant", "music"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "music")
Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass
class Track:
    """One catalog item."""

    id: str
    title: str
    artists: list[str] = field(default_factory=list)
    album: str | None = None
    release_date: str | None = None
    """ISO date or year prefix: "1997" or "1997-05-21"."""
    popularity: float | None = None
    """Any non-negative popularity measure (play or playlist count); larger is more popular."""
    tags: list[str] = field(default_factory=list)
    """Human or catalog tags (genre, mood, instruments, era, vocal style, ...)."""
    pseudo_tags: list[str] = field(default_factory=list)
    """Tags predicted by a model (e.g. the audio tagger) for tracks without real tags."""
    lyrics: str | None = None
    audio: str | None = None
    """Audio file path relative to the dataset directory, an absolute path, or a URI."""
    duration_ms: int | None = None
    tempo: float | None = None
    """Beats per minute, where known."""
    key: str | None = None
    """Musical key such as "A minor", where known."""
    cluster_id: str | None = None
    """Equivalence class of recordings (CPCD cluster ids); tracks of one cluster count once in evaluation."""
    cold: bool = False
    """True when the track is in no training playlist, so it has no playlist-co-occurrence code
    (``splits.mark_cold``, the one definition used everywhere)."""

    @property
    def year(self) -> int | None:
        if self.release_date and self.release_date[:4].isdigit():
            return int(self.release_date[:4])
        return None

    @property
    def artist(self) -> str:
        return ", ".join(self.artists)


@dataclass
class Playlist:
    id: str
    track_ids: list[str]
    name: str | None = None
    created_at: int | None = None
    """Unix seconds."""
    modified_at: int | None = None
    """Unix seconds; the paper's chronological split uses it."""
    split: str = "train"


REJECTED = "rejected"
"""``Message.feedback`` of a music message the user turned down."""


@dataclass
class Message:
    role: str
    content: str
    feedback: str | None = None
    """For a ``music`` message in a history handed to a recommender: ``"rejected"`` when the
    user turned the track down (None = played and accepted). Set by the evaluation protocols
    from ``Conversation.meta["rejected"]`` and by the chat session on a skip; not stored in
    datasets (the conversation's ``meta`` is the record)."""


@dataclass
class Conversation:
    id: str
    messages: list[Message]
    split: str = "train"
    playlist_id: str | None = None
    """The playlist the conversation was made from (or the CPCD goal playlist)."""
    source: str | None = None
    """What made it: "simulator", "llm:<model>", "cpcd", "talkplay-db", ..."""
    meta: dict = field(default_factory=dict)
    """Free-form, JSON-serialisable details (e.g. per-turn feedback labels)."""

    def music_ids(self) -> list[str]:
        return [m.content for m in self.messages if m.role == "music"]
