"""The one seam every recommender (TalkPlay and each baseline) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from talkplay.data.schema import Message


@dataclass
class ScoredTrack:
    track_id: str
    score: float
    tokens: str | None = None
    """The music block that produced it (TalkPlay), if any."""


@dataclass
class Recommendation:
    tracks: list[ScoredTrack]
    """Best first."""
    reply: str = ""
    """The assistant's text (empty from a system that only ranks; chat and serve give the
    retrieval baselines a reply from catalog facts, ``recommend.replies``)."""
    info: dict = field(default_factory=dict)
    """Diagnostics, e.g. the generated codes and whether they matched a catalog item exactly."""


class Recommender(Protocol):
    name: str

    def recommend(self, history: list[Message], k: int = 10,
                  exclude: set[str] | None = None) -> Recommendation:
        """Rank catalog tracks for the next assistant turn.

        Args:
            history: the conversation so far (roles user / assistant / music; no system turn).
            k: how many tracks to return.
            exclude: track ids that must not be returned (e.g. already played or liked).
        Returns:
            A Recommendation with at most ``k`` tracks, best first.
        """
        ...
