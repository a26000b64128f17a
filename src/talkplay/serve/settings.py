"""Server settings: safe by default (localhost, bounded everything)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

API_KEY_ENV = "TALKPLAY_API_KEY"


@dataclass
class ServeSettings:
    """Limits and access control of the HTTP server (the CLI options mirror these)."""

    api_key: str | None = None
    """When set, every /api call needs ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    k: int = 5
    """Tracks shown per turn unless the request asks for another number."""
    max_k: int = 20
    """Most tracks a request may ask for."""
    max_message_chars: int = 1000
    """Longest user message accepted."""
    max_turns: int = 50
    """Most turns (messages and feedback) per session."""
    max_body_bytes: int = 16_384
    """Largest request body (checked on Content-Length and on the bytes actually streamed)."""
    max_sessions: int = 1000
    """Sessions kept in memory; the least recently used one is dropped beyond this."""
    session_ttl_s: float = 6 * 3600
    """Sessions idle longer than this are dropped."""
    queue_size: int = 64
    """Most recommender jobs queued or running; more answer 503 at once."""
    max_batch: int = 8
    """Most waiting turns a TalkPlay model answers together (dynamic batching of their
    replies, ``worker.GenerationQueue.recommend``); 1 answers one turn at a time."""
    replica: str | None = None
    """This server's name among several behind one proxy: session ids start with "NAME."
    (letters, digits, "-" and "_", at most 32)."""
    audio_roots: list[Path] = field(default_factory=list)
    """Extra directories audio may be served from (the dataset directory always may)."""

    def __post_init__(self) -> None:
        for name in ("k", "max_k", "max_message_chars", "max_turns", "max_body_bytes",
                     "max_sessions", "queue_size", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.k > self.max_k:
            raise ValueError(f"k ({self.k}) must not exceed max_k ({self.max_k})")
        if self.replica is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", self.replica):
            raise ValueError(f"replica must be 1-32 letters, digits, '-' or '_', got "
                             f"{self.replica!r}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ValueError("the API key must have at least 8 characters")


def api_key_from_env(given: str | None) -> str | None:
    """The API key: the given one, else $TALKPLAY_API_KEY, else None (no key required)."""
    return given or os.environ.get(API_KEY_ENV) or None
