"""One chat with a recommender: the history it sees, what was shown, liked and skipped.

Shared by the terminal chat and the HTTP server, so both keep the conversation the same way:

- a user request appends ``user(text)``; the recommender ranks tracks for the history; the best
  track becomes the turn's ``music`` message (the one track per turn that TalkPlay is trained to
  predict) followed by the ``assistant`` reply when the recommender wrote one; the other ranked
  tracks are shown as alternatives;
- liking a shown track that is not yet in the conversation adds it as a ``music`` message (the
  user played it) before a user message that says so ("another one in the same vein"), so every recommender
  sees it as evidence;
- skipping a track adds it to ``rejected``: it is never recommended again in this session, and
  the user message that says so names it (the renderer treats user text as plain text); a
  skipped track that was played keeps its ``music`` message, marked ``feedback="rejected"``
  so that no recommender takes it as evidence of taste;
- tracks already in the conversation are never recommended again either.

Nothing here knows about the web or the terminal; callers decide where ``recommend`` runs.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from talkplay.data.schema import REJECTED, Message, Track
from talkplay.recommend.protocol import Recommendation, Recommender

LIKE, SKIP = "like", "skip"
ACTIONS = (LIKE, SKIP)


class SessionError(ValueError):
    """A request the session cannot take; the message says why, ``code`` names the case."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code
        """"turn_limit", "empty_message", "bad_action" or "unknown_track"."""


@dataclass
class Turn:
    """What one request produced."""

    request: str
    """The user message that asked for it."""
    recommendation: Recommendation
    feedback: tuple[str, str] | None = None
    """``(action, track_id)`` when the request was feedback on a shown track."""


@dataclass
class Pending:
    """A prepared request: what to give the recommender and what to record afterwards."""

    history: list[Message]
    """The history the recommender sees (a copy; the session is unchanged until commit)."""
    text: str
    exclude: set[str]
    feedback: tuple[str, str] | None = None


@dataclass
class ChatSession:
    """The state of one conversation; ``prepare`` + ``commit`` around a ``recommend`` call."""

    max_turns: int = 50
    """Requests (messages and feedback) allowed; protects memory and the model's context."""
    history: list[Message] = field(default_factory=list)
    shown: dict[str, int] = field(default_factory=dict)
    """Track id -> turn index where it was last shown (feedback is accepted for these only)."""
    rejected: list[str] = field(default_factory=list)
    liked: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    def played(self) -> list[str]:
        """Track ids of the ``music`` messages, oldest first."""
        return [m.content for m in self.history if m.role == "music"]

    def exclude(self) -> set[str]:
        """Tracks that must not be recommended again: played (liked included) or skipped."""
        return set(self.played()) | set(self.rejected)

    def prepare_message(self, text: str) -> Pending:
        """What the recommender should see for a new user message (session unchanged).

        Args:
            text: the user's message (cleaned by ``clean_text``).
        Returns:
            The Pending request: history plus ``user(text)``.
        Raises:
            SessionError: the turn limit is reached or the text is empty.
        """
        self._check_room()
        if not text.strip():
            raise SessionError("the message is empty", "empty_message")
        return Pending([*self.history, Message("user", text)], text, self.exclude())

    def prepare_feedback(self, track_id: str, action: str, catalog: dict[str, Track]) -> Pending:
        """What the recommender should see for feedback on a shown track.

        Args:
            track_id: a track shown in this session.
            action: "like" or "skip".
            catalog: track id -> Track (for the title and artist in the text).
        Returns:
            The Pending request (the feedback stated as a user message); session unchanged.
        Raises:
            SessionError: unknown action, a track this session never showed, or the turn limit.
        """
        self._check_room()
        if action not in ACTIONS:
            raise SessionError(f"action must be one of {list(ACTIONS)}, not {action!r}", "bad_action")
        if track_id not in self.shown:
            raise SessionError(f"track {track_id!r} was not recommended in this session",
                               "unknown_track")
        history = list(self.history)
        played = self.played()
        # The track the last turn played needs no name (as in training conversations, the
        # reaction follows its music message); another shown track is named.
        just_played = bool(played) and played[-1] == track_id
        if action == LIKE:
            if track_id not in played:
                history.append(Message("music", track_id))
            name = "it" if just_played else describe(catalog.get(track_id), track_id)
            text = f"Love {name}. Another one in the same vein?"
        elif just_played:
            text = "Not this one, please. Something else."
            # The played track stays in the history (the model was trained on rejections shown
            # in context), marked so that retrieval baselines do not take it as evidence.
            history = [Message("music", m.content, REJECTED) if m.role == "music"
                       and m.content == track_id else m for m in history]
        else:
            # Only the title: naming the artist would read as a request for more of them.
            title = catalog[track_id].title if track_id in catalog else track_id
            text = f'Not "{title}", please. Something else.'
        history.append(Message("user", text))
        # The liked track is now in the history and the skipped one is rejected: neither returns.
        exclude = self.exclude() | {track_id}
        return Pending(history, text, exclude, (action, track_id))

    def commit(self, pending: Pending, rec: Recommendation) -> Turn:
        """Record a finished turn: the prepared history, the best track, the reply.

        Args:
            pending: what ``prepare_*`` returned (the recommender saw ``pending.history``).
            rec: the recommender's answer.
        Returns:
            The Turn.
        """
        history = list(pending.history)
        if pending.feedback is not None:
            action, track_id = pending.feedback
            target = self.liked if action == LIKE else self.rejected
            if track_id not in target:
                target.append(track_id)
        if rec.tracks:
            history.append(Message("music", rec.tracks[0].track_id))
        if rec.reply.strip():
            history.append(Message("assistant", rec.reply))
        self.history = history
        turn = Turn(pending.text, rec, pending.feedback)
        self.turns.append(turn)
        for t in rec.tracks:
            self.shown[t.track_id] = len(self.turns) - 1
        return turn

    def _check_room(self) -> None:
        if len(self.turns) >= self.max_turns:
            raise SessionError(f"this conversation reached its limit of {self.max_turns} turns; "
                               "start a new one", "turn_limit")


def run_pending(recommender: Recommender, pending: Pending, k: int) -> Recommendation:
    """Call the recommender for a prepared request (in whatever thread the caller chose).

    Args:
        recommender: any ``Recommender``.
        pending: from ``ChatSession.prepare_*``.
        k: how many tracks to rank.
    Returns:
        The recommendation, with tracks in ``pending.exclude`` removed in case the
        recommender ignored ``exclude``.
    """
    return trim(recommender.recommend(*request(pending, k)), pending, k)


def request(pending: Pending, k: int) -> tuple[list[Message], int, set[str]]:
    """The (history, k, exclude) a recommender is called with for ``pending``."""
    return list(pending.history), k, set(pending.exclude)


def trim(rec: Recommendation, pending: Pending, k: int) -> Recommendation:
    """``rec`` without the tracks in ``pending.exclude`` (in case the recommender ignored
    ``exclude``), cut to ``k``."""
    rec.tracks = [t for t in rec.tracks if t.track_id not in pending.exclude][:k]
    return rec


def describe(track: Track | None, track_id: str) -> str:
    """'"Title" by Artist' for the feedback text (the id when the catalog lacks the track)."""
    if track is None:
        return f'"{track_id}"'
    return f'"{track.title}" by {track.artist}' if track.artists else f'"{track.title}"'


def clean_text(text: str) -> str:
    """Drop control characters (NUL, escapes) but keep newlines and tabs; strip the ends.

    Special-token look-alikes such as ``<start_of_music>`` are left as they are: the renderer
    encodes user text as plain text, so they can never become music tokens.
    """
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc").strip()
